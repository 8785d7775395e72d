"""Fault injection against a running stack (small versions; bench/reliability.py runs the full sizes):

* PostgREST stopped in the middle of a webhook storm, then Postgres (embedded) stopped in the middle of
  another: after the replay, the calls are exactly those of the same storm without a fault;
* GHL 429 storms and 5xx during a sync: every prospect pushed, none twice;
* an import worker killed with SIGKILL while its chunk's transaction is open: the next run finishes the
  batch with true counters.
"""

from __future__ import annotations

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.conftest import TEST_WEBHOOK_SECRET, unique
from tests.reliability.harness import (
    Outage, call_rows, differences, event_counts, new_internal_location, replay, send_storm, storm_bodies, wait_until_serving,
)

pytestmark = pytest.mark.stack

CALLS = 200  # x 2 hits, 8 senders


def connect(info) -> psycopg.Connection:
    return psycopg.connect(info["database_url"], autocommit=True, row_factory=dict_row)


def storm_with_outage(fault_stack, service: str, calls: int = CALLS) -> dict:
    stack, info = fault_stack
    url = info["functions"]["ghl-call-webhook"]
    reference, faulted = unique("ref"), unique("fault")
    with connect(info) as db:
        reference_location = new_internal_location(db, reference)
        faulted_location = new_internal_location(db, faulted)

    clean = send_storm(url, TEST_WEBHOOK_SECRET, storm_bodies(calls, reference, reference_location))
    assert dict(clean.statuses) == {200: 2 * calls}

    outage = Outage(stack, service, start_after=0.25, down_seconds=1.0, min_failures=20)
    storm = send_storm(url, TEST_WEBHOOK_SECRET, storm_bodies(calls, faulted, faulted_location), outage=outage)
    wait_until_serving(info)
    # every request was either taken (200) or spooled and told so (503 + Retry-After): nothing else
    assert set(storm.statuses) <= {200, 503}, storm.statuses
    assert storm.statuses[503] >= 20, storm.statuses
    assert storm.spooled == storm.statuses[503]
    assert all(body.get("retry_after") == "60" for _, status, body in storm.answers if status == 503)

    report = replay(info)
    assert report.stopped_by is None and report.kept == 0 and report.rejected == 0
    assert report.replayed >= storm.spooled

    with connect(info) as db:
        expected, got = call_rows(db, reference), call_rows(db, faulted)
        events = event_counts(db, faulted_location)
    assert len(expected) == calls
    assert not differences(expected, got), differences(expected, got)  # zero lost, every row complete
    assert events.get("rejected", 0) == 0 and events["total"] >= 2 * calls
    assert events.get("from_spool", 0) == report.replayed
    return {"statuses": dict(storm.statuses), "replayed": report.replayed, "events": events}


def test_postgrest_stopped_mid_storm_loses_nothing(fault_stack):
    storm_with_outage(fault_stack, "postgrest")


def test_postgres_stopped_mid_storm_loses_nothing(fault_stack):
    storm_with_outage(fault_stack, "postgres")


# ---- GHL 429 storms and 5xx during a sync ----------------------------------------------------------------

def sync_until_done(url: str, location_id: str, db, runs: int = 6) -> list[dict]:
    """POST the sync until nothing is due; between runs, a prospect the client gave up on waits out no backoff."""
    import httpx

    from tests.conftest import TEST_SCHEDULER_SECRET

    summaries = []
    for _ in range(runs):
        response = httpx.post(url, json={"location_id": location_id}, timeout=300,
                              headers={"Authorization": f"Bearer {TEST_SCHEDULER_SECRET}"})
        assert response.status_code == 200, response.text
        [summary] = response.json()["locations"]
        summaries.append(summary)
        if summary["due"] == 0:
            break
        db.execute("UPDATE sales_prospects SET ghl_sync_next_attempt_at = NULL WHERE ghl_location_id = %s",
                   (location_id,))
    return summaries


def test_ghl_429_storms_and_5xx_during_a_sync_lose_nothing_and_duplicate_nothing(stack, db, ghl_sandbox):
    from tests.sync.conftest import insert_integration, insert_prospects

    prospects = 120
    location = ghl_sandbox.create_location(burst_limit=100, burst_window_ms=1000)
    insert_integration(db, location.id, token=location.token, mapping=None)
    insert_prospects(db, location.id, prospects)
    # a storm: the next 40 requests answered 429 whatever the budget; and one request in six a 502
    ghl_sandbox.set_faults(location.id, rate_limit_count=40, retry_after_seconds=0.2, error_rate=0.16,
                           error_status=502)
    summaries = sync_until_done(stack["functions"]["sync-prospects-to-ghl"], location.id, db)

    stats = ghl_sandbox.stats(location.id)
    assert stats["injected"].get("rate_limit", 0) == 40 and stats["injected"].get("error", 0) > 0
    assert sum(s["pushed"] for s in summaries) == prospects and summaries[-1]["due"] == 0
    rows = db.execute("SELECT ghl_contact_id FROM sales_prospects WHERE ghl_location_id = %s", (location.id,)).fetchall()
    contacts = ghl_sandbox.contacts(location.id)
    assert len(contacts) == prospects  # zero lost, zero duplicate contacts
    assert {c["id"] for c in contacts} == {r["ghl_contact_id"] for r in rows}
    assert set(stats["upserts_per_contact"].values()) == {1}  # each contact written once
    assert stats["contract_violations"] == 0


# ---- an import worker killed with SIGKILL mid-chunk ----------------------------------------------------------

@pytest.mark.parametrize("mode", ["service", "open_transaction"])
def test_an_import_worker_killed_mid_chunk_is_finished_by_the_next_run_with_true_counters(stack, db, mode):
    from pathlib import Path

    from shared.adapters.import_repository import ImportRepository
    from shared.adapters.supabase_db import create_service_client
    from shared.config import Settings
    from shared.services.import_batches import advance_batch, ghl_client_factory
    from tests.reliability.harness import (
        batch_counts, counters_true, kill_worker_mid_chunk, stage_contacts_batch, wait_for_no_chunk_running,
    )

    location = unique("kill")
    db.execute("INSERT INTO ghl_integrations (location_id, api_token) VALUES (%s, %s)",
               (location, "kill-token-" + location))
    contacts = 3000
    batch_id = stage_contacts_batch(db, location, contacts)
    killed = kill_worker_mid_chunk(stack, db, batch_id, mode, chunk=contacts, root=Path(__file__).resolve().parents[2])
    assert killed["returncode"] == -9
    wait_for_no_chunk_running(db)
    after_kill = batch_counts(db, batch_id)
    assert counters_true(after_kill), after_kill
    if mode == "open_transaction":
        assert after_kill["open"] == contacts and after_kill["processed_records"] == 0  # rolled back whole

    settings = Settings(supabase_url=stack["supabase_url"], supabase_service_role_key=stack["service_role_key"],
                        import_chunk_size=500)
    repo = ImportRepository(create_service_client(stack["supabase_url"], stack["service_role_key"]))
    import time

    run = advance_batch(repo, ghl_client_factory(settings), settings, batch_id, deadline=time.monotonic() + 120)
    final = batch_counts(db, batch_id)
    assert run.batch["status"] == "completed" and final["status"] == "completed"
    assert counters_true(final) and final["processed_records"] == contacts and final["open"] == 0
    assert final["errors"] == 0
    linked = db.execute("SELECT count(*) AS n, count(DISTINCT ghl_contact_id) AS d FROM sales_prospects "
                        "WHERE ghl_contact_id IN (SELECT external_id FROM ghl_import_staging WHERE batch_id = %s)",
                        (batch_id,)).fetchone()
    assert linked["n"] == linked["d"] == contacts // 2  # each matched prospect linked once
