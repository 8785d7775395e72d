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
