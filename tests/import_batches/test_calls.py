"""Calls: imported through the webhook's merge (upsert_call), linked to the match, one row per call whichever
path saw it first; TYPE_CALL only; a malformed call record is an error that does not stop the batch."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import TEST_WEBHOOK_SECRET
from tests.import_batches.conftest import (
    assert_counters_true, call_record, contact_record, insert_contact, insert_prospect, pull, staged,
    unique_phone,
)


def post_webhook(stack, body: dict) -> dict:
    response = httpx.post(stack["functions"]["ghl-call-webhook"], json=body,
                          headers={"X-Webhook-Secret": TEST_WEBHOOK_SECRET}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("webhook_first", [True, False], ids=["webhook-then-import", "import-then-webhook"])
def test_a_call_seen_by_webhook_and_import_is_one_row(webhook_first, stack, import_location, ghl_sandbox, db, repo,
                                                      ghl_factory, settings):
    location, _ = import_location("internal")
    contact = contact_record(phone=unique_phone())
    prospect = insert_prospect(db, phone=contact["phone"])
    call = call_record(contact_id=contact["id"], status="completed", duration=95)
    ghl_sandbox.seed(location.id, contact_records=[contact], call_records=[call])
    webhook = {"callId": call["id"], "locationId": location.id, "contactId": contact["id"],
               "callStatus": "Answered", "disposition": "Meeting Booked", "notes": "booked for Tuesday",
               "direction": "outbound", "to": contact["phone"]}

    if webhook_first:
        post_webhook(stack, webhook)
    run = pull(repo, ghl_factory, settings, location.id)
    if not webhook_first:
        post_webhook(stack, webhook)

    rows = db.execute("SELECT * FROM sales_calls WHERE external_call_id = %s", (call["id"],)).fetchall()
    assert len(rows) == 1
    row = rows[0]
    assert str(row["prospect_id"]) == prospect
    assert (row["disposition"], row["disposition_source"]) == ("Meeting Booked", "chosen")
    assert row["duration_seconds"] == 95 and row["notes"] == "booked for Tuesday"
    assert sorted(key.split(":")[0] for key in row["raw_payload"]["hits"]) == ["import", "webhook"]
    staged_call = staged(db, run.batch["id"])[call["id"]]
    assert staged_call["status"] == "imported" and str(staged_call["matched_prospect_id"]) == prospect
    assert run.batch["status"] == "completed"
    assert_counters_true(db, run.batch["id"])


def test_calls_link_through_the_staged_contact_and_voicemail_drops_are_left_out(import_location, ghl_sandbox, db,
                                                                                repo, ghl_factory, settings):
    location, client_id = import_location("client")
    contact = contact_record(phone=unique_phone())
    portal_contact = insert_contact(db, client_id, phone=contact["phone"])  # no GHL id yet: phone matches
    answered = call_record(contact_id=contact["id"], status="answered", duration=30)
    unknown_contact = call_record(status="no-answer", duration=None)
    drop = call_record(contact_id=contact["id"], messageType="TYPE_CAMPAIGN_VOICEMAIL", type=33)
    ghl_sandbox.seed(location.id, contact_records=[contact], call_records=[answered, unknown_contact, drop])

    run = pull(repo, ghl_factory, settings, location.id)

    rows = staged(db, run.batch["id"])
    assert drop["id"] not in rows
    # calls are processed after the batch's contacts: the contact (matched by phone) gave the portal contact
    # its GHL id, and the call links to it by that id
    assert rows[answered["id"]]["match_rule"] == "ghl_contact_id"
    assert str(rows[answered["id"]]["matched_contact_id"]) == portal_contact
    assert rows[unknown_contact["id"]]["status"] == "imported"  # a call is kept even when nobody matches
    calls = {r["external_call_id"]: r for r in db.execute(
        "SELECT * FROM calls WHERE external_call_id = ANY(%s)", ([answered["id"], unknown_contact["id"]],))}
    assert str(calls[answered["id"]]["contact_id"]) == portal_contact
    assert str(calls[answered["id"]]["client_id"]) == str(client_id)
    assert calls[answered["id"]]["connected"] is True and calls[answered["id"]]["call_status"] == "answered"
    assert calls[unknown_contact["id"]]["contact_id"] is None
    assert calls[unknown_contact["id"]]["disposition"] == "No Answer"
    assert run.batch["status"] == "completed"
    counts = assert_counters_true(db, run.batch["id"])
    assert counts["total_records"] == 3 and counts["error_count"] == 0


def test_malformed_records_become_errors_and_the_batch_goes_on(import_location, ghl_sandbox, db, repo,
                                                              ghl_factory, settings):
    location, _ = import_location("internal")
    good = call_record(status="busy", duration=None)
    negative = call_record(duration=-5)  # fails the call model: staged with the reason, an error when processed
    ghl_sandbox.seed(location.id, call_records=[good, negative])
    run = pull(repo, ghl_factory, settings, location.id, kinds=["calls"], deadline=0)  # batch, nothing pulled
    batch_id = run.batch["id"]
    # records the pull itself could never produce, staged directly: each becomes an error naming its problem
    odd = [
        ("contacts", {"external_id": "not-an-object", "raw_data": ["a", "list"]}),
        ("contacts", {"raw_data": {"firstName": "No id"}}),
        ("calls", {"external_id": "bad-duration", "raw_data": {"id": "bad-duration"},
                   "call_payload": {"external_call_id": "bad-duration", "duration_seconds": "ten"}}),
        ("calls", {"external_id": "bad-date", "raw_data": {"id": "bad-date"},
                   "call_payload": {"external_call_id": "bad-date", "started_at": "yesterday-ish"}}),
        ("calls", {"external_id": "no-payload", "raw_data": {"id": "no-payload"}}),
    ]
    for kind, record in odd:
        db.execute("INSERT INTO ghl_import_staging (batch_id, record_kind, external_id, raw_data, call_payload) "
                   "VALUES (%s, %s, %s, %s, %s)",
                   (batch_id, kind[:-1], record.get("external_id"), __import__("json").dumps(record["raw_data"]),
                    __import__("json").dumps(record["call_payload"]) if "call_payload" in record else None))
    assert_counters_true(db, batch_id)

    from shared.services.import_batches import advance_batch
    from tests.import_batches.conftest import far_deadline

    run = advance_batch(repo, ghl_factory, settings, batch_id, deadline=far_deadline())

    rows = staged(db, batch_id)
    messages = {key: row["error_message"] for key, row in rows.items() if row["status"] == "error"}
    assert "not a JSON object (got array)" in messages["not-an-object"]
    assert messages[None] == "contact record has no id"
    assert "duration" in messages[negative["id"]] and negative["id"] in messages[negative["id"]]
    assert "call could not be imported" in messages["bad-duration"] and "ten" in messages["bad-duration"]
    assert "yesterday-ish" in messages["bad-date"]
    assert "no normalised form" in messages["no-payload"]
    assert rows[good["id"]]["status"] == "imported"
    assert db.execute("SELECT count(*) AS n FROM sales_calls WHERE external_call_id = %s",
                      (good["id"],)).fetchone()["n"] == 1
    assert run.batch["status"] == "completed"
    counts = assert_counters_true(db, batch_id)
    assert (counts["processed_records"], counts["error_count"]) == (7, 6)
