"""Resumability and concurrency: a pull cut mid-way (deadline, crash) goes on from its cursor and stages nothing
twice; two workers on one batch process each row exactly once; counters are true after every step."""

from __future__ import annotations

import json
import threading
import time

import psycopg
import pytest
from psycopg.rows import dict_row

from shared.services.import_batches import advance_batch
from tests.import_batches.conftest import (
    assert_counters_true, contact_record, far_deadline, insert_prospect, pull, unique_email,
)

SEARCH = "POST /contacts/search"
EXPORT = "GET /conversations/messages/export"


class CrashBeforeStaging(Exception):
    pass


class CrashingRepo:
    """The real repository, but the worker dies (after fetching its page) before the n-th page is staged."""

    def __init__(self, repo, crash_at_page: int):
        self._repo, self._crash_at, self._pages = repo, crash_at_page, 0

    def __getattr__(self, name):
        return getattr(self._repo, name)

    def stage_page(self, *args, **kwargs):
        self._pages += 1
        if self._pages == self._crash_at:
            raise CrashBeforeStaging()
        return self._repo.stage_page(*args, **kwargs)


def test_a_pull_cut_by_its_deadline_and_by_a_crash_resumes_from_its_cursor(import_location, ghl_sandbox, db, repo,
                                                                             ghl_factory, settings):
    from shared.services.import_batches import PAGES_AHEAD

    location, _ = import_location("internal", latency_ms=60)
    seeded = ghl_sandbox.seed(location.id, contacts=1050, calls=230)
    expected_total = 1050 + seeded["calls"]
    export_pages = -(-(seeded["calls"] + seeded["voicemails"]) // 100)

    # 1. a deadline that leaves time for a few pages only (both kinds are pulled at once)
    run = pull(repo, ghl_factory, settings, location.id, deadline=time.monotonic() + 0.35)
    batch_id = run.batch["id"]
    first = assert_counters_true(db, batch_id)
    assert first["pull_completed_at"] is None and first["status"] == "processing"
    contacts = first["pull_state"]["contacts"]
    assert 0 < contacts["staged"] < 1050 and contacts["staged"] % 100 == 0
    assert contacts["search_after"] and contacts["done"] is False
    # a deadline loses nothing: every page fetched before it was staged
    stats = ghl_sandbox.stats(location.id)["requests"]
    assert stats[SEARCH] == contacts["pages"] and stats[EXPORT] == first["pull_state"]["calls"]["pages"]

    # 2. the next worker dies before staging its second page (fetched; others may be fetched ahead of it)
    with pytest.raises(CrashBeforeStaging):
        advance_batch(CrashingRepo(repo, crash_at_page=2), ghl_factory, settings, batch_id, deadline=far_deadline())
    second = assert_counters_true(db, batch_id)
    assert second["pull_completed_at"] is None
    assert second["pull_state"]["contacts"]["pages"] + second["pull_state"]["calls"]["pages"] == \
        contacts["pages"] + first["pull_state"]["calls"]["pages"] + 1

    # 3. a scheduler's process call finishes the pull and the batch
    run = advance_batch(repo, ghl_factory, settings, batch_id, deadline=far_deadline())
    final = assert_counters_true(db, batch_id)
    assert run.batch["status"] == "completed" and final["status"] == "completed"
    assert final["total_records"] == final["staged"] == expected_total
    assert final["processed_records"] == expected_total
    assert db.execute("SELECT count(DISTINCT (record_kind, external_id)) AS n FROM ghl_import_staging "
                      "WHERE batch_id = %s", (batch_id,)).fetchone()["n"] == expected_total
    # the pull never went back to the start: every page fetched once, plus those the crash lost (at most the
    # pages each stream had fetched ahead of its stager)
    stats = ghl_sandbox.stats(location.id)["requests"]
    assert 11 < stats[SEARCH] + stats[EXPORT] - export_pages <= 11 + 2 * (PAGES_AHEAD + 2)
    # the export pages over calls and voicemail drops alike (the drops are left out after reading)
    assert stats[EXPORT] >= export_pages and stats[SEARCH] >= 11


def stage_directly(db, batch_id, kind, records):
    db.execute("SELECT stage_import_page(%s, %s, %s::jsonb, NULL, '{}'::jsonb, true)",
               (batch_id, kind, json.dumps(records)))


def test_two_workers_on_one_batch_process_each_row_once(import_location, database_url, db, repo):
    location, _ = import_location("internal")
    batch_id = repo.create_batch(location.id, ["contacts", "calls"], None, None)["id"]
    contacts = [contact_record(email=unique_email()) for _ in range(600)]
    for contact in contacts[::2]:
        insert_prospect(db, email=contact["email"])
    calls = [{"external_id": f"w{batch_id[:8]}-{i}", "raw_data": {"id": i},
              "call_payload": {"external_call_id": f"w{batch_id[:8]}-{i}", "ghl_contact_id": contacts[i]["id"],
                               "call_status": "completed", "duration_seconds": i}} for i in range(600)]
    stage_directly(db, batch_id, "contacts", [{"external_id": c["id"], "raw_data": c} for c in contacts])
    stage_directly(db, batch_id, "calls", calls)
    assert_counters_true(db, batch_id)

    claimed: dict[str, list[int]] = {"a": [], "b": []}
    failures: list[BaseException] = []
    barrier = threading.Barrier(2)

    def worker(name: str) -> None:
        try:
            with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
                barrier.wait()
                while True:
                    result = conn.execute("SELECT process_import_chunk(%s, 50, false) AS r",
                                          (batch_id,)).fetchone()["r"]
                    if not result["claimed"]:
                        return
                    claimed[name].append(result["claimed"])
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(name,)) for name in claimed]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        assert_counters_true(db, batch_id)  # true at every commit, read while the workers run
        time.sleep(0.01)
    for thread in threads:
        thread.join()

    assert not failures, failures
    assert sum(claimed["a"]) + sum(claimed["b"]) == 1200  # no row claimed twice, none left
    assert claimed["a"] and claimed["b"]
    counts = assert_counters_true(db, batch_id)
    assert counts["status"] == "completed" and counts["processed_records"] == 1200 and counts["error_count"] == 0
    statuses = {row["k"]: row["n"] for row in db.execute(
        "SELECT record_kind || ':' || status AS k, count(*) AS n FROM ghl_import_staging "
        "WHERE batch_id = %s GROUP BY 1", (batch_id,))}
    assert statuses == {"contact:imported": 300, "contact:skipped": 300, "call:imported": 600}
    assert db.execute("SELECT count(*) AS n FROM sales_calls WHERE external_call_id LIKE %s",
                      (f"w{batch_id[:8]}-%",)).fetchone()["n"] == 600


def test_a_worker_killed_mid_chunk_leaves_nothing_half_done(import_location, database_url, db, repo):
    location, _ = import_location("internal")
    batch_id = repo.create_batch(location.id, ["contacts"], None, None)["id"]
    contacts = [contact_record(email=unique_email()) for _ in range(20)]
    prospects = [insert_prospect(db, email=c["email"]) for c in contacts]
    stage_directly(db, batch_id, "contacts", [{"external_id": c["id"], "raw_data": c} for c in contacts])

    # the chunk runs, then its worker dies before committing: everything it did goes
    with psycopg.connect(database_url, row_factory=dict_row) as doomed:
        result = doomed.execute("SELECT process_import_chunk(%s, 100, false) AS r", (batch_id,)).fetchone()["r"]
        assert result["claimed"] == 20
        doomed.cancel()
        doomed.close()  # no commit: the transaction is rolled back, its row locks released

    counts = assert_counters_true(db, batch_id)
    assert counts["open"] == 20 and counts["processed_records"] == 0
    assert db.execute("SELECT count(*) AS n FROM sales_prospects WHERE id = ANY(%s::uuid[]) "
                      "AND ghl_contact_id IS NOT NULL", (prospects,)).fetchone()["n"] == 0
    # the next call finishes the work at once (no lease to wait out)
    result = repo.process_chunk(batch_id, 100, False)
    assert result["claimed"] == 20 and result["batch"]["status"] == "completed"
    assert assert_counters_true(db, batch_id)["processed_records"] == 20


def test_a_batch_the_portal_created_as_pending_is_pulled_and_completed(repo, ghl_factory, settings, import_location,
                                                                       ghl_sandbox, db):
    """The portal may insert a batch row itself (status defaults to 'pending'); the scheduler's process finishes it."""
    from shared.services.import_batches import advance_batch

    location, _ = import_location("internal")
    ghl_sandbox.seed(location.id, contacts=3)
    batch_id = db.execute("INSERT INTO ghl_import_batches (location_id, kinds) VALUES (%s, '{contacts}') "
                          "RETURNING id", (location.id,)).fetchone()["id"]
    advance_batch(repo, ghl_factory, settings, str(batch_id), deadline=far_deadline())
    batch = assert_counters_true(db, batch_id)
    assert (batch["status"], batch["total_records"], batch["processed_records"]) == ("completed", 3, 3)
