"""The analysis SQL through plain SQL and upsert_call: marking with skip reasons, the location's switch and word
minimum, 'ai' beside 'chosen'/'inferred' in the merge and in enrichment's results, the claim, the write-back and
the requeue."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.conftest import unique

TWO_SPEAKERS = ("Agent: Hi, this is Sam from Acme, do you have a minute to talk about your phone system?\n"
                "Contact: Sure, I have a few minutes, we are actually looking at options for next year.\n"
                "Agent: Great, what matters most to you in a new system?\n"
                "Contact: Price and support, mostly. Call me back next week and we can go through it.")
TEN_WORDS = "Agent: hello there\nContact: not now thanks, maybe later okay"


def upsert(db, location_id: str, call_id: str | None = None, **fields) -> dict:
    call_id = call_id or unique("call")
    payload = {"external_call_id": call_id, "location_id": location_id, **fields}
    outcome = db.execute("SELECT upsert_call(%s::jsonb) AS r", (json.dumps(payload),)).fetchone()["r"]
    return db.execute(f"SELECT * FROM {outcome['table']} WHERE id = %s", (outcome["id"],)).fetchone()


@pytest.mark.parametrize("kind, table", [("internal", "sales_calls"), ("client", "calls")])
def test_a_conversation_is_marked_pending_and_the_rest_skipped_with_reasons(db, location, kind, table):
    loc = location(kind)
    row = upsert(db, loc, call_status="completed", transcript=TWO_SPEAKERS)
    assert row["analysis_status"] == "pending" and row["analysis_next_attempt_at"] is not None
    voicemail = upsert(db, loc, call_status="voicemail", transcript=TWO_SPEAKERS)
    assert (voicemail["analysis_status"], voicemail["analysis_reason"]) == ("skipped", "voicemail")
    short = upsert(db, loc, call_status="completed", transcript=TEN_WORDS)
    assert (short["analysis_status"], short["analysis_reason"]) == ("skipped", "fewer than 40 words (10)")
    one = upsert(db, loc, call_status="completed", transcript="\n".join(
        ["Agent: hello, you have reached the voicemail of the sales team, please leave a message"] * 6))
    assert (one["analysis_status"], one["analysis_reason"]) == ("skipped", "one speaker only")
    nothing = upsert(db, loc, call_status="completed")
    assert nothing["analysis_status"] is None


def test_speakers_from_ghl_sentences_and_a_later_transcript(db, location):
    loc = location()
    row = upsert(db, loc, call_status="completed")
    assert row["analysis_status"] is None
    sentences = [{"mediaChannel": 1, "transcript": "x"}, {"mediaChannel": 1, "transcript": "y"}]
    row = db.execute("UPDATE sales_calls SET transcript = %s, transcript_sentences = %s WHERE id = %s RETURNING *",
                     (" ".join(["word"] * 60), json.dumps(sentences), row["id"])).fetchone()
    assert (row["analysis_status"], row["analysis_reason"]) == ("skipped", "one speaker only")
    sentences.append({"mediaChannel": 2, "transcript": "z"})
    row = db.execute("UPDATE sales_calls SET transcript_sentences = %s WHERE id = %s RETURNING *",
                     (json.dumps(sentences), row["id"])).fetchone()
    assert row["analysis_status"] == "pending"


def test_the_location_switch_and_minimum_words(db, location):
    off = location(call_analysis_enabled=False)
    row = upsert(db, off, call_status="completed", transcript=TWO_SPEAKERS)
    assert (row["analysis_status"], row["analysis_reason"]) == ("skipped", "analysis off for the location")
    low = location(call_analysis_min_words=5)
    assert upsert(db, low, call_status="completed", transcript=TEN_WORDS)["analysis_status"] == "pending"


def test_a_switched_off_location_never_gets_a_call_claimed(db, location):
    loc = location()
    row = upsert(db, loc, call_status="completed", transcript=TWO_SPEAKERS)
    assert row["analysis_status"] == "pending"
    db.execute("UPDATE ghl_integrations SET call_analysis_enabled = false WHERE location_id = %s", (loc,))
    claimed = db.execute("SELECT * FROM claim_due_analyses(%s, %s, 60, 10)", (loc, str(uuid.uuid4()))).fetchall()
    assert claimed == []
    db.execute("UPDATE ghl_integrations SET call_analysis_enabled = true WHERE location_id = %s", (loc,))
    claimed = db.execute("SELECT * FROM claim_due_analyses(%s, %s, 60, 10)", (loc, str(uuid.uuid4()))).fetchall()
    assert [c["id"] for c in claimed] == [row["id"]] and claimed[0]["transcript"] == TWO_SPEAKERS


def _claim_and_write(db, location_id, results_for) -> list[dict]:
    claim_id = str(uuid.uuid4())
    rows = db.execute("SELECT * FROM claim_due_analyses(%s, %s, 60, 50)", (location_id, claim_id)).fetchall()
    results = [results_for(row) for row in rows]
    written = db.execute("SELECT record_call_analysis_results(%s, %s::jsonb) AS n",
                         (claim_id, json.dumps(results))).fetchone()["n"]
    assert written == len(results)
    return rows


def _done(row, disposition="Meeting Booked"):
    return {"id": str(row["id"]), "table": row["call_table"], "outcome": "done", "model": "m",
            "prompt_version": "call_analysis_v1", "input_tokens": 900, "output_tokens": 400,
            "summary": {"disposition": disposition, "summary": "s"}}


def test_the_ai_disposition_replaces_an_inferred_one_never_a_chosen_one_and_later_hits_keep_it(db, location):
    loc = location()
    inferred = upsert(db, loc, call_status="completed", transcript=TWO_SPEAKERS)
    assert (inferred["disposition"], inferred["disposition_source"]) == ("Callback Requested", "inferred")
    chosen = upsert(db, loc, call_status="completed", transcript=TWO_SPEAKERS, disposition="Not Interested",
                    disposition_source="chosen")
    _claim_and_write(db, loc, _done)
    after = db.execute("SELECT * FROM sales_calls WHERE id = %s", (inferred["id"],)).fetchone()
    assert (after["disposition"], after["disposition_source"]) == ("Meeting Booked", "ai")
    assert after["analysis_regex_disposition"] == "Callback Requested"
    assert after["analysis_status"] == "done" and after["ai_summary"]["disposition"] == "Meeting Booked"
    assert (after["analysis_input_tokens"], after["analysis_output_tokens"]) == (900, 400)
    kept = db.execute("SELECT * FROM sales_calls WHERE id = %s", (chosen["id"],)).fetchone()
    assert (kept["disposition"], kept["disposition_source"]) == ("Not Interested", "chosen")
    assert kept["ai_summary"]["disposition"] == "Meeting Booked"

    # a later webhook hit with notes the regex reads differently: the AI's disposition stays
    later = upsert(db, loc, after["external_call_id"], notes="not interested, wrong number")
    assert (later["disposition"], later["disposition_source"]) == ("Meeting Booked", "ai")
    # a person choosing one wins
    later = upsert(db, loc, after["external_call_id"], disposition="Do Not Contact", disposition_source="chosen")
    assert (later["disposition"], later["disposition_source"]) == ("Do Not Contact", "chosen")


def test_enrichment_results_keep_the_ai_disposition(db, location):
    loc = location()
    row = upsert(db, loc, call_status="completed", transcript=TWO_SPEAKERS, duration_seconds=60)
    assert row["enrichment_status"] == "pending"  # a recording to fetch
    _claim_and_write(db, loc, _done)
    claim_id = str(uuid.uuid4())
    db.execute("SELECT * FROM claim_due_calls(%s, %s, 60, 10)", (loc, claim_id))
    db.execute("SELECT record_call_enrichment_results(%s, %s::jsonb)", (claim_id, json.dumps([
        {"id": str(row["id"]), "table": "sales_calls", "outcome": "attempted", "recording_path": "x/y.wav"}])))
    after = db.execute("SELECT * FROM sales_calls WHERE id = %s", (row["id"],)).fetchone()
    assert after["recording_path"] == "x/y.wav"
    assert (after["disposition"], after["disposition_source"]) == ("Meeting Booked", "ai")


def test_failures_retries_and_lost_claims(db, location):
    loc = location()
    failed = upsert(db, loc, call_status="completed", transcript=TWO_SPEAKERS)
    retry = upsert(db, loc, call_status="completed", transcript=TWO_SPEAKERS + " again")

    def outcome(row):
        if row["id"] == failed["id"]:
            return {"id": str(row["id"]), "table": row["call_table"], "outcome": "failed", "input_tokens": 10,
                    "output_tokens": 5, "reason": "invalid answer twice: x", "prompt_version": "call_analysis_v1"}
        return {"id": str(row["id"]), "table": row["call_table"], "outcome": "retry", "reason": "529"}

    _claim_and_write(db, loc, outcome)
    f = db.execute("SELECT * FROM sales_calls WHERE id = %s", (failed["id"],)).fetchone()
    assert (f["analysis_status"], f["analysis_reason"], f["analysis_input_tokens"]) == (
        "failed", "invalid answer twice: x", 10)
    r = db.execute("SELECT * FROM sales_calls WHERE id = %s", (retry["id"],)).fetchone()
    assert r["analysis_status"] == "pending" and r["analysis_attempts"] == 1
    assert r["analysis_next_attempt_at"] > r["analysis_requested_at"]
    # a claim that is not (or no longer) ours writes nothing
    n = db.execute("SELECT record_call_analysis_results(%s, %s::jsonb) AS n", (str(uuid.uuid4()), json.dumps([
        {"id": str(r["id"]), "table": "sales_calls", "outcome": "done", "summary": {}}]))).fetchone()["n"]
    assert n == 0


def test_requeue_only_what_this_prompt_version_has_not_analysed(db, location):
    loc = location()
    old = upsert(db, loc, call_status="completed", transcript=TWO_SPEAKERS, started_at="2026-11-20T10:00:00Z")
    new = upsert(db, loc, call_status="completed", transcript=TWO_SPEAKERS + " more",
                 started_at="2026-11-21T10:00:00Z")
    _claim_and_write(db, loc, lambda row: {**_done(row), "prompt_version": "call_analysis_v0"}
                     if row["id"] == old["id"] else _done(row))
    queued = db.execute("SELECT requeue_call_analyses(%s, '2026-11-01T00:00:00Z', 'call_analysis_v1') AS n",
                        (loc,)).fetchone()["n"]
    assert queued == 1
    statuses = {r["id"]: r["analysis_status"] for r in db.execute(
        "SELECT id, analysis_status FROM sales_calls WHERE ghl_location_id = %s", (loc,)).fetchall()}
    assert statuses == {old["id"]: "pending", new["id"]: "done"}


def test_batched_calls_are_not_claimed_live_and_come_back_when_the_batch_has_no_answer(db, location):
    loc = location()
    row = upsert(db, loc, call_status="completed", transcript=TWO_SPEAKERS)
    _claim_and_write(db, loc, lambda r: {"id": str(r["id"]), "table": r["call_table"], "outcome": "batched",
                                         "batch_id": "msgbatch_1"})
    state = db.execute("SELECT analysis_location_state(%s) AS s", (loc,)).fetchone()["s"]
    assert state == {"due": 0, "batches": ["msgbatch_1"]}
    assert db.execute("SELECT * FROM claim_due_analyses(%s, %s, 60, 10)", (loc, str(uuid.uuid4()))).fetchall() == []
    claim_id = str(uuid.uuid4())
    claimed = db.execute("SELECT * FROM claim_analysis_batch(%s, 'msgbatch_1', %s, 60)", (loc, claim_id)).fetchall()
    assert [c["id"] for c in claimed] == [row["id"]]
    db.execute("SELECT record_call_analysis_results(%s, %s::jsonb)", (claim_id, json.dumps([
        {"id": str(row["id"]), "table": "sales_calls", "outcome": "unbatched", "reason": "batch: expired"}])))
    after = db.execute("SELECT * FROM sales_calls WHERE id = %s", (row["id"],)).fetchone()
    assert after["analysis_status"] == "pending" and after["analysis_batch_id"] is None
    assert db.execute("SELECT analysis_location_state(%s) AS s", (loc,)).fetchone()["s"]["due"] == 1
