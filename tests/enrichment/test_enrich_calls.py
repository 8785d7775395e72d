"""Call enrichment end to end: the real webhook, the real stack (PostgREST, SQL functions, moto S3), the GHL
sandbox over HTTP with the real GhlClient. Every location made ends with zero contract violations."""

from __future__ import annotations

import threading
import time

import pytest

from shared.adapters.enrich_repository import EnrichRepository
from shared.adapters.supabase_db import create_service_client
from shared.services.enrich_calls import run_enrich
from tests.enrichment.conftest import (
    AUDIO_BYTES, EXPECTED_TEXT, add_ghl_call, call_row, completed_hit, enrich_settings, media_requests, new_call_id,
    send_webhook,
)


@pytest.fixture(scope="module")
def database(stack):
    return create_service_client(stack["supabase_url"], stack["service_role_key"])


def enrich(database, settings, recordings, location_id, **kwargs):
    [summary] = run_enrich(database, settings, recordings=recordings, location_id=location_id, **kwargs)
    return summary


def make_due_now(db, call_id: str, table: str = "sales_calls") -> None:
    """As if the backoff had passed."""
    db.execute(f"UPDATE {table} SET enrichment_next_attempt_at = now() WHERE external_call_id = %s", (call_id,))


def test_a_webhook_only_call_is_enriched(stack, db, database, settings, recordings, ghl_sandbox, media_location):
    location = media_location()
    call_id = add_ghl_call(ghl_sandbox, location)
    send_webhook(stack, completed_hit(call_id, location.id))
    row = call_row(db, call_id)
    assert row["enrichment_status"] == "pending" and row["transcript"] is None and row["recording_path"] is None
    status = EnrichRepository(database).summary(location.id)
    assert (status["pending"], status["due_now"], status["claimed"], status["done"]) == (1, 1, 0, 0)

    summary = enrich(database, settings, recordings, location.id)

    row = call_row(db, call_id)
    assert row["transcript"] == EXPECTED_TEXT
    assert [s["sentenceIndex"] for s in row["transcript_sentences"]] == [2, 1]  # as GHL sent them
    assert row["recording_path"] == f"{location.id}/{call_id}.wav"
    stored = recordings.get_bytes(row["recording_path"])
    assert len(stored) == AUDIO_BYTES and stored == ghl_sandbox.recording(location.id, call_id)
    assert recordings.head(row["recording_path"])["ContentType"] == "audio/x-wav"
    assert row["enrichment_status"] == "done" and row["enriched_at"] is not None
    assert row["enrichment_claim_id"] is None and row["enrichment_last_error"] is None
    assert (summary.claimed, summary.done, summary.transcripts, summary.recordings, summary.status) == (
        1, 1, 1, 1, "success")
    assert media_requests(ghl_sandbox, location.id) == {"transcription": 1, "recording": 1}  # 2 per call
    assert EnrichRepository(database).summary(location.id)["done"] == 1

    # Nothing left: another run asks GHL nothing.
    assert enrich(database, settings, recordings, location.id).claimed == 0
    assert media_requests(ghl_sandbox, location.id) == {"transcription": 1, "recording": 1}


def test_an_inferred_disposition_follows_the_transcript_and_a_chosen_one_never_changes(
        stack, db, database, settings, recordings, ghl_sandbox, media_location):
    location = media_location()
    inferred, chosen = add_ghl_call(ghl_sandbox, location), add_ghl_call(ghl_sandbox, location)
    send_webhook(stack, completed_hit(inferred, location.id))
    send_webhook(stack, completed_hit(chosen, location.id, disposition="Meeting Booked"))
    assert call_row(db, inferred)["disposition"] is None
    assert (call_row(db, chosen)["disposition"], call_row(db, chosen)["disposition_source"]) == (
        "Meeting Booked", "chosen")

    enrich(database, settings, recordings, location.id)

    row = call_row(db, inferred)  # "call me back next week?"
    assert (row["disposition"], row["disposition_source"]) == ("Callback Requested", "inferred")
    row = call_row(db, chosen)
    assert row["transcript"] == EXPECTED_TEXT
    assert (row["disposition"], row["disposition_source"]) == ("Meeting Booked", "chosen")


def test_a_transcript_not_ready_for_two_runs_arrives_on_the_third(
        stack, db, database, settings, recordings, ghl_sandbox, media_location):
    location = media_location()
    ghl_sandbox.set_media(location.id, transcript_ready_after_requests=2)
    call_id = add_ghl_call(ghl_sandbox, location)
    send_webhook(stack, completed_hit(call_id, location.id))

    first = enrich(database, settings, recordings, location.id)
    row = call_row(db, call_id)
    assert first.not_ready == 1 and row["enrichment_status"] == "pending" and row["transcript"] is None
    assert row["recording_path"] is not None  # what was ready is kept
    assert "transcript" in row["enrichment_last_error"] and row["enrichment_attempts"] == 1
    wait = (row["enrichment_next_attempt_at"] - row["updated_at"]).total_seconds()
    assert 55 <= wait <= 65  # 1 minute
    assert enrich(database, settings, recordings, location.id).claimed == 0  # not due yet

    make_due_now(db, call_id)
    enrich(database, settings, recordings, location.id)
    row = call_row(db, call_id)
    assert row["enrichment_status"] == "pending" and row["enrichment_attempts"] == 2
    assert 115 <= (row["enrichment_next_attempt_at"] - row["updated_at"]).total_seconds() <= 125  # doubled

    make_due_now(db, call_id)
    third = enrich(database, settings, recordings, location.id)
    row = call_row(db, call_id)
    assert third.done == 1 and row["enrichment_status"] == "done" and row["transcript"] == EXPECTED_TEXT
    assert row["enrichment_last_error"] is None
    # The recording was fetched once; only the transcript was asked for again.
    assert media_requests(ghl_sandbox, location.id) == {"transcription": 3, "recording": 1}


def test_a_call_past_the_horizon_becomes_unavailable_with_the_reason(
        stack, db, database, settings, recordings, ghl_sandbox, media_location):
    location = media_location()
    ghl_sandbox.set_media(location.id, transcript_ready_after_requests=1000, recording_ready_after_requests=1000)
    call_id = add_ghl_call(ghl_sandbox, location)
    send_webhook(stack, completed_hit(call_id, location.id))
    enrich(database, settings, recordings, location.id)
    assert call_row(db, call_id)["enrichment_status"] == "pending"

    db.execute("UPDATE sales_calls SET enrichment_requested_at = now() - interval '25 hours',"
               " enrichment_next_attempt_at = now() WHERE external_call_id = %s", (call_id,))
    enrich(database, settings, recordings, location.id)
    row = call_row(db, call_id)
    assert row["enrichment_status"] == "unavailable" and row["enrichment_next_attempt_at"] is None
    assert "transcript: GHL has none yet" in row["enrichment_last_error"]
    assert "recording: GHL has none yet" in row["enrichment_last_error"]
    summary = EnrichRepository(database).summary(location.id)
    assert (summary["pending"], summary["unavailable"], summary["done"]) == (0, 1, 0)
    before = media_requests(ghl_sandbox, location.id)
    assert enrich(database, settings, recordings, location.id).claimed == 0
    assert media_requests(ghl_sandbox, location.id) == before


def test_two_workers_at_once_fetch_each_call_once(stack, db, database, recordings, ghl_sandbox, media_location):
    location = media_location(latency_ms=50)
    calls = [add_ghl_call(ghl_sandbox, location) for _ in range(24)]
    for call_id in calls:
        send_webhook(stack, completed_hit(call_id, location.id))
    settings = enrich_settings(stack, ghl_max_in_flight=3)
    summaries = []
    threads = [threading.Thread(target=lambda: summaries.append(enrich(database, settings, recordings, location.id)))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sum(s.claimed for s in summaries) == 24 and all(s.lost_claims == 0 for s in summaries)
    assert all(s.claimed > 0 for s in summaries)  # both took part
    assert media_requests(ghl_sandbox, location.id) == {"transcription": 24, "recording": 24}
    rows = db.execute("SELECT enrichment_status, recording_path FROM sales_calls WHERE ghl_location_id = %s",
                      (location.id,)).fetchall()
    assert {r["enrichment_status"] for r in rows} == {"done"} and len({r["recording_path"] for r in rows}) == 24


def test_a_hit_carrying_the_transcript_clears_the_need(stack, db, database, settings, recordings, ghl_sandbox,
                                                       media_location):
    location = media_location()
    only_transcript = add_ghl_call(ghl_sandbox, location)
    send_webhook(stack, completed_hit(only_transcript, location.id, duration=None))
    assert call_row(db, only_transcript)["enrichment_status"] == "pending"
    send_webhook(stack, {"callId": only_transcript, "locationId": location.id, "source": "disposition_workflow",
                         "transcription": "Agent: Hello. Contact: Not interested, thanks."})
    row = call_row(db, only_transcript)
    assert row["enrichment_status"] is None and row["transcript"].startswith("Agent: Hello.")

    both = add_ghl_call(ghl_sandbox, location)
    send_webhook(stack, completed_hit(both, location.id))
    send_webhook(stack, {"callId": both, "locationId": location.id, "transcription": "Agent: Hi."})
    assert call_row(db, both)["enrichment_status"] == "pending"  # the recording is still missing
    enrich(database, settings, recordings, location.id)
    row = call_row(db, both)
    assert row["enrichment_status"] == "done" and row["transcript"] == "Agent: Hi." and row["recording_path"]
    assert media_requests(ghl_sandbox, location.id) == {"recording": 1}  # no transcript asked for


def test_client_location_calls_and_recordings_off(stack, db, database, recordings, ghl_sandbox, media_location):
    location = media_location(kind="client")
    call_id = add_ghl_call(ghl_sandbox, location)
    send_webhook(stack, completed_hit(call_id, location.id))
    assert call_row(db, call_id, "calls")["enrichment_status"] == "pending"
    summary = enrich(database, enrich_settings(stack, recordings_enabled=False), None, location.id)
    row = call_row(db, call_id, "calls")
    assert summary.done == 1 and row["enrichment_status"] == "done" and row["transcript"] == EXPECTED_TEXT
    assert row["recording_path"] is None
    assert media_requests(ghl_sandbox, location.id) == {"transcription": 1}
    # A later hit of the same call does not bring the recording need back.
    send_webhook(stack, {"callId": call_id, "locationId": location.id, "notes": "left a note"})
    assert call_row(db, call_id, "calls")["enrichment_status"] == "done"


def test_a_refused_token_stops_the_location_and_releases_its_calls(stack, db, database, settings, recordings,
                                                                    ghl_sandbox, media_location, caplog):
    location = media_location()
    call_id = add_ghl_call(ghl_sandbox, location)
    send_webhook(stack, completed_hit(call_id, location.id))
    bad_token = "sandbox-revoked-" + new_call_id()
    db.execute("UPDATE ghl_integrations SET api_token = %s WHERE location_id = %s", (bad_token, location.id))
    summary = enrich(database, settings, recordings, location.id)
    assert summary.status == "failed" and "token" in summary.error and summary.released == 1
    row = call_row(db, call_id)
    assert row["enrichment_status"] == "pending" and row["enrichment_attempts"] == 0
    assert row["enrichment_claim_id"] is None  # claimable again at once
    assert bad_token not in caplog.text and bad_token not in str(summary.to_dict())


def test_the_sandbox_serves_not_ready_answers_within_the_contract(ghl_sandbox, media_location):
    """Not ready = an empty sentence list / a 422 (both valid against GHL's files); then the real media."""
    import asyncio

    from shared.adapters.ghl_client import GhlClient

    location = media_location()
    ghl_sandbox.set_media(location.id, transcript_delay_seconds=0.3, recording_ready_after_requests=1,
                          recording_bytes=3000)
    call_id = add_ghl_call(ghl_sandbox, location)

    async def fetch():
        async with GhlClient(location_id=location.id, token=location.token, base_url=location.base_url) as ghl:
            early = await ghl.get_call_transcription(call_id)
            async with ghl.stream_call_recording(call_id) as first:
                assert first is None
            await asyncio.sleep(0.35)
            late = await ghl.get_call_transcription(call_id)
            async with ghl.stream_call_recording(call_id) as audio:
                data = b"".join([chunk async for chunk in audio.chunks])
                return early, late, audio.content_type, audio.content_length, data

    early, late, content_type, length, data = asyncio.run(fetch())
    assert early == [] and len(late) == 2
    assert content_type == "audio/x-wav" and length == 3000 and data == ghl_sandbox.recording(location.id, call_id)


def test_a_refused_transcript_does_not_hold_up_the_recording(stack, db, database, settings, recordings, ghl_sandbox,
                                                             media_location):
    """GHL refuses the transcript (400: it does not know the message yet) and has no audio (422): each part is
    tried and reported on its own, and the call waits for the next attempt."""
    location = media_location()
    call_id = new_call_id()  # a call GHL's API does not know (yet)
    send_webhook(stack, completed_hit(call_id, location.id))
    summary = enrich(database, settings, recordings, location.id)
    row = call_row(db, call_id)
    assert summary.not_ready == 1 and summary.status == "success" and row["enrichment_status"] == "pending"
    assert row["enrichment_last_error"].startswith("transcript: GHL answered 400")
    assert "; recording: GHL has none yet (422)" in row["enrichment_last_error"]


def test_a_transcript_the_database_cannot_hold_as_sent_is_stored_cleaned(stack, db, database, settings, recordings,
                                                                         ghl_sandbox, media_location):
    """GHL's text with NULs (neither text nor jsonb can hold one) and a 100 KB sentence: the call is enriched with
    the NULs removed, not written over and over as a failing batch (lone surrogates: the pure test)."""
    location = media_location()
    long_text = "word " * 20_000
    hostile = [{"mediaChannel": 1, "sentenceIndex": 1, "startTime": 0, "endTime": 900, "transcript": "Hel\x00lo",
                "confidence": 0.9},
               {"mediaChannel": 2, "sentenceIndex": 2, "startTime": 1000, "endTime": 2000, "transcript": "a\x00b",
                "confidence": 0.9},
               {"mediaChannel": 2, "sentenceIndex": 3, "startTime": 3000, "endTime": 4000, "transcript": long_text,
                "confidence": 0.9}]
    call_id = add_ghl_call(ghl_sandbox, location, sentences=hostile)
    send_webhook(stack, completed_hit(call_id, location.id))

    summary = enrich(database, settings, recordings, location.id)

    row = call_row(db, call_id)
    assert (row["enrichment_status"], summary.done, summary.status) == ("done", 1, "success"), summary
    assert row["transcript"] == f"Agent: Hello\nContact: ab\nContact: {long_text.strip()}"
    assert [s["transcript"] for s in row["transcript_sentences"]][:2] == ["Hello", "ab"]
