"""Webhook test helpers: integrations with unique location ids, webhook bodies, a framework test client."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import httpx
import pytest

from tests.conftest import TEST_WEBHOOK_SECRET, unique

# The workplace's shared/ folder sits beside the checkout (also in CI, beside the fresh clone).
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"
FUNCTION_SOURCE = Path(__file__).resolve().parents[2] / "functions" / "ghl_call_webhook" / "main.py"


def load_fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def fixture_names() -> list[str]:
    return sorted(p.name for p in FIXTURES.glob("*.json"))


def with_ids(body: dict, call_id: str, location_id: str, contact_id: str | None = None) -> dict:
    """A fixture body with fresh ids in whatever shape it has (top level, customData, location block)."""
    body = copy.deepcopy(body)
    for layer in (body, body.get("customData") or {}):
        for key in ("callId", "call_id", "messageId"):
            if key in layer:
                layer[key] = call_id
        for key in ("locationId", "location_id"):
            if key in layer:
                layer[key] = location_id
        for key in ("contactId", "contact_id"):
            if key in layer and contact_id is not None:
                layer[key] = contact_id
    if isinstance(body.get("location"), dict):
        body["location"]["id"] = location_id
    return body


@pytest.fixture
def make_integration(db):
    """make_integration('internal' | 'client', active=True) -> (location_id, client_id or None)."""

    def make(kind: str = "internal", active: bool = True) -> tuple[str, str | None]:
        location = unique("loc")
        client_id = None
        if kind == "client":
            client_id = db.execute("INSERT INTO clients (name) VALUES (%s) RETURNING id",
                                   (unique("client"),)).fetchone()["id"]
        db.execute("INSERT INTO ghl_integrations (location_id, api_token, integration_type, client_id, is_active) "
                   "VALUES (%s, 'token', %s, %s, %s)", (location, kind, client_id, active))
        return location, client_id

    return make


@pytest.fixture
def webhook_app(stack, monkeypatch):
    """The function through the real framework, configured for the test stack (settings rebuilt per test)."""
    from functions_framework import create_app

    from shared import bootstrap

    monkeypatch.setenv("SUPABASE_URL", stack["supabase_url"])
    monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", stack["service_role_key"])
    monkeypatch.setenv("GHL_WEBHOOK_SECRET", TEST_WEBHOOK_SECRET)
    for name in ("GHL_WEBHOOK_RSA_PUBLIC_KEY", "GHL_WEBHOOK_ED25519_PUBLIC_KEY"):
        monkeypatch.delenv(name, raising=False)
    bootstrap.reset()
    app = create_app(target="handle", source=str(FUNCTION_SOURCE))
    yield app.test_client()
    bootstrap.reset()


def secret_headers(**extra: str) -> dict[str, str]:
    return {"X-Webhook-Secret": TEST_WEBHOOK_SECRET, "Content-Type": "application/json", **extra}


@pytest.fixture(scope="module")
def url(stack):
    """The webhook's URL through the local stack's gateway (the stack tests' target)."""
    return stack["functions"]["ghl-call-webhook"]


@pytest.fixture(scope="module")
def http():
    """One HTTP client per test module for the stack tests."""
    with httpx.Client(timeout=30) as client:
        yield client
