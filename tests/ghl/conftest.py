"""Helpers for the GHL client and sandbox tests: each test gets locations of its own in the stack's sandbox."""

from __future__ import annotations

import pytest


@pytest.fixture
def make_location(ghl_sandbox):
    """Create a sandbox location (small, fast limits unless told otherwise). After the test, every location
    it made must show zero contract violations, unless made with expect_violations=True."""
    checked = []

    def make(expect_violations: bool = False, **settings):
        settings.setdefault("burst_limit", 50)
        settings.setdefault("burst_window_ms", 1000)
        location = ghl_sandbox.create_location(**settings)
        if not expect_violations:
            checked.append(location)
        return location

    yield make
    for location in checked:
        assert_no_contract_violations(ghl_sandbox, location.id)


@pytest.fixture
def client_for():
    """GhlClient for a sandbox location (closed by the `async with` of the test)."""
    from shared.adapters.ghl_client import GhlClient

    def make(location, **options):
        return GhlClient(location_id=location.id, token=location.token, base_url=location.base_url, **options)

    return make


def assert_no_contract_violations(admin, location_id: str) -> None:
    stats = admin.stats(location_id)
    assert stats["contract_violations"] == 0, stats["contract_violation_details"]
