"""sync-prospects-to-ghl through the stack's gateway: auth, body validation, the answer's shape."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import TEST_SCHEDULER_SECRET, unique

AUTH = {"Authorization": f"Bearer {TEST_SCHEDULER_SECRET}"}


@pytest.fixture(scope="module")
def url(stack):
    return stack["functions"]["sync-prospects-to-ghl"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TEST_SCHEDULER_SECRET}])
def test_missing_or_wrong_credentials_are_401_and_say_nothing_of_the_secret(url, headers):
    response = httpx.post(url, json={}, headers=headers, timeout=30)
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert TEST_SCHEDULER_SECRET not in response.text


@pytest.mark.parametrize("body, message", [
    (b"not json", "not valid JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (b'{"location": "x"}', "unknown field(s) location"),
    (b'{"limit": 0}', "limit must be an integer of at least 1"),
    (b'{"limit": "5"}', "limit must be an integer"),
    (b'{"limit": true}', "limit must be an integer"),
    (b'{"dry_run": "yes"}', "dry_run must be true or false"),
    (b'{"location_id": ""}', "location_id must be a non-empty string"),
    (b'{"campaign": 7}', "campaign must be a non-empty string"),
])
def test_bad_bodies_are_400_naming_the_problem(url, body, message):
    response = httpx.post(url, content=body, headers={**AUTH, "Content-Type": "application/json"}, timeout=30)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "bad_request"
    assert message in response.json()["message"]


def test_get_is_405(url):
    assert httpx.get(url, headers=AUTH, timeout=30).status_code == 405


def test_unknown_location_is_422(url):
    response = httpx.post(url, json={"location_id": "no-such-location"}, headers=AUTH, timeout=30)
    assert response.status_code == 422 and "no-such-location" in response.json()["message"]


def test_a_location_with_nothing_due_answers_its_summary_and_records_the_run(url, db, stack, new_location):
    location = new_location()
    # the service-role key is accepted as well as the scheduler secret
    response = httpx.post(url, json={"location_id": location}, timeout=30,
                          headers={"Authorization": f"Bearer {stack['service_role_key']}"})
    assert response.status_code == 200, response.text
    [summary] = response.json()["locations"]
    assert {k: summary[k] for k in ("location_id", "due", "pushed", "created", "updated", "failed", "skipped")} == {
        "location_id": location, "due": 0, "pushed": 0, "created": 0, "updated": 0, "failed": 0, "skipped": 0}
    assert isinstance(summary["seconds"], float) and summary["status"] == "success"
    row = db.execute("SELECT last_sync_status FROM ghl_integrations WHERE location_id = %s", (location,)).fetchone()
    assert row["last_sync_status"] == "success"


def test_an_empty_body_means_all_defaults():
    from functions.sync_prospects_to_ghl.main import parse_sync_request

    defaults = {"location_id": None, "campaign": None, "limit": None, "dry_run": False, "dispatch": False}
    assert parse_sync_request(b"") == parse_sync_request(b"{}") == defaults
    assert parse_sync_request(b'{"location_id": " loc ", "limit": 5, "dry_run": true, "campaign": null}') == {
        **defaults, "location_id": "loc", "limit": 5, "dry_run": True}


def test_without_a_location_every_active_internal_integration_is_synced(url, new_location):
    locations = {new_location(), new_location()}
    # a campaign nobody has: every location is visited, none has work (no GHL request)
    response = httpx.post(url, json={"campaign": unique("none")}, headers=AUTH, timeout=60)
    assert response.status_code == 200, response.text
    listed = {summary["location_id"] for summary in response.json()["locations"]}
    assert locations <= listed
