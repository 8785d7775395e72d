"""The sync service on the real stack (Postgres, PostgREST, supabase-py) with an in-process fake GHL client."""

from __future__ import annotations

import asyncio
import time

import pytest

from shared import errors
from shared.services.sync_prospects import sync_locations
from tests.sync.conftest import insert_prospects, make_settings
from tests.sync.fake_ghl import FakeGhl, permanent

MAPPING = {"company_name": "cf_company", "contact_title": "cf_title", "linkedin_url": "cf_linkedin"}
FIELDS = [("cf_company", "contact.company_name"), ("cf_title", "contact.job_title"),
          ("cf_linkedin", "contact.linkedin_url")]


@pytest.fixture
def settings(stack):
    return make_settings(stack, ghl_max_in_flight=4)


def sync(repository, settings, ghl, **kwargs):
    return asyncio.run(sync_locations(repository, settings, client_factory=ghl, **kwargs))


def integration(db, location):
    return db.execute("SELECT last_sync_status, last_sync_error, last_synced_at FROM ghl_integrations"
                      " WHERE location_id = %s", (location,)).fetchone()


def prospects(db, ids):
    return db.execute("SELECT * FROM sales_prospects WHERE id = ANY(%s::uuid[]) ORDER BY first_name",
                      (ids,)).fetchall()


def test_new_prospects_are_pushed_once_with_mapped_fields_and_written_back(db, repository, settings, new_location):
    location = new_location(mapping=MAPPING, token="secret-token-1")
    ids = insert_prospects(db, location, 10)
    ghl = FakeGhl(fields=FIELDS, latency=0.01)
    [summary] = sync(repository, settings, ghl, location_id=location)
    assert (summary.due, summary.pushed, summary.created, summary.updated, summary.failed) == (10, 10, 10, 0, 0)
    assert summary.status == "success" and summary.error is None
    assert set(ghl.upserts.values()) == {1} and len(ghl.upserts) == 10
    assert ghl.field_listings[location] == 1 and ghl.tokens == ["secret-token-1"]
    assert 1 < ghl.max_in_flight <= 4  # concurrent, bounded by ghl_max_in_flight
    body = next(b for b in ghl.bodies if b["email"].endswith(".0@example.com"))
    assert body["firstName"] == "First0" and body["phone"].startswith("+1") and body["source"] == "Portal Sync"
    assert {"id": "cf_title", "value": "Head of Sales"} in body["customFields"]
    for row in prospects(db, ids):
        assert row["ghl_contact_id"] in ghl.upserts
        assert row["ghl_synced_at"] == row["content_updated_at"]
        assert row["ghl_sync_claim_id"] is None and row["ghl_sync_error"] is None
    assert integration(db, location)["last_sync_status"] == "success"

    [again] = sync(repository, settings, ghl, location_id=location)
    assert (again.due, again.pushed) == (0, 0) and sum(ghl.upserts.values()) == 10
    assert ghl.field_listings[location] == 1  # nothing due: not a single GHL request


def test_edited_prospects_are_pushed_again_as_updates(db, repository, settings, new_location):
    location = new_location()
    ids = insert_prospects(db, location, 3)
    ghl = FakeGhl()
    sync(repository, settings, ghl, location_id=location)
    db.execute("UPDATE sales_prospects SET company_name = 'New Firm' WHERE id = %s", (ids[1],))
    [summary] = sync(repository, settings, ghl, location_id=location)
    assert (summary.due, summary.pushed, summary.created, summary.updated) == (1, 1, 0, 1)
    assert ghl.bodies[-1]["companyName"] == "New Firm"


def test_an_edit_made_during_the_push_is_pushed_by_the_next_run(db, repository, settings, new_location):
    location = new_location()
    [prospect_id] = insert_prospects(db, location, 1)

    async def edit_while_in_flight(body):
        await asyncio.to_thread(db.execute, "UPDATE sales_prospects SET last_name = 'Edited' WHERE id = %s",
                                (prospect_id,))

    ghl = FakeGhl(before_answer=edit_while_in_flight)
    sync(repository, settings, ghl, location_id=location)
    assert ghl.bodies[-1]["lastName"] != "Edited"
    ghl.before_answer = None
    [summary] = sync(repository, settings, ghl, location_id=location)
    assert summary.updated == 1 and ghl.bodies[-1]["lastName"] == "Edited"


def test_a_rejected_prospect_keeps_its_error_and_the_run_goes_on(db, repository, settings, new_location):
    location = new_location()
    ids = insert_prospects(db, location, 5)
    bad_email = prospects(db, [ids[2]])[0]["email"]
    ghl = FakeGhl(fail=lambda body: permanent(422, "email is invalid") if body.get("email") == bad_email else None)
    [summary] = sync(repository, settings, ghl, location_id=location)
    assert (summary.pushed, summary.failed, summary.status) == (4, 1, "partial")
    assert "email is invalid" in summary.error
    [bad] = prospects(db, [ids[2]])
    assert bad["ghl_contact_id"] is None and bad["ghl_sync_attempts"] == 1
    assert "422" in bad["ghl_sync_error"] and bad["ghl_sync_next_attempt_at"] is not None
    assert integration(db, location)["last_sync_status"] == "partial"


def test_transient_failures_are_retried_on_a_later_run(db, repository, settings, new_location):
    location = new_location()
    ids = insert_prospects(db, location, 3)
    ghl = FakeGhl(fail=lambda body: errors.GhlTransientError("GHL kept answering 503"))
    [summary] = sync(repository, settings, ghl, location_id=location)
    assert (summary.pushed, summary.failed, summary.status) == (0, 3, "failed")
    ghl.fail = None
    db.execute("UPDATE sales_prospects SET ghl_sync_next_attempt_at = now() WHERE id = ANY(%s::uuid[])", (ids,))
    [summary] = sync(repository, settings, ghl, location_id=location)
    assert (summary.pushed, summary.status) == (3, "success")
    assert all(row["ghl_sync_attempts"] == 0 for row in prospects(db, ids))


def test_a_refused_token_stops_the_location_and_releases_its_claims(db, repository, settings, new_location):
    location = new_location()
    ids = insert_prospects(db, location, 20)
    ghl = FakeGhl(fail=lambda body: permanent(401, "Invalid JWT"))
    [summary] = sync(repository, settings, ghl, location_id=location)
    assert summary.status == "failed" and "token" in summary.error and summary.pushed == 0
    assert len(ghl.bodies) == 0
    rows = prospects(db, ids)
    assert all(r["ghl_sync_claim_id"] is None and r["ghl_sync_attempts"] == 0 for r in rows)
    assert repository.count_due(location) == 20  # nothing lost: due again at once


def test_a_bad_mapping_is_reported_once_on_the_integration(db, repository, settings, new_location):
    location = new_location(mapping={"company_name": "cf_company", "linkedin_url": "cf_missing"})
    insert_prospects(db, location, 4)
    ghl = FakeGhl(fields=FIELDS)
    [summary] = sync(repository, settings, ghl, location_id=location)
    assert summary.pushed == 4 and summary.failed == 0 and summary.status == "partial"
    row = integration(db, location)
    assert row["last_sync_error"].count("cf_missing") == 1
    assert all(b["customFields"] == [{"id": "cf_company", "value": b["companyName"]}] for b in ghl.bodies)
    assert db.execute("SELECT count(*) AS n FROM sales_prospects WHERE ghl_location_id = %s"
                      " AND ghl_sync_error IS NOT NULL", (location,)).fetchone()["n"] == 0


def test_prospects_without_email_or_phone_are_skipped_until_edited(db, repository, settings, new_location):
    location = new_location()
    [skipped] = insert_prospects(db, location, 1, email=None, with_phone=False)
    ghl = FakeGhl()
    [summary] = sync(repository, settings, ghl, location_id=location)
    assert (summary.skipped, summary.pushed, summary.status) == (1, 0, "success")
    assert "no email" in prospects(db, [skipped])[0]["ghl_sync_error"]
    assert sync(repository, settings, ghl, location_id=location)[0].due == 0
    db.execute("UPDATE sales_prospects SET email = 'found@example.com' WHERE id = %s", (skipped,))
    assert sync(repository, settings, ghl, location_id=location)[0].pushed == 1


def test_two_runs_at_the_same_time_push_each_prospect_once(db, repository, settings, new_location):
    location = new_location()
    insert_prospects(db, location, 40)
    ghl = FakeGhl(latency=0.02)

    async def both():
        return await asyncio.gather(
            sync_locations(repository, settings, client_factory=ghl, location_id=location),
            sync_locations(repository, settings, client_factory=ghl, location_id=location))

    first, second = asyncio.run(both())
    assert first[0].pushed + second[0].pushed == 40
    assert first[0].pushed > 0 and second[0].pushed > 0  # both really worked
    assert len(ghl.upserts) == 40 and set(ghl.upserts.values()) == {1}


def test_a_run_cut_by_its_time_budget_is_finished_by_the_next(db, repository, settings, new_location):
    location = new_location()
    insert_prospects(db, location, 60)
    ghl = FakeGhl(latency=0.05)
    [cut] = sync(repository, settings, ghl, location_id=location, deadline=time.monotonic() + 0.2)
    assert cut.stopped_by_deadline and 0 < cut.pushed < 60 and cut.status == "partial"
    assert "time budget" in integration(db, location)["last_sync_error"]
    [rest] = sync(repository, settings, ghl, location_id=location)
    assert cut.pushed + rest.pushed == 60 and rest.status == "success"
    assert len(ghl.upserts) == 60 and set(ghl.upserts.values()) == {1}


def test_limit_and_campaign(db, repository, settings, new_location):
    location = new_location()
    insert_prospects(db, location, 5, campaign="spring")
    insert_prospects(db, location, 5, campaign="autumn")
    ghl = FakeGhl()
    [summary] = sync(repository, settings, ghl, location_id=location, campaign="spring", limit=3)
    assert (summary.due, summary.pushed) == (5, 3)
    assert {b["email"] for b in ghl.bodies} <= {r["email"] for r in db.execute(
        "SELECT email FROM sales_prospects WHERE campaign = 'spring' AND ghl_location_id = %s", (location,))}


def test_dry_run_plans_and_writes_nothing(db, repository, settings, new_location):
    location = new_location(mapping=MAPPING)
    ids = insert_prospects(db, location, 3)
    before = integration(db, location)
    ghl = FakeGhl(fields=FIELDS)
    [summary] = sync(repository, settings, ghl, location_id=location, dry_run=True)
    assert summary.dry_run and summary.due == 3 and summary.pushed == 0 and summary.status is None
    assert [p["action"] for p in summary.prospects] == ["create"] * 3
    assert summary.prospects[0]["body"]["customFields"]
    assert ghl.bodies == [] and integration(db, location) == before
    assert all(r["ghl_sync_claim_id"] is None and r["ghl_synced_at"] is None for r in prospects(db, ids))


def test_locations_run_in_parallel_and_an_unknown_location_is_refused(db, repository, settings, new_location):
    locations = [new_location() for _ in range(3)]
    for location in locations:
        insert_prospects(db, location, 4)
    ghl = FakeGhl(latency=0.2)
    started = time.monotonic()

    async def all_three():
        return await asyncio.gather(*(sync_locations(repository, settings, client_factory=ghl, location_id=loc)
                                      for loc in locations))

    summaries = asyncio.run(all_three())
    assert sum(s[0].pushed for s in summaries) == 12
    assert time.monotonic() - started < 0.2 * 12 / 2  # not one request at a time
    with pytest.raises(errors.UnknownLocation):
        sync(repository, settings, ghl, location_id="no-such-location")
