"""The analysis worker in-process against the stack's database and Anthropic stand-in: the whole path from a
webhook-only call through enrichment to ai_summary, dispositions, skips, the location switch, 429 with retry-after,
invalid answers, batches collected across runs, a wrong key."""

from __future__ import annotations

import time
from datetime import datetime

import pytest

from shared import errors
from shared.domain.call_analysis import PROMPT_VERSION, CallAnalysis, custom_id
from shared.services.analyze_calls import run_analyze
from tests.analysis.conftest import (
    CALLBACK, MEETING, TEN_WORDS, analysis_settings, messages_for, row, sent_count, upsert, variant,
)

SENTENCES = [
    {"mediaChannel": 1, "sentenceIndex": 1, "startTime": 0, "endTime": 3000, "confidence": 0.9,
     "transcript": "Hello, this is Sam from Acme calling about the phone system quote you asked for last week."},
    {"mediaChannel": 2, "sentenceIndex": 2, "startTime": 3100, "endTime": 6000, "confidence": 0.9,
     "transcript": "Oh right, I'm driving at the moment and can't look at anything properly right now."},
    {"mediaChannel": 1, "sentenceIndex": 3, "startTime": 6100, "endTime": 8000, "confidence": 0.9,
     "transcript": "No problem at all, when would be a better time for a quick call about it?"},
    {"mediaChannel": 2, "sentenceIndex": 4, "startTime": 8100, "endTime": 9900, "confidence": 0.9,
     "transcript": "Call me back on Tuesday after three, I'll be at my desk then with the numbers."},
]


def test_a_webhook_only_call_enriched_then_analysed_once(stack, db, database, standin, ghl_sandbox,
                                                         media_location, recordings):
    from shared.services.enrich_calls import run_enrich
    from tests.enrichment.conftest import add_ghl_call, call_row, completed_hit, enrich_settings, send_webhook

    location = media_location()
    db.execute("UPDATE ghl_integrations SET time_zone = 'America/New_York' WHERE location_id = %s", (location.id,))
    call_id = add_ghl_call(ghl_sandbox, location, sentences=SENTENCES)
    send_webhook(stack, completed_hit(call_id, location.id, callStartTime="2026-12-04T20:04:05Z"))
    assert call_row(db, call_id)["analysis_status"] is None  # no transcript yet: nothing to analyse
    run_enrich(database, enrich_settings(stack), recordings=recordings, location_id=location.id)
    enriched = call_row(db, call_id)
    assert enriched["analysis_status"] == "pending" and enriched["transcript"].startswith("Agent: Hello")

    [summary] = run_analyze(database, analysis_settings(stack), location_id=location.id)
    assert (summary.claimed, summary.done, summary.failed, summary.status) == (1, 1, 0, "success")
    after = call_row(db, call_id)
    analysis = CallAnalysis.model_validate(after["ai_summary"])  # stored as validated
    assert analysis.disposition == "Callback Requested" and 3 <= len(analysis.key_points) <= 5
    assert analysis.callback_at == datetime.fromisoformat("2026-12-08T15:00:00-05:00")  # Tuesday after three, NY
    assert after["analysis_status"] == "done" and after["analysis_prompt_version"] == PROMPT_VERSION
    assert after["analysis_model"] == "claude-sonnet-4-5-20250929" and after["analysed_at"] is not None
    assert after["analysis_input_tokens"] > 0 and after["analysis_output_tokens"] > 0
    assert (after["disposition"], after["disposition_source"]) == ("Callback Requested", "ai")
    [entries] = messages_for(standin, [after["transcript"]]).values()
    assert [e["status"] for e in entries] == [200]  # exactly one request
    assert entries[0]["input_tokens"] == after["analysis_input_tokens"]
    # a second run has nothing to do: one analysis per call and prompt version
    [again] = run_analyze(database, analysis_settings(stack), location_id=location.id)
    assert again.claimed == 0 and sent_count(standin, after["transcript"]) == 1


@pytest.mark.parametrize("kind, table", [("internal", "sales_calls"), ("client", "calls")])
def test_chosen_disposition_untouched_inferred_replaced_skips_sent_nothing(stack, db, database, standin, location, kind,
                                                                          table):
    loc = location(kind)
    inferred = upsert(db, loc, transcript=variant(MEETING))
    chosen = upsert(db, loc, transcript=variant(MEETING), disposition="Future Potential", disposition_source="chosen")
    voicemail = upsert(db, loc, transcript=variant(CALLBACK), call_status="voicemail")
    short = upsert(db, loc, transcript=TEN_WORDS)
    assert inferred["disposition_source"] == "inferred" and inferred["disposition"] == "Not Interested"

    [summary] = run_analyze(database, analysis_settings(stack), location_id=loc)
    assert (summary.done, summary.claimed) == (2, 2)
    got = row(db, inferred, table)
    assert (got["disposition"], got["disposition_source"], got["analysis_regex_disposition"]) == (
        "Meeting Booked", "ai", "Not Interested")
    kept = row(db, chosen, table)
    assert (kept["disposition"], kept["disposition_source"]) == ("Future Potential", "chosen")
    assert kept["ai_summary"]["disposition"] == "Meeting Booked"  # the analysis is stored, the choice stays
    assert (row(db, voicemail, table)["analysis_status"], row(db, voicemail, table)["analysis_reason"]) == (
        "skipped", "voicemail")
    assert (row(db, short, table)["analysis_status"], row(db, short, table)["analysis_reason"]) == (
        "skipped", "fewer than 40 words (10)")
    sent = messages_for(standin, [inferred["transcript"], chosen["transcript"], voicemail["transcript"],
                                  short["transcript"]])
    assert [len(v) for v in sent.values()] == [1, 1, 0, 0]


def test_a_switched_off_location_never_sends_a_transcript(stack, db, database, standin, location):
    loc = location()
    before = upsert(db, loc, transcript=variant(MEETING))  # marked while on
    db.execute("UPDATE ghl_integrations SET call_analysis_enabled = false WHERE location_id = %s", (loc,))
    after = upsert(db, loc, transcript=variant(CALLBACK))  # arrives while off
    assert (after["analysis_status"], after["analysis_reason"]) == ("skipped", "analysis off for the location")
    with pytest.raises(errors.UnknownLocation):
        run_analyze(database, analysis_settings(stack), location_id=loc)
    run_analyze(database, analysis_settings(stack))  # every location: this one is not among them
    sent = messages_for(standin, [before["transcript"], after["transcript"]])
    assert [len(v) for v in sent.values()] == [0, 0]
    assert row(db, before)["analysis_status"] == "pending" and row(db, before)["ai_summary"] is None


def test_429_retry_after_is_honoured_for_every_request(stack, db, database, standin, location):
    loc = location()
    calls = [upsert(db, loc, transcript=variant(MEETING)) for _ in range(3)]
    standin.inject("429", count=1, retry_after=3)
    began = time.monotonic()
    [summary] = run_analyze(database, analysis_settings(stack, analysis_max_in_flight=3),
                            location_id=loc)
    assert summary.done == 3 and time.monotonic() - began >= 3.0
    log = [e for entries in messages_for(standin, [c["transcript"] for c in calls]).values() for e in entries]
    [limited] = [e for e in log if e["status"] == 429]
    answered = [e for e in log if e["status"] == 200]
    assert len(answered) == 3
    # the log's times are to the second: 3 s later shows as at least 2 s later
    assert all(_at(e) - _at(limited) >= 2 for e in answered)
    assert all(row(db, c)["analysis_status"] == "done" for c in calls)


def _at(entry: dict) -> float:
    return datetime.fromisoformat(entry["time"].replace("Z", "+00:00")).timestamp()


def test_an_invalid_answer_gets_one_more_request_then_fails(stack, db, database, standin, location):
    loc = location()
    once = upsert(db, loc, transcript=variant(MEETING))
    standin.inject("invalid", count=1)
    [summary] = run_analyze(database, analysis_settings(stack, analysis_max_in_flight=1), location_id=loc)
    assert summary.done == 1 and row(db, once)["analysis_status"] == "done"
    twice = upsert(db, loc, transcript=variant(CALLBACK))
    standin.inject("invalid", count=1)
    standin.inject("refusal", count=1)
    [summary] = run_analyze(database, analysis_settings(stack, analysis_max_in_flight=1), location_id=loc)
    assert summary.failed == 1
    failed = row(db, twice)
    assert failed["analysis_status"] == "failed" and failed["analysis_reason"].startswith("invalid answer twice")
    assert "refused" in failed["analysis_reason"] and failed["ai_summary"] is None
    assert failed["analysis_input_tokens"] > 0  # what the two requests cost is kept
    sent = messages_for(standin, [once["transcript"], twice["transcript"]])
    assert [len(v) for v in sent.values()] == [2, 2]
    # failed stays failed: no third request on later runs
    run_analyze(database, analysis_settings(stack), location_id=loc)
    assert sent_count(standin, twice["transcript"]) == 2


def test_a_batch_is_collected_across_runs_and_an_expired_request_returns_to_pending(stack, db, database, standin, location):
    loc = location()
    calls = [upsert(db, loc, transcript=variant(MEETING if i % 2 else CALLBACK)) for i in range(5)]
    settings = analysis_settings(stack, analysis_batch_threshold=3)
    standin.set_batch_delay(3600)
    [first] = run_analyze(database, settings, location_id=loc)
    assert (first.batches_submitted, first.batched_calls, first.done) == (1, 5, 0)
    batch_ids = {row(db, c)["analysis_batch_id"] for c in calls}
    assert len(batch_ids) == 1 and None not in batch_ids
    [batch_id] = batch_ids
    [second] = run_analyze(database, settings, location_id=loc)  # still in progress: nothing sent again
    assert (second.batches_waiting, second.batches_submitted, second.claimed) == (1, 0, 0)
    expired = calls[0]
    standin.set_batch_outcome(custom_id("sales_calls", str(expired["id"])), "expired")
    standin.end_batch(batch_id)
    [third] = run_analyze(database, settings, location_id=loc)
    # the batch's 4 answers are written; the expired call went back to pending and, now due and below the
    # threshold, was analysed live in the same run
    assert (third.batches_collected, third.done) == (1, 5)
    for call in calls[1:]:
        got = row(db, call)
        assert got["analysis_status"] == "done" and got["analysis_batched"] is True
        CallAnalysis.model_validate(got["ai_summary"])
    back = row(db, expired)
    assert back["analysis_status"] == "done" and back["analysis_batched"] is False
    assert back["analysis_batch_id"] is None and back["analysis_attempts"] == 1
    batches = [e for e in standin.requests() if e.get("path") == "/v1/messages/batches" and e.get("method") == "POST"]
    mine = [b for b in batches if set(b.get("custom_ids") or []) & {custom_id("sales_calls", str(c["id"]))
                                                                     for c in calls}]
    assert len(mine) == 1  # one batch, never submitted again
    live = messages_for(standin, [c["transcript"] for c in calls])
    assert [len(v) for v in live.values()] == [1, 0, 0, 0, 0]  # only the expired one went live


def test_a_wrong_key_stops_the_run_and_is_never_echoed(stack, db, database, standin, location):
    loc = location()
    call = upsert(db, loc, transcript=variant(MEETING))
    wrong = "sk-ant-wrong-" + "x" * 24
    [summary] = run_analyze(database, analysis_settings(stack, anthropic_api_key=wrong), location_id=loc)
    assert summary.status == "failed" and "ANTHROPIC_API_KEY" in summary.error and wrong not in summary.error
    got = row(db, call)
    assert got["analysis_status"] == "pending" and got["analysis_attempts"] == 0 and got["analysis_claim_id"] is None
    statuses = [e["status"] for e in standin.requests() if e.get("path") == "/v1/messages"]
    assert statuses == [401]
