"""The sync's SQL functions through PostgREST: what is due, lease claims, guarded result writes, run status."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from shared import errors
from tests.sync.conftest import insert_integration, insert_prospects
from tests.conftest import unique


def claim(repository, location_id, limit=100, lease=60, campaign=None, claim_id=None):
    claim_id = claim_id or str(uuid.uuid4())
    return claim_id, repository.claim(location_id, claim_id, lease_seconds=lease, limit=limit, campaign=campaign)


def pushed(row, contact_id="c1"):
    return {"id": row["id"], "outcome": "pushed", "ghl_contact_id": contact_id,
            "content_updated_at": row["content_updated_at"]}


def record(repository, claim_id, results):
    return repository.record_results(claim_id, results, backoff_base_seconds=60, backoff_cap_seconds=3600)


def test_due_means_located_and_not_yet_pushed_at_this_content(db, repository, new_location):
    location = new_location()
    ids = insert_prospects(db, location, 3)
    insert_prospects(db, None, 2)  # no location: never due
    assert repository.count_due(location) == 3
    claim_id, rows = claim(repository, location)
    assert sorted(r["id"] for r in rows) == sorted(ids)
    assert record(repository, claim_id, [pushed(r, f"c{i}") for i, r in enumerate(rows)]) == 3
    assert repository.count_due(location) == 0
    # the bundle's own writes (updated_at, bookkeeping) do not make a prospect due; a pushed field does
    db.execute("UPDATE sales_prospects SET ghl_sync_attempts = 0 WHERE id = %s", (ids[0],))
    assert repository.count_due(location) == 0
    db.execute("UPDATE sales_prospects SET last_name = 'Edited' WHERE id = %s", (ids[1],))
    assert [r["id"] for r in repository.list_due(location, None, 10)] == [ids[1]]


def test_claims_are_exclusive_until_the_lease_expires(db, repository, new_location):
    location = new_location()
    insert_prospects(db, location, 5)
    first_id, first = claim(repository, location, limit=3)
    second_id, second = claim(repository, location, limit=10)
    assert len(first) == 3 and len(second) == 2
    assert not {r["id"] for r in first} & {r["id"] for r in second}
    assert claim(repository, location)[1] == []
    # an expired lease (a crashed run) is claimable again, and the old claim can no longer write
    db.execute("UPDATE sales_prospects SET ghl_sync_claimed_until = now() - interval '1 second'"
               " WHERE ghl_sync_claim_id = %s", (first_id,))
    third_id, third = claim(repository, location)
    assert {r["id"] for r in third} == {r["id"] for r in first}
    assert record(repository, first_id, [pushed(r, "stale") for r in first]) == 0
    assert record(repository, third_id, [pushed(r, "fresh") for r in third]) == 3
    stored = db.execute("SELECT DISTINCT ghl_contact_id FROM sales_prospects WHERE id = ANY(%s::uuid[])",
                        ([r["id"] for r in first],)).fetchall()
    assert stored == [{"ghl_contact_id": "fresh"}]


def test_concurrent_claims_never_share_a_prospect(db, repository, new_location):
    location = new_location()
    ids = insert_prospects(db, location, 60)
    with ThreadPoolExecutor(6) as pool:
        claims = list(pool.map(lambda _: claim(repository, location, limit=7)[1], range(12)))
    claimed = [r["id"] for rows in claims for r in rows]
    assert len(claimed) == len(set(claimed)) == 60
    assert set(claimed) == set(ids)


def test_ghl_synced_at_is_the_content_seen_at_claim_so_an_edit_during_the_push_is_pushed_again(
        db, repository, new_location):
    location = new_location()
    [prospect_id] = insert_prospects(db, location, 1)
    claim_id, [row] = claim(repository, location)
    db.execute("UPDATE sales_prospects SET company_name = 'Renamed while pushing' WHERE id = %s", (prospect_id,))
    assert record(repository, claim_id, [pushed(row)]) == 1
    assert repository.count_due(location) == 1
    state = db.execute("SELECT ghl_contact_id, ghl_synced_at < content_updated_at AS stale"
                       " FROM sales_prospects WHERE id = %s", (prospect_id,)).fetchone()
    assert state == {"ghl_contact_id": "c1", "stale": True}


def test_failures_back_off_exponentially_and_success_clears_them(db, repository, new_location):
    location = new_location()
    [prospect_id] = insert_prospects(db, location, 1)
    waits = []
    for _ in range(3):
        db.execute("UPDATE sales_prospects SET ghl_sync_next_attempt_at = NULL WHERE id = %s", (prospect_id,))
        claim_id, [row] = claim(repository, location)
        assert record(repository, claim_id, [{"id": row["id"], "outcome": "failed", "error": "GHL answered 422"}]) == 1
        assert repository.count_due(location) == 0  # waiting out the backoff
        state = db.execute("SELECT ghl_sync_attempts, ghl_sync_error, ghl_sync_claim_id,"
                           " extract(epoch FROM ghl_sync_next_attempt_at - now()) AS wait"
                           " FROM sales_prospects WHERE id = %s", (prospect_id,)).fetchone()
        assert state["ghl_sync_error"] == "GHL answered 422" and state["ghl_sync_claim_id"] is None
        waits.append(round(float(state["wait"]) / 10) * 10)
    assert waits == [60, 120, 240]
    db.execute("UPDATE sales_prospects SET ghl_sync_next_attempt_at = NULL WHERE id = %s", (prospect_id,))
    claim_id, [row] = claim(repository, location)
    record(repository, claim_id, [pushed(row)])
    state = db.execute("SELECT ghl_sync_attempts, ghl_sync_error, ghl_sync_next_attempt_at FROM sales_prospects"
                       " WHERE id = %s", (prospect_id,)).fetchone()
    assert state == {"ghl_sync_attempts": 0, "ghl_sync_error": None, "ghl_sync_next_attempt_at": None}


def test_skipped_waits_for_an_edit_and_released_is_due_at_once(db, repository, new_location):
    location = new_location()
    skipped_id, released_id = insert_prospects(db, location, 2)
    claim_id, rows = claim(repository, location)
    by_id = {r["id"]: r for r in rows}
    record(repository, claim_id, [
        {"id": skipped_id, "outcome": "skipped", "content_updated_at": by_id[skipped_id]["content_updated_at"],
         "error": "skipped: no email"},
        {"id": released_id, "outcome": "released"}])
    assert [r["id"] for r in repository.list_due(location, None, 10)] == [released_id]
    db.execute("UPDATE sales_prospects SET email = 'new@example.com' WHERE id = %s", (skipped_id,))
    assert {r["id"] for r in repository.list_due(location, None, 10)} == {skipped_id, released_id}


def test_campaign_filter_and_limit(db, repository, new_location):
    location = new_location()
    spring = insert_prospects(db, location, 3, campaign="spring")
    insert_prospects(db, location, 2, campaign="autumn")
    assert repository.count_due(location, "spring") == 3
    _, rows = claim(repository, location, limit=2, campaign="spring")
    assert len(rows) == 2 and {r["id"] for r in rows} <= set(spring)


def test_only_active_internal_integrations_are_synced(db, repository):
    active, inactive, client = unique("loc"), unique("loc"), unique("loc")
    insert_integration(db, active)
    insert_integration(db, inactive, active=False)
    insert_integration(db, client, integration_type="client")
    listed = {row["location_id"] for row in repository.list_integrations()}
    assert active in listed and inactive not in listed and client not in listed
    assert repository.list_integrations(inactive) == []


def test_finish_run_records_the_status_on_the_integration(db, repository, new_location):
    location = new_location()
    repository.finish_run(location, "partial", "1 prospect(s) failed")
    row = db.execute("SELECT last_sync_status, last_sync_error, last_synced_at > now() - interval '1 minute' AS recent"
                     " FROM ghl_integrations WHERE location_id = %s", (location,)).fetchone()
    assert row == {"last_sync_status": "partial", "last_sync_error": "1 prospect(s) failed", "recent": True}
    with pytest.raises(errors.BadRequest, match="status must be"):
        repository.finish_run(location, "done", None)


def test_bad_results_are_rejected_with_a_clear_error(repository):
    with pytest.raises(errors.BadRequest, match="pushed needs ghl_contact_id"):
        record(repository, str(uuid.uuid4()), [{"id": str(uuid.uuid4()), "outcome": "pushed"}])
    with pytest.raises(errors.BadRequest, match="lease seconds and limit"):
        repository.claim("loc", str(uuid.uuid4()), lease_seconds=0, limit=1)


def test_anon_cannot_call_the_sync_functions(anon_client):
    from postgrest.exceptions import APIError

    with pytest.raises(APIError):
        anon_client.rpc("list_sync_integrations", {"p_location_id": None}).execute()
