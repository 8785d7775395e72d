"""Each location's own disposition names (ghl_integrations.disposition_mapping), applied by upsert_call."""

from __future__ import annotations

import json
import logging

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.types.json import Jsonb

from shared.domain.calls import (
    _DISPOSITIONS_BY_KEY, CANONICAL_DISPOSITIONS, CallRecord, _disposition_key, canonical_disposition,
)
from tests.conftest import unique
from tests.webhook.conftest import load_fixture, secret_headers, with_ids

pytestmark = pytest.mark.stack


def upsert(db, **fields) -> dict:
    payload = CallRecord.build(**fields).to_sql_payload()
    return db.execute("SELECT upsert_call(%s) AS r", (Jsonb(payload),)).fetchone()["r"]


def call_row(db, table: str, call_id: str) -> dict:
    return db.execute(f"SELECT * FROM {table} WHERE external_call_id = %s", (call_id,)).fetchone()


def set_mapping(db, location: str, mapping: dict) -> None:
    db.execute("UPDATE ghl_integrations SET disposition_mapping = %s WHERE location_id = %s",
               (Jsonb(mapping), location))


def answered(call_id, location, **extra):
    return dict(external_call_id=call_id, location_id=location, call_status="Answered", duration_seconds=60,
                raw={"hit": "completed"}, **extra)


def labelled(call_id, location, label, **extra):
    return dict(external_call_id=call_id, location_id=location, disposition=label, raw={"hit": label}, **extra)


@pytest.mark.parametrize("kind", ["internal", "client"])
def test_a_locations_own_label_is_mapped_and_kept(db, make_integration, kind):
    location, _ = make_integration(kind)
    set_mapping(db, location, {"Booked!": "Meeting Booked", "Interested": "Future Potential"})
    table = "sales_calls" if kind == "internal" else "calls"
    call_id = unique("call")
    upsert(db, **answered(call_id, location))
    upsert(db, **labelled(call_id, location, "Meeting booked!!"))  # built-in synonym, punctuation ignored
    got = call_row(db, table, call_id)
    assert (got["disposition"], got["disposition_source"], got["disposition_label"]) == (
        "Meeting Booked", "chosen", "Meeting booked!!")
    other = unique("call")
    upsert(db, **labelled(other, location, "  INTERESTED. "))
    got = call_row(db, table, other)
    assert (got["disposition"], got["disposition_source"], got["disposition_label"]) == (
        "Future Potential", "chosen", "INTERESTED.")


def test_the_mapping_is_per_location_and_beats_the_built_in_synonyms(db, make_integration):
    mine, _ = make_integration("internal")
    theirs, _ = make_integration("internal")
    set_mapping(db, mine, {"interested": "Future Potential", "busy": "Callback Requested"})
    ids = {name: unique("call") for name in ("mine", "theirs", "mine_busy", "theirs_busy")}
    upsert(db, **labelled(ids["mine"], mine, "Interested"))
    upsert(db, **labelled(ids["theirs"], theirs, "Interested"))
    upsert(db, **labelled(ids["mine_busy"], mine, "Busy"))
    upsert(db, **labelled(ids["theirs_busy"], theirs, "Busy"))
    view = {name: (r["disposition"], r["disposition_source"])
            for name, r in ((n, call_row(db, "sales_calls", i)) for n, i in ids.items())}
    assert view == {"mine": ("Future Potential", "chosen"), "theirs": (None, None),
                    "mine_busy": ("Callback Requested", "chosen"), "theirs_busy": ("No Answer", "chosen")}


def test_an_unmapped_label_is_kept_with_an_inferred_disposition(db, make_integration):
    location, _ = make_integration("internal")
    call_id = unique("call")
    upsert(db, **answered(call_id, location))
    upsert(db, **labelled(call_id, location, "Spoke to assistant", notes="the receptionist took a message"))
    got = call_row(db, "sales_calls", call_id)
    assert (got["disposition"], got["disposition_source"], got["disposition_label"]) == (
        "Gatekeeper", "inferred", "Spoke to assistant")
    # Unconnected and unknown: nothing to infer, the label is still kept (never a silent loss).
    lone = unique("call")
    upsert(db, **labelled(lone, location, "Zebra"))
    got = call_row(db, "sales_calls", lone)
    assert (got["disposition"], got["disposition_source"], got["disposition_label"]) == (None, None, "Zebra")


@pytest.mark.parametrize("chosen_first", [True, False])
def test_chosen_beats_inferred_and_keeps_its_label(db, make_integration, chosen_first):
    location, _ = make_integration("internal")
    set_mapping(db, location, {"Booked": "Meeting Booked"})
    call_id = unique("call")
    hits = [labelled(call_id, location, "booked"),
            answered(call_id, location, disposition="Some Unknown Name", notes="call back later")]
    if not chosen_first:
        hits.reverse()
    for hit in hits:
        upsert(db, **hit)
    got = call_row(db, "sales_calls", call_id)
    assert (got["disposition"], got["disposition_source"], got["disposition_label"]) == (
        "Meeting Booked", "chosen", "booked")


def test_a_later_mapped_label_replaces_an_unmapped_one(db, make_integration):
    location, _ = make_integration("internal")
    call_id = unique("call")
    upsert(db, **labelled(call_id, location, "Hmm"))
    assert call_row(db, "sales_calls", call_id)["disposition_label"] == "Hmm"
    set_mapping(db, location, {"hmm2": "Not Interested"})
    upsert(db, **labelled(call_id, location, "HMM 2"))
    got = call_row(db, "sales_calls", call_id)
    assert (got["disposition"], got["disposition_label"]) == ("Not Interested", "HMM 2")


def test_same_labelled_hit_twice_is_unchanged(db, make_integration):
    location, _ = make_integration("internal")
    set_mapping(db, location, {"Booked": "Meeting Booked"})
    call_id = unique("call")
    assert upsert(db, **labelled(call_id, location, "Booked"))["outcome"] == "inserted"
    assert upsert(db, **labelled(call_id, location, "Booked"))["outcome"] == "unchanged"


@pytest.mark.parametrize("mapping", [
    {"Interested": "interested"}, {"Interested": "meeting booked"}, {"x": 1}, {"!!": "No Answer"}, ["No Answer"],
])
def test_a_mapping_to_anything_but_a_canonical_disposition_is_refused(db, make_integration, mapping):
    location, _ = make_integration("internal")
    with pytest.raises(psycopg.errors.CheckViolation):
        set_mapping(db, location, mapping)


def test_existing_integrations_get_an_empty_mapping(db, make_integration):
    location, _ = make_integration("internal")
    assert db.execute("SELECT disposition_mapping FROM ghl_integrations WHERE location_id = %s",
                      (location,)).fetchone()["disposition_mapping"] == {}


def test_the_import_uses_the_mapping_too(db, make_integration):
    """process_import_chunk merges staged calls through upsert_call: the location's mapping applies."""
    location, _ = make_integration("internal")
    set_mapping(db, location, {"Hot lead": "Future Potential"})
    batch = db.execute("SELECT create_import_batch(%s, '{calls}', NULL, NULL) AS b", (location,)).fetchone()["b"]
    mapped, unmapped = unique("call"), unique("call")
    for call_id, label in ((mapped, "hot-lead"), (unmapped, "Lukewarm")):
        payload = CallRecord.build(external_call_id=call_id, location_id=location, call_status="completed",
                                   disposition=label, notes="said call back", source="import").to_sql_payload()
        payload.pop("raw")
        db.execute("INSERT INTO ghl_import_staging (batch_id, raw_data, record_kind, external_id, call_payload) "
                   "VALUES (%s, %s, 'call', %s, %s)", (batch["id"], Jsonb({"id": call_id}), call_id, Jsonb(payload)))
    result = db.execute("SELECT process_import_chunk(%s, 10, false) AS r", (batch["id"],)).fetchone()["r"]
    assert result["imported"] == 2, result
    got = {c: call_row(db, "sales_calls", c) for c in (mapped, unmapped)}
    assert (got[mapped]["disposition"], got[mapped]["disposition_source"], got[mapped]["disposition_label"]) == (
        "Future Potential", "chosen", "hot-lead")
    assert (got[unmapped]["disposition"], got[unmapped]["disposition_source"],
            got[unmapped]["disposition_label"]) == ("Callback Requested", "inferred", "Lukewarm")


# ---- the SQL and Python twins agree ----------------------------------------------------------------------------

def test_built_in_synonyms_agree(db):
    keys = sorted(_DISPOSITIONS_BY_KEY) + ["interested", "booked", ""]
    rows = db.execute("SELECT k, builtin_disposition(k) AS d FROM unnest(%s::text[]) AS k", (keys,)).fetchall()
    assert {r["k"]: r["d"] for r in rows} == {k: _DISPOSITIONS_BY_KEY.get(k) for k in keys}


LABEL_ALPHABET = list("aAbBnN oO_-!?.,'’&/()#\t") + ["é", "É", "ß", "1"]


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=st.sampled_from(LABEL_ALPHABET), max_size=20))
def test_label_keys_agree(db, label):
    sql = db.execute("SELECT disposition_label_key(%s) AS k", (label,)).fetchone()["k"]
    assert sql == (_disposition_key(label) or None)


@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(CANONICAL_DISPOSITIONS + tuple(_DISPOSITIONS_BY_KEY) + ("Meeting booked!!", "Hot lead")),
       st.sampled_from([str.upper, str.lower, str.title, lambda s: f" {s}!! ", lambda s: s.replace(" ", "_")]))
def test_without_a_mapping_sql_maps_labels_like_python(db, label, transform):
    text = transform(label)
    sql = db.execute("SELECT map_disposition_label(%s, '{}') AS d", (text,)).fetchone()["d"]
    assert sql == canonical_disposition(text)


# ---- through the function: still one round trip --------------------------------------------------------------

class _Captured(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


def test_a_mapped_label_through_the_webhook_is_one_round_trip(webhook_app, db, make_integration):
    location, _ = make_integration("internal")
    set_mapping(db, location, {"Call me next week": "Callback Requested"})
    handler, logger = _Captured(), logging.getLogger("ghl_bridge.ghl_call_webhook")
    previous_level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        call_id = unique("call")
        body = with_ids(load_fixture("disposition.json"), call_id, location)
        body.update(disposition="call me NEXT week!", notes="-", transcription="-")
        response = webhook_app.post("/", data=json.dumps(body), headers=secret_headers())
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)
    assert response.status_code == 200, response.json
    got = call_row(db, "sales_calls", call_id)
    assert (got["disposition"], got["disposition_source"], got["disposition_label"]) == (
        "Callback Requested", "chosen", "call me NEXT week!")
    summary = [r for r in handler.records if r.getMessage() == "webhook handled"][-1].fields
    assert summary["db_round_trips"] == 1
