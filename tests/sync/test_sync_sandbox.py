"""The whole sync against the real stack and the GHL sandbox: the function over HTTP, and the service in-process
with the real GhlClient. Every test ends with the sandbox's contract check: zero violations."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from shared.services.sync_prospects import run_sync
from tests.conftest import TEST_SCHEDULER_SECRET
from tests.sync.conftest import insert_integration, insert_prospects, make_settings

AUTH = {"Authorization": f"Bearer {TEST_SCHEDULER_SECRET}"}
CUSTOM_FIELDS = [{"id": "cf_company_name", "name": "Company Name"}, {"id": "cf_title", "name": "Job Title"},
                 {"id": "cf_linkedin", "name": "LinkedIn URL"}, {"id": "cf_source", "name": "Lead Source"}]
MAPPING = {"company_name": "cf_company_name", "contact_title": "cf_title", "linkedin_url": "cf_linkedin",
           "source": "cf_source"}


@pytest.fixture(scope="module")
def url(stack):
    return stack["functions"]["sync-prospects-to-ghl"]


@pytest.fixture
def sandbox_location(db, ghl_sandbox):
    """A sandbox location and its integration: sandbox_location(mapping=..., **sandbox settings) -> location."""
    made = []

    def make(*, mapping=MAPPING, token=None, **settings):
        location = ghl_sandbox.create_location(custom_fields=CUSTOM_FIELDS, **settings)
        insert_integration(db, location.id, token=token or location.token, mapping=mapping)
        made.append(location.id)
        return location

    yield make
    for location_id in made:  # whatever the test did: GHL's contract was kept
        stats = ghl_sandbox.stats(location_id)
        assert stats["contract_violations"] == 0, stats["contract_violation_details"]


def post(url, body, timeout=120):
    response = httpx.post(url, json=body, headers=AUTH, timeout=timeout)
    assert response.status_code == 200, response.text
    return response.json()["locations"]


def contacts_by_email(ghl_sandbox, location_id):
    return {c["email"]: c for c in ghl_sandbox.contacts(location_id)}


def prospect_rows(db, location_id):
    return db.execute("SELECT * FROM sales_prospects WHERE ghl_location_id = %s ORDER BY email",
                      (location_id,)).fetchall()


def test_new_and_edited_prospects_are_pushed_once_with_their_fields(url, db, ghl_sandbox, sandbox_location):
    location = sandbox_location()
    insert_prospects(db, location.id, 12)
    [summary] = post(url, {"location_id": location.id})
    assert (summary["due"], summary["pushed"], summary["created"], summary["failed"]) == (12, 12, 12, 0)
    assert summary["status"] == "success"

    contacts = contacts_by_email(ghl_sandbox, location.id)
    assert len(contacts) == 12
    for row in prospect_rows(db, location.id):
        contact = contacts[row["email"]]
        assert row["ghl_contact_id"] == contact["id"]
        assert (contact["firstName"], contact["lastName"], contact["companyName"]) == (
            row["first_name"], row["last_name"], row["company_name"])
        assert contact["phone"] == row["phone_e164"] and contact["phone"].startswith("+1")
        assert contact["tags"] == ["portal"] and contact["source"] == "Portal Sync"
        # read back as GHL returns them: {id, value}
        assert {f["id"]: f["value"] for f in contact["customFields"]} == {
            "cf_company_name": row["company_name"], "cf_title": row["contact_title"],
            "cf_linkedin": row["linkedin_url"], "cf_source": row["source"]}
    upserts_before = ghl_sandbox.stats(location.id)["requests"].get("POST /contacts/upsert")
    assert upserts_before == 12

    [again] = post(url, {"location_id": location.id})
    assert (again["due"], again["pushed"]) == (0, 0)
    assert ghl_sandbox.stats(location.id)["requests"].get("POST /contacts/upsert") == 12

    edited = prospect_rows(db, location.id)[:2]
    db.execute("UPDATE sales_prospects SET company_name = 'Edited Firm', tags = '{portal,edited}'"
               " WHERE id = ANY(%s::uuid[])", ([r["id"] for r in edited],))
    [third] = post(url, {"location_id": location.id})
    assert (third["due"], third["pushed"], third["created"], third["updated"]) == (2, 2, 0, 2)
    contacts = contacts_by_email(ghl_sandbox, location.id)
    assert len(contacts) == 12
    for row in edited:
        contact = contacts[row["email"]]
        assert contact["companyName"] == "Edited Firm" and contact["tags"] == ["portal", "edited"]
        assert {"id": "cf_company_name", "value": "Edited Firm"} in contact["customFields"]
    per_contact = ghl_sandbox.stats(location.id)["upserts_per_contact"]
    assert sorted(per_contact.values()) == [1] * 10 + [2] * 2


def test_two_runs_started_together_push_each_prospect_once(url, db, ghl_sandbox, sandbox_location):
    location = sandbox_location(latency_ms=30)
    insert_prospects(db, location.id, 60)
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: httpx.post(url, json={"location_id": location.id}, headers=AUTH,
                                                     timeout=120), range(2)))
    # One runner of a location at once (its sync lease, docs/sync.md): the other run is refused with 409
    # location_busy, or, started after the first ended, finds nothing due.
    assert {a.status_code for a in answers} <= {200, 409}, [a.text for a in answers]
    assert all(a.json()["error"] == "location_busy" for a in answers if a.status_code == 409)
    runs = [a.json()["locations"][0] for a in answers if a.status_code == 200]
    assert sum(run["pushed"] for run in runs) == 60
    assert all(run["failed"] == 0 for run in runs)
    per_contact = ghl_sandbox.stats(location.id)["upserts_per_contact"]
    assert len(per_contact) == 60 and set(per_contact.values()) == {1}
    assert all(row["ghl_contact_id"] for row in prospect_rows(db, location.id))


def test_429s_and_5xx_lose_nothing_and_duplicate_nothing(url, db, ghl_sandbox, sandbox_location):
    # a one-second window: after each 429 the client waits for the window to free, keep that short here
    location = sandbox_location(burst_limit=100, burst_window_ms=1000)
    insert_prospects(db, location.id, 40)
    ghl_sandbox.set_faults(location.id, rate_limit_rate=0.2, error_rate=0.2, error_status=503,
                           retry_after_seconds=0.2)
    [first] = post(url, {"location_id": location.id})
    injected = ghl_sandbox.stats(location.id)["injected"]
    assert injected.get("rate_limit", 0) > 0 and injected.get("error", 0) > 0
    ghl_sandbox.clear_faults(location.id)
    # a prospect that failed even after the client's retries waits out its backoff: end it, run again
    db.execute("UPDATE sales_prospects SET ghl_sync_next_attempt_at = NULL WHERE ghl_location_id = %s", (location.id,))
    [second] = post(url, {"location_id": location.id})
    assert first["pushed"] + second["pushed"] == 40
    rows = prospect_rows(db, location.id)
    assert all(row["ghl_contact_id"] and row["ghl_sync_error"] is None for row in rows)
    contacts = ghl_sandbox.contacts(location.id)
    assert len(contacts) == 40 and {c["id"] for c in contacts} == {row["ghl_contact_id"] for row in rows}
    assert set(ghl_sandbox.stats(location.id)["upserts_per_contact"].values()) == {1}


def test_an_answer_lost_to_a_timeout_is_retried_without_a_duplicate_contact(db, stack, ghl_sandbox,
                                                                             sync_database, sandbox_location):
    location = sandbox_location()
    insert_prospects(db, location.id, 6)
    ghl_sandbox.set_faults(location.id, hang_count=2, hang_seconds=2.0,  # the upsert is done, the answer late
                           only_paths=["/contacts/upsert"])
    settings = make_settings(stack, ghl_request_timeout_seconds=0.5)
    [summary] = run_sync(sync_database, settings, location_id=location.id)
    assert (summary.pushed, summary.failed) == (6, 0)
    assert len(ghl_sandbox.contacts(location.id)) == 6
    assert sum(ghl_sandbox.stats(location.id)["upserts_per_contact"].values()) == 8  # two retried, same contacts


def test_a_bad_mapping_is_reported_once_and_left_out_of_the_bodies(url, db, ghl_sandbox, sandbox_location):
    location = sandbox_location(mapping={"company_name": "cf_company_name", "linkedin_url": "cf_deleted"})
    insert_prospects(db, location.id, 5)
    [summary] = post(url, {"location_id": location.id})
    assert (summary["pushed"], summary["failed"], summary["status"]) == (5, 0, "partial")
    row = db.execute("SELECT last_sync_status, last_sync_error FROM ghl_integrations WHERE location_id = %s",
                     (location.id,)).fetchone()
    assert row["last_sync_status"] == "partial" and row["last_sync_error"].count("cf_deleted") == 1
    assert ghl_sandbox.stats(location.id)["ignored_custom_field_ids"] == {}  # the unknown id was never sent
    assert all(not r["ghl_sync_error"] for r in prospect_rows(db, location.id))
    stats = ghl_sandbox.stats(location.id)["requests"]
    assert stats.get("GET /locations/{locationId}/customFields") == 1  # checked once per run, not per prospect


def test_a_run_cut_by_its_time_budget_is_finished_by_the_next(db, stack, ghl_sandbox, sync_database,
                                                               sandbox_location):
    location = sandbox_location(burst_limit=10, burst_window_ms=1000)
    insert_prospects(db, location.id, 50)
    settings = make_settings(stack, ghl_max_in_flight=2)
    started = time.monotonic()
    [cut] = run_sync(sync_database, settings, location_id=location.id, deadline=time.monotonic() + 1.0)
    assert cut.stopped_by_deadline and 0 < cut.pushed < 50 and cut.status == "partial"
    assert time.monotonic() - started < 4
    [rest] = run_sync(sync_database, settings, location_id=location.id)
    assert cut.pushed + rest.pushed == 50 and rest.status == "success"
    per_contact = ghl_sandbox.stats(location.id)["upserts_per_contact"]
    assert len(per_contact) == 50 and set(per_contact.values()) == {1}


def test_a_refused_token_fails_the_run_and_keeps_every_prospect_due(url, db, ghl_sandbox, sandbox_location):
    location = sandbox_location(token="not-the-location-token", mapping=None)
    insert_prospects(db, location.id, 5)
    [summary] = post(url, {"location_id": location.id})
    assert summary["status"] == "failed" and summary["pushed"] == 0 and "401" in summary["error"]
    assert "not-the-location-token" not in summary["error"]
    rows = prospect_rows(db, location.id)
    assert all(r["ghl_sync_claim_id"] is None and r["ghl_sync_attempts"] == 0 for r in rows)
    assert ghl_sandbox.stats(location.id)["requests"].get("POST /contacts/upsert", 0) == 0


def test_dry_run_reports_and_writes_nothing(url, db, ghl_sandbox, sandbox_location):
    location = sandbox_location()
    insert_prospects(db, location.id, 3)
    before = db.execute("SELECT last_synced_at, last_sync_status FROM ghl_integrations WHERE location_id = %s",
                        (location.id,)).fetchone()
    response = httpx.post(url, json={"location_id": location.id, "dry_run": True}, headers=AUTH, timeout=60)
    assert response.status_code == 200 and response.json()["dry_run"] is True
    [summary] = response.json()["locations"]
    assert summary["due"] == 3 and summary["pushed"] == 0 and len(summary["prospects"]) == 3
    assert all(p["action"] == "create" and p["body"]["customFields"] for p in summary["prospects"])
    assert ghl_sandbox.stats(location.id)["requests"].get("POST /contacts/upsert", 0) == 0
    assert db.execute("SELECT last_synced_at, last_sync_status FROM ghl_integrations WHERE location_id = %s",
                      (location.id,)).fetchone() == before
    assert all(r["ghl_sync_claim_id"] is None and r["ghl_contact_id"] is None for r in prospect_rows(db, location.id))
