"""The GHL sandbox itself over raw HTTP: the contract check, auth, rate-limit headers, the duplicate rule."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.ghl.conftest import assert_no_contract_violations

pytestmark = pytest.mark.stack

CONTACTS_VERSION = {"Version": "2021-07-28"}
CONVERSATIONS_VERSION = {"Version": "2021-04-15"}


def ghl(location, method: str, path: str, *, version: dict = CONTACTS_VERSION, token: str | None = None,
        **kwargs) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token or location.token}", **version}
    return httpx.request(method, location.base_url + path, headers=headers, timeout=10, **kwargs)


def test_a_spec_invalid_request_gets_ghls_422_and_is_counted(ghl_sandbox, make_location):
    location = make_location(expect_violations=True)

    missing_location = ghl(location, "POST", "/contacts/upsert", json={"email": "a@example.com"})
    wrong_type = ghl(location, "POST", "/contacts/upsert", json={"locationId": location.id, "email": 5})
    limit_too_small = ghl(location, "GET", "/conversations/messages/export", version=CONVERSATIONS_VERSION,
                          params={"locationId": location.id, "channel": "Call", "limit": 5})
    wrong_version = ghl(location, "POST", "/contacts/upsert", version=CONVERSATIONS_VERSION,
                        json={"locationId": location.id, "email": "a@example.com"})

    for response in (missing_location, wrong_type, limit_too_small, wrong_version):
        assert response.status_code == 422, response.text
        body = response.json()
        assert body["statusCode"] == 422 and body["error"] == "Unprocessable Entity"
        assert isinstance(body["message"], list) and body["message"]
    assert "locationId" in " ".join(missing_location.json()["message"])
    assert "limit" in " ".join(limit_too_small.json()["message"])
    stats = ghl_sandbox.stats(location.id)
    assert stats["contract_violations"] == 4
    assert {v["kind"] for v in stats["contract_violation_details"]} == {"request"}
    assert ghl_sandbox.contacts(location.id) == []  # nothing invalid was written


def test_a_valid_request_is_not_a_violation(ghl_sandbox, make_location):
    location = make_location()
    response = ghl(location, "POST", "/contacts/upsert", json={"locationId": location.id, "email": "v@example.com"})
    assert response.status_code == 200 and response.json()["new"] is True
    assert_no_contract_violations(ghl_sandbox, location.id)


def test_tokens_are_checked_per_location(ghl_sandbox, make_location):
    mine, other = make_location(), make_location()
    body = {"locationId": mine.id, "email": "t@example.com"}
    assert ghl(mine, "POST", "/contacts/upsert", json=body, token="not-a-token").status_code == 401
    answer = ghl(mine, "POST", "/contacts/upsert", json=body, token=other.token)
    assert answer.status_code == 401 and "location" in answer.json()["message"]
    assert ghl_sandbox.contacts(mine.id) == []


def test_rate_limit_headers_on_every_answer_and_429_beyond_the_burst(ghl_sandbox, make_location):
    location = make_location(burst_limit=5, burst_window_ms=2000, daily_limit=1000)
    answers = [ghl(location, "GET", f"/locations/{location.id}/customFields") for _ in range(6)]
    assert [a.status_code for a in answers] == [200] * 5 + [429]
    assert [int(a.headers["X-RateLimit-Remaining"]) for a in answers] == [4, 3, 2, 1, 0, 0]
    for answer in answers:
        assert answer.headers["X-RateLimit-Max"] == "5"
        assert answer.headers["X-RateLimit-Interval-Milliseconds"] == "2000"
        assert answer.headers["X-RateLimit-Limit-Daily"] == "1000"
    assert answers[4].headers["X-RateLimit-Daily-Remaining"] == "995"
    assert ghl_sandbox.stats(location.id)["rate_limited_sent"] == 1


def _upsert(location, **fields) -> dict:
    response = ghl(location, "POST", "/contacts/upsert", json={"locationId": location.id, **fields})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("rule, winner", [(["email", "phone"], "by_email"), (["phone", "email"], "by_phone")])
def test_duplicate_rule_updates_the_first_priority_match_and_drops_the_other_field(
        ghl_sandbox, make_location, rule, winner):
    location = make_location(duplicate_rule=rule)
    by_email = _upsert(location, email="dup@example.com", firstName="Email")["contact"]
    by_phone = _upsert(location, phone="+1 555 201 7788", firstName="Phone")["contact"]

    answer = _upsert(location, email="DUP@example.com", phone="(555) 201-7788", lastName="Both")
    contacts = {c["id"]: c for c in ghl_sandbox.contacts(location.id)}

    assert answer["new"] is False and len(contacts) == 2
    updated = by_email if winner == "by_email" else by_phone
    untouched = by_phone if winner == "by_email" else by_email
    assert answer["contact"]["id"] == updated["id"]
    assert contacts[updated["id"]]["lastName"] == "Both"
    assert "lastName" not in contacts[untouched["id"]]
    # The other field already belongs to another contact: silently dropped, not moved.
    if winner == "by_email":
        assert "phone" not in contacts[updated["id"]]
        assert contacts[untouched["id"]]["phone"] == "+15552017788"
    else:
        assert "email" not in contacts[updated["id"]]
        assert contacts[untouched["id"]]["email"] == "dup@example.com"


def test_duplicate_rule_email_only_creates_a_new_contact_for_a_known_phone(ghl_sandbox, make_location):
    location = make_location(duplicate_rule=["email"])
    first = _upsert(location, phone="+15552019900", firstName="One")
    second = _upsert(location, phone="555-201-9900", firstName="Two")
    assert first["new"] is True and second["new"] is True
    assert second["contact"]["phone"] == "+15552019900"
    assert len(ghl_sandbox.contacts(location.id)) == 2


def test_100000_contacts_seed_in_seconds_and_read_back(ghl_sandbox, make_location):
    location = make_location()
    started = time.monotonic()
    seeded = ghl_sandbox.seed(location.id, contacts=100_000, calls=100)
    assert time.monotonic() - started < 15
    assert seeded["total_contacts"] == 100_000 and seeded["calls"] + seeded["voicemails"] == 100
    assert len(ghl_sandbox.contacts(location.id, offset=99_990, limit=100)) == 10


def test_reset_forgets_a_locations_data_and_faults(ghl_sandbox, make_location):
    location = make_location()
    ghl_sandbox.seed(location.id, contacts=10)
    ghl_sandbox.set_faults(location.id, error_count=5)
    ghl_sandbox.reset(location.id)
    assert ghl_sandbox.contacts(location.id) == []
    response = ghl(location, "GET", f"/locations/{location.id}/customFields")
    assert response.status_code == 200
