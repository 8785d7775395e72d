"""public.upsert_call, the one merge rule, against the real database."""

from __future__ import annotations

import itertools
import threading

import psycopg
import pytest
from psycopg.types.json import Jsonb

from shared.domain.calls import CallRecord
from tests.conftest import unique

pytestmark = pytest.mark.stack

CALL_COLUMNS = ("ghl_location_id", "ghl_contact_id", "direction", "from_number", "to_number", "call_status",
                "connected", "duration_seconds", "started_at", "disposition", "disposition_source", "notes",
                "transcript", "recording_url", "raw_payload")


def upsert(db, **fields) -> dict:
    payload = CallRecord.build(**fields).to_sql_payload()
    return db.execute("SELECT upsert_call(%s) AS r", (Jsonb(payload),)).fetchone()["r"]


def row(db, table: str, call_id: str) -> dict:
    return db.execute(f"SELECT * FROM {table} WHERE external_call_id = %s", (call_id,)).fetchone()


def merged_view(record: dict) -> dict:
    return {c: record[c] for c in CALL_COLUMNS}


def completed_hit(call_id, location, **extra):
    return dict(external_call_id=call_id, location_id=location, ghl_contact_id="cnt_1", direction="outbound",
                from_number="+15551234567", to_number="+15559876543", call_status="Answered",
                duration_seconds=184, started_at="2026-02-12T15:04:05Z", raw={"hit": "completed"}, **extra)


def disposition_hit(call_id, location, **extra):
    return dict(external_call_id=call_id, location_id=location, disposition="Callback Requested",
                notes="call back Tuesday", transcript="...", raw={"hit": "disposition"}, **extra)


@pytest.mark.parametrize("order", ["completed first", "disposition first"])
def test_two_hits_merge_to_one_complete_row_in_either_order(db, make_integration, order):
    location, _ = make_integration("internal")
    call_id = unique("call")
    hits = [completed_hit(call_id, location), disposition_hit(call_id, location)]
    if order == "disposition first":
        hits.reverse()
    outcomes = [upsert(db, **hit)["outcome"] for hit in hits]
    assert outcomes == ["inserted", "updated"]
    got = row(db, "sales_calls", call_id)
    assert (got["call_status"], got["connected"], got["duration_seconds"], got["to_number"]) == (
        "answered", True, 184, "+15559876543")
    assert (got["disposition"], got["disposition_source"], got["notes"]) == (
        "Callback Requested", "chosen", "call back Tuesday")
    assert sorted(hit["hit"] for hit in got["raw_payload"]["hits"].values()) == ["completed", "disposition"]


def test_both_orders_give_the_same_row(db, make_integration):
    location, _ = make_integration("internal")
    views = []
    for order in itertools.permutations([
        completed_hit("X", location, notes=None),
        dict(external_call_id="X", location_id=location, notes="the receptionist took a message", raw={"n": 1}),
        dict(external_call_id="X", location_id=location, call_status="ringing", raw={"r": 1}),
    ]):
        call_id = unique("call")
        for hit in order:
            upsert(db, **{**hit, "external_call_id": call_id})
        views.append(merged_view(row(db, "sales_calls", call_id)))
    assert all(view == views[0] for view in views)
    assert (views[0]["call_status"], views[0]["disposition"], views[0]["disposition_source"]) == (
        "answered", "Gatekeeper", "inferred")


def test_same_hit_twice_is_unchanged_and_touches_nothing(db, make_integration):
    location, _ = make_integration("internal")
    call_id = unique("call")
    first = upsert(db, **completed_hit(call_id, location))
    before = row(db, "sales_calls", call_id)
    second = upsert(db, **completed_hit(call_id, location))
    assert (first["outcome"], second["outcome"], second["id"], second["table"]) == (
        "inserted", "unchanged", first["id"], "sales_calls")
    assert row(db, "sales_calls", call_id) == before  # updated_at included


def test_missing_or_null_never_erases(db, make_integration):
    location, _ = make_integration("internal")
    call_id = unique("call")
    upsert(db, **completed_hit(call_id, location))
    payload = {"external_call_id": call_id, "location_id": location, "notes": "later note", "to_number": None,
               "duration_seconds": None, "raw": {"n": 2}}
    db.execute("SELECT upsert_call(%s)", (Jsonb(payload),))
    got = row(db, "sales_calls", call_id)
    assert (got["to_number"], got["duration_seconds"], got["notes"]) == ("+15559876543", 184, "later note")


def test_a_later_value_updates(db, make_integration):
    location, _ = make_integration("internal")
    call_id = unique("call")
    upsert(db, **completed_hit(call_id, location))
    upsert(db, external_call_id=call_id, location_id=location, duration_seconds=200, raw={"n": 3})
    assert row(db, "sales_calls", call_id)["duration_seconds"] == 200


@pytest.mark.parametrize("order", [("Ringing", "Answered"), ("Answered", "Ringing")])
def test_final_status_beats_transient(db, make_integration, order):
    location, _ = make_integration("internal")
    call_id = unique("call")
    for n, status in enumerate(order):
        upsert(db, external_call_id=call_id, location_id=location, call_status=status, raw={"n": n})
    got = row(db, "sales_calls", call_id)
    assert (got["call_status"], got["connected"]) == ("answered", True)


@pytest.mark.parametrize("chosen_first", [True, False])
def test_chosen_disposition_beats_inferred(db, make_integration, chosen_first):
    location, _ = make_integration("internal")
    call_id = unique("call")
    hits = [dict(external_call_id=call_id, location_id=location, disposition="meeting booked", raw={"a": 1}),
            dict(external_call_id=call_id, location_id=location, call_status="Voicemail", raw={"b": 1})]
    for hit in hits if chosen_first else reversed(hits):
        upsert(db, **hit)
    got = row(db, "sales_calls", call_id)
    assert (got["disposition"], got["disposition_source"], got["call_status"]) == (
        "Meeting Booked", "chosen", "voicemail")


def test_inferred_disposition_follows_the_merged_row(db, make_integration):
    """Notes arrive with the Disposition hit, the status with Call Completed: inference sees both."""
    location, _ = make_integration("internal")
    for order in ((0, 1), (1, 0)):
        call_id = unique("call")
        hits = [dict(external_call_id=call_id, location_id=location, call_status="completed", raw={"a": 1}),
                dict(external_call_id=call_id, location_id=location, notes="not interested, thanks", raw={"b": 1})]
        for i in order:
            upsert(db, **hits[i])
        got = row(db, "sales_calls", call_id)
        assert (got["disposition"], got["disposition_source"]) == ("Not Interested", "inferred")


def test_client_location_writes_calls_linked_to_that_clients_contact(db, make_integration):
    location, client_id = make_integration("client")
    other_location, other_client = make_integration("client")
    contact_id = unique("cnt")
    db.execute("INSERT INTO contacts (client_id, ghl_contact_id) VALUES (%s, %s)", (other_client, contact_id))
    mine = db.execute("INSERT INTO contacts (client_id, ghl_contact_id) VALUES (%s, %s) RETURNING id",
                      (client_id, contact_id)).fetchone()["id"]
    call_id = unique("call")
    result = upsert(db, external_call_id=call_id, location_id=location, ghl_contact_id=contact_id,
                    call_status="Busy", raw={})
    assert (result["outcome"], result["table"]) == ("inserted", "calls")
    got = row(db, "calls", call_id)
    assert (got["contact_id"], got["client_id"], got["disposition"]) == (mine, client_id, "No Answer")
    assert row(db, "sales_calls", call_id) is None


@pytest.mark.parametrize("match_by", ["contact id", "phone", "email"])
def test_internal_location_matches_prospect(db, make_integration, match_by):
    location, _ = make_integration("internal")
    contact_id, email = unique("cnt"), f"{unique('p')}@Example.com"
    digits = str(2000000000 + int(unique("")[1:9], 16) % 7999999999)
    prospect = db.execute(
        "INSERT INTO sales_prospects (first_name, phone, email, ghl_contact_id) VALUES ('P', %s, %s, %s) RETURNING id",
        (f"({digits[:3]}) {digits[3:6]}-{digits[6:]}", email, contact_id if match_by == "contact id" else None),
    ).fetchone()["id"]
    hit = dict(external_call_id=unique("call"), location_id=location, raw={})
    if match_by == "contact id":
        hit["ghl_contact_id"] = contact_id
    elif match_by == "phone":
        hit.update(direction="outbound", to_number=f"+1{digits}", ghl_contact_id=unique("cnt"))
    else:
        hit.update(contact_email=email.upper(), ghl_contact_id=unique("cnt"))
    upsert(db, **hit)
    assert row(db, "sales_calls", hit["external_call_id"])["prospect_id"] == prospect


def test_unmatched_call_is_stored_and_linked_when_a_later_hit_matches(db, make_integration):
    location, _ = make_integration("internal")
    call_id, contact_id = unique("call"), unique("cnt")
    upsert(db, external_call_id=call_id, location_id=location, call_status="Answered", raw={"a": 1})
    assert row(db, "sales_calls", call_id)["prospect_id"] is None
    prospect = db.execute("INSERT INTO sales_prospects (ghl_contact_id) VALUES (%s) RETURNING id",
                          (contact_id,)).fetchone()["id"]
    assert upsert(db, external_call_id=call_id, location_id=location, ghl_contact_id=contact_id,
                  raw={"b": 1})["outcome"] == "updated"
    assert row(db, "sales_calls", call_id)["prospect_id"] == prospect


@pytest.mark.parametrize("active", [None, False])
def test_unknown_or_inactive_location(db, make_integration, active):
    location = make_integration("internal", active=False)[0] if active is False else unique("nowhere")
    assert upsert(db, external_call_id=unique("call"), location_id=location, raw={}) == {
        "outcome": "unknown_location"}


def test_a_hit_without_location_joins_its_calls_row(db, make_integration):
    location, _ = make_integration("internal")
    call_id = unique("call")
    upsert(db, **completed_hit(call_id, location))
    assert upsert(db, external_call_id=call_id, disposition="Do not contact", raw={"d": 1})["outcome"] == "updated"
    assert row(db, "sales_calls", call_id)["disposition"] == "Do Not Contact"


def test_import_source_is_accepted_and_kept_apart_in_raw(db, make_integration):
    location, _ = make_integration("internal")
    call_id = unique("call")
    upsert(db, external_call_id=call_id, location_id=location, call_status="completed", raw={"id": 1},
           source="import")
    upsert(db, external_call_id=call_id, location_id=location, call_status="completed", raw={"id": 1})
    assert sorted(k.split(":")[0] for k in row(db, "sales_calls", call_id)["raw_payload"]["hits"]) == [
        "import", "webhook"]


def test_missing_call_id_is_an_error(db):
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        db.execute("SELECT upsert_call('{\"location_id\": \"x\"}'::jsonb)")


def test_simultaneous_hits_give_one_row(database_url, make_integration):
    location, _ = make_integration("internal")
    for _ in range(20):
        call_id = unique("call")
        hits = [CallRecord.build(**completed_hit(call_id, location)).to_sql_payload(),
                CallRecord.build(**disposition_hit(call_id, location)).to_sql_payload()]
        barrier = threading.Barrier(2)
        results = []

        def send(payload):
            with psycopg.connect(database_url, autocommit=True) as conn:
                barrier.wait()
                results.append(conn.execute("SELECT upsert_call(%s)", (Jsonb(payload),)).fetchone()[0]["outcome"])

        threads = [threading.Thread(target=send, args=(hit,)) for hit in hits]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results) == ["inserted", "updated"]
        with psycopg.connect(database_url) as conn:
            rows = conn.execute("SELECT call_status, disposition, duration_seconds FROM sales_calls "
                                "WHERE external_call_id = %s", (call_id,)).fetchall()
        assert rows == [("answered", "Callback Requested", 184)]
