"""The analyze action of process-ghl-import over HTTP, `ghl-bridge analyze` as a subprocess (--json: one
document; --again --since), a worker killed mid-run (SIGKILL) analysing no call twice, and the API key kept out
of answers, output and argv."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from shared.services.analyze_calls import run_analyze
from tests.analysis.conftest import (
    CALLBACK, MEETING, analysis_settings, messages_for, row, sent_count, sha, upsert, variant,
)
from tests.conftest import TEST_SCHEDULER_SECRET

AUTH = {"Authorization": f"Bearer {TEST_SCHEDULER_SECRET}"}


def post(stack, body: dict, status: int = 200) -> dict:
    response = httpx.post(stack["functions"]["process-ghl-import"], json=body, headers=AUTH, timeout=120)
    assert response.status_code == status, response.text
    return response.json()


def cli_env(stack, **extra) -> dict:
    env = {**os.environ, "SUPABASE_URL": stack["supabase_url"], "SUPABASE_SERVICE_ROLE_KEY": stack["service_role_key"],
           "ANTHROPIC_BASE_URL": stack["anthropic_url"], "ANTHROPIC_API_KEY": stack["anthropic_api_key"], **extra}
    return env


def test_the_function_analyses_a_location(stack, db, standin, location):
    loc = location("client")
    calls = [upsert(db, loc, transcript=variant(MEETING)) for _ in range(2)]
    answer = post(stack, {"action": "analyze", "location_id": loc})
    [summary] = answer["analyze"]["locations"]
    assert (summary["location_id"], summary["done"], summary["status"]) == (loc, 2, "success")
    assert summary["input_tokens"] > 0 and summary["output_tokens"] > 0
    assert all(row(db, c, "calls")["analysis_status"] == "done" for c in calls)
    assert stack["anthropic_api_key"] not in json.dumps(answer)


@pytest.mark.parametrize("body, message", [
    ({"action": "analyze", "limit": 0}, "limit"),
    ({"action": "analyze", "limit": True}, "limit"),
    ({"action": "analyze", "limit": 10 ** 20}, "limit must be at most"),
    ({"action": "enrich", "limit": 2 ** 31}, "limit must be at most"),
    ({"action": "analyze", "dispatch": "yes"}, "dispatch"),
    ({"action": "analyze", "location_id": " "}, "location_id"),
    ({"action": "analyze", "again": True}, "unknown field"),
])
def test_a_bad_analyze_request_is_a_400(stack, body, message):
    assert message in json.dumps(post(stack, body, status=400))


def test_an_unknown_or_switched_off_location_is_a_422(stack, location):
    post(stack, {"action": "analyze", "location_id": "loc_nobody_has"}, status=422)
    post(stack, {"action": "analyze", "location_id": location(call_analysis_enabled=False)}, status=422)


def test_the_cli_prints_one_json_document_and_requeues_on_purpose(stack, db, standin, location):
    loc = location()
    call = upsert(db, loc, transcript=variant(CALLBACK), started_at="2026-11-20T10:00:00Z")
    done = subprocess.run([sys.executable, "-m", "ghl_bridge.cli", "analyze", "--location", loc, "--json"],
                          env=cli_env(stack), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)  # exactly one JSON document
    assert result["prompt_version"] == "call_analysis_v1" and result["requeued"] is None
    [summary] = result["locations"]
    assert (summary["done"], summary["status"]) == (1, "success")
    facts = result["last_24h"][loc]
    assert facts["done_24h"] == 1 and facts["tokens_24h"]["live_input"] == row(db, call)["analysis_input_tokens"]
    assert facts["estimated_spend_usd_24h"] > 0 and facts["dispositions_24h"]["compared"] == 1
    for text in (done.stdout, done.stderr):
        assert stack["anthropic_api_key"] not in text

    # the same prompt version again: nothing is queued, nothing sent
    again = subprocess.run([sys.executable, "-m", "ghl_bridge.cli", "analyze", "--location", loc, "--json",
                            "--again", "--since", "2026-11-01T00:00:00Z"], env=cli_env(stack),
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["requeued"] == 0
    assert sent_count(standin, call["transcript"]) == 1
    # another prompt version had analysed it: queued again on purpose
    db.execute("UPDATE sales_calls SET analysis_prompt_version = 'call_analysis_v0' WHERE id = %s", (call["id"],))
    third = subprocess.run([sys.executable, "-m", "ghl_bridge.cli", "analyze", "--location", loc, "--json",
                            "--again", "--since", "2026-11-01T00:00:00Z"], env=cli_env(stack),
                           capture_output=True, text=True, timeout=120)
    assert json.loads(third.stdout)["requeued"] == 1 and row(db, call)["analysis_prompt_version"] == "call_analysis_v1"

    bad = subprocess.run([sys.executable, "-m", "ghl_bridge.cli", "analyze", "--again"], env=cli_env(stack),
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--since" in bad.stderr


def test_the_cli_json_stays_one_document_when_the_worker_logs(stack, db, standin, location):
    loc = location()
    call = upsert(db, loc, transcript=variant(MEETING))
    standin.inject("429", count=1, retry_after=1)  # the worker logs a warning while it waits
    done = subprocess.run([sys.executable, "-m", "ghl_bridge.cli", "analyze", "--location", loc, "--json"],
                          env=cli_env(stack), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["locations"][0]["done"] == 1  # stdout: the one JSON document only
    assert "anthropic asked to wait" in done.stderr and row(db, call)["analysis_status"] == "done"


def test_a_worker_killed_mid_run_analyses_no_call_twice(stack, db, database, standin, location):
    loc = location()
    calls = [upsert(db, loc, transcript=variant(MEETING if i % 2 else CALLBACK)) for i in range(16)]
    standin.set_latency(400)
    worker = subprocess.Popen([sys.executable, "-m", "ghl_bridge.cli", "analyze", "--location", loc, "--json"],
                              env=cli_env(stack, ANALYSIS_MAX_IN_FLIGHT="3", ANALYSIS_LEASE_SECONDS="4"),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        cmdline = open(f"/proc/{worker.pid}/cmdline", "rb").read().decode(errors="replace")
        assert stack["anthropic_api_key"] not in cmdline  # the key travels in the environment, never argv
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # kill it once it has finished some calls, not all
            done = db.execute("SELECT count(*) AS n FROM sales_calls WHERE ghl_location_id = %s"
                              " AND analysis_status = 'done'", (loc,)).fetchone()["n"]
            if done >= 4:
                break
            time.sleep(0.05)
        worker.send_signal(signal.SIGKILL)
    finally:
        worker.wait(10)
    rows = db.execute("SELECT id, analysis_status, analysis_claimed_until FROM sales_calls WHERE ghl_location_id = %s",
                      (loc,)).fetchall()
    assert 4 <= sum(r["analysis_status"] == "done" for r in rows) < 16  # killed mid-run
    in_flight = {r["id"] for r in rows if r["analysis_status"] == "pending" and r["analysis_claimed_until"]}
    leases = [r["analysis_claimed_until"] for r in rows if r["analysis_claimed_until"]]
    assert leases  # the killed worker still holds calls
    wait = (max(leases) - db.execute("SELECT now() AS t").fetchone()["t"]).total_seconds()
    time.sleep(max(0.0, wait) + 0.2)
    standin.set_latency(0)

    [summary] = run_analyze(database, analysis_settings(stack), location_id=loc)
    after = {c["id"]: row(db, c) for c in calls}
    assert all(r["analysis_status"] == "done" for r in after.values())
    assert all(r["analysis_attempts"] == 1 for r in after.values())  # each result written once
    sent = messages_for(standin, [c["transcript"] for c in calls])
    by_call = {c["id"]: len(sent[sha(c["transcript"])]) for c in calls}
    # A second request only for a call whose request was in flight when the worker died (its answer was never
    # written); every other call was asked exactly once.
    assert all(n == 1 for call_id, n in by_call.items() if call_id not in in_flight), by_call
    assert all(n <= 2 for n in by_call.values())
    twice = [call_id for call_id, n in by_call.items() if n == 2]
    assert len(twice) <= 3  # at most the worker's requests in flight (ANALYSIS_MAX_IN_FLIGHT)
    print(f"killed worker: {len(in_flight)} call(s) claimed at the kill, {len(twice)} asked twice")
