"""The marking trigger on both call tables, through plain SQL (any writer: a person editing a row included)."""

from __future__ import annotations

import pytest

from tests.conftest import unique

INSERTS = {
    "sales_calls": "INSERT INTO sales_calls (external_call_id, ghl_location_id, call_status, duration_seconds,"
                   " transcript) VALUES (%s, 'loc_sql', %s, %s, %s) RETURNING *",
    "calls": "INSERT INTO calls (external_call_id, ghl_location_id, call_status, duration_seconds, transcript)"
             " VALUES (%s, 'loc_sql', %s, %s, %s) RETURNING *",
}


def insert(db, table, status, duration=None, transcript=None) -> dict:
    return db.execute(INSERTS[table], (unique("call"), status, duration, transcript)).fetchone()


def update(db, table, row, **values) -> dict:
    sets = ", ".join(f"{name} = %s" for name in values)
    return db.execute(f"UPDATE {table} SET {sets} WHERE id = %s RETURNING *", (*values.values(), row["id"])).fetchone()


@pytest.mark.parametrize("table", ["sales_calls", "calls"])
def test_what_is_marked_on_insert(db, table):
    connected = insert(db, table, "completed")
    assert connected["enrichment_status"] == "pending" and connected["enrichment_requested_at"] is not None
    assert connected["enrichment_next_attempt_at"] is not None and connected["enrichment_attempts"] == 0
    assert insert(db, table, "answered", transcript="Agent: hi")["enrichment_status"] is None
    assert insert(db, table, "voicemail", duration=20)["enrichment_status"] == "pending"  # a recording to fetch
    assert insert(db, table, "no-answer")["enrichment_status"] is None
    assert insert(db, table, "ringing")["enrichment_status"] is None


@pytest.mark.parametrize("table", ["sales_calls", "calls"])
def test_a_need_met_by_a_writer_clears_and_a_new_need_marks_again(db, table):
    row = insert(db, table, "completed")
    row = update(db, table, row, transcript="Agent: hello")
    assert row["enrichment_status"] is None and row["enrichment_next_attempt_at"] is None
    row = update(db, table, row, enrichment_status="done")
    row = update(db, table, row, notes="a note")  # nothing new needed: done stays done
    assert row["enrichment_status"] == "done"
    row = update(db, table, row, duration_seconds=42)  # a recording is needed now
    assert row["enrichment_status"] == "pending" and row["enrichment_attempts"] == 0


def test_a_status_moving_from_transient_to_connected_marks_the_call(db):
    row = insert(db, "sales_calls", "ringing")
    assert row["enrichment_status"] is None
    assert update(db, "sales_calls", row, call_status="answered")["enrichment_status"] == "pending"
