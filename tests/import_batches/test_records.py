"""Pure parts: the request body and GHL records turned into staging rows (no I/O), plus an empty location."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared import errors
from shared.domain.ghl_models import CallMessage, Contact
from shared.domain.import_records import (
    ProcessRequest, PullRequest, contact_filters, parse_import_request, staged_call, staged_contact,
)

EXPORT_PAGE = Path(__file__).resolve().parents[1] / "fixtures" / "ghl-api" / "messages-export-page.json"


def test_pull_request_defaults_and_order():
    request = parse_import_request({"action": "pull", "location_id": " loc1 ", "kinds": ["calls", "contacts"],
                                    "since": "2026-01-31T00:00:00Z"})
    assert isinstance(request, PullRequest)
    assert request.location_id == "loc1" and request.kinds == ("contacts", "calls")
    assert request.since.isoformat() == "2026-01-31T00:00:00+00:00"
    assert parse_import_request({"action": "pull", "location_id": "l"}).kinds == ("contacts", "calls")
    assert parse_import_request({"action": "process"}) == ProcessRequest(batch_id=None)


@pytest.mark.parametrize("body", [{"action": "pull", "location_id": ""}, {"action": "pull", "location_id": 5},
                                  {"action": "pull", "location_id": "l", "kinds": "contacts"},
                                  {"action": "process", "batch_id": "not-a-uuid"}])
def test_bad_requests(body):
    with pytest.raises(errors.BadRequest):
        parse_import_request(body)


def test_since_filters_contacts_by_update_time():
    request = parse_import_request({"action": "pull", "location_id": "l", "since": "2026-02-01T10:00:00"})
    assert contact_filters(request.since) == [
        {"field": "dateUpdated", "operator": "range", "value": {"gte": "2026-02-01T10:00:00.000Z"}}]
    assert contact_filters(None) is None


def test_calls_from_the_export_fixture_are_normalised_next_to_the_raw_record():
    page = json.loads(EXPORT_PAGE.read_text())
    messages = [CallMessage.from_api(item) for item in page["messages"]]
    calls = [staged_call(m) for m in messages if m.is_call]
    assert [c["external_id"] for c in calls] == ["msg_Ex01", "msg_Ex02"]
    first, second = calls
    assert first["raw_data"] == page["messages"][0]  # as received
    assert first["call_payload"]["duration_seconds"] == 184
    assert (first["call_payload"]["call_status"], first["call_payload"]["connected"]) == ("completed", True)
    assert first["call_payload"]["ghl_contact_id"] == "cnt_Xb81LmQ2" and first["call_payload"]["source"] == "import"
    assert "raw" not in first["call_payload"]  # staged once, in raw_data
    assert (second["call_payload"]["call_status"], second["call_payload"]["disposition"],
            second["call_payload"]["disposition_source"]) == ("no-answer", "No Answer", "inferred")


def test_a_call_the_model_rejects_is_staged_with_the_reason():
    message = CallMessage.from_api({"id": "m1", "messageType": "TYPE_CALL", "meta": {"call": {"duration": -3}}})
    row = staged_call(message)
    assert "call_payload" not in row
    assert "m1" in row["prepare_error"] and "duration_seconds" in row["prepare_error"]


def test_contact_rows_keep_the_record_as_received():
    record = {"id": "c1", "email": "A@B.com", "customFields": [{"id": "x", "value": "y"}]}
    assert staged_contact(Contact.from_api(record)) == {"external_id": "c1", "raw_data": record}


def test_an_empty_location_completes_with_zero_records(import_location, db, repo, ghl_factory, settings):
    from tests.import_batches.conftest import assert_counters_true, pull

    location, _ = import_location("internal")
    run = pull(repo, ghl_factory, settings, location.id)
    assert run.batch["status"] == "completed" and run.batch["total_records"] == 0
    assert assert_counters_true(db, run.batch["id"])["processed_records"] == 0
