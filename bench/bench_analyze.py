"""Benchmark: call analysis against the Anthropic stand-in at a tight rate limit, next to the replaced system's way.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/bench_analyze.py [--calls N]

Starts a local stack of its own (database, PostgREST, gateway, functions, the Anthropic stand-in on free ports), sets
the stand-in to 50 requests and 40,000 input tokens per minute with 800 ms latency on every answer, creates 3
locations and N calls across them (default 1,000), each with a two-speaker transcript of 45-90 words taken from the
labelled transcripts (tests/fixtures/analysis) with a unique last line, merged by upsert_call as the webhook would
(the trigger marks them pending). Then:

1. ours: `ghl-bridge analyze --json` in a subprocess (every location at once, one pacer for the organisation's
   limits, live requests: ANALYSIS_BATCH_THRESHOLD=0); wall time (Python start-up included), its peak RSS
   (getrusage of the child), Messages requests per call from the stand-in's log (every status), 429s, and checks
   (every call done, a valid ai_summary).
2. the replaced system's way (baseline), after the stand-in's window has emptied: inside the webhook, one call at a
   time: POST /v1/messages (no pacing, no retry: a 429 loses the analysis), then write the row. Measured on
   --baseline-calls calls; per-call time extrapolated (printed as such) and its losses counted.

Floors, from what the stand-in counted for our run (each answered request's input tokens, its count: characters / 4):
  window floor    = the stand-in's limits on its sliding 60 s window: every request admitted, in order, at the
                    earliest moment the window has room for it (any number at once), plus one answer's latency:
                    the best any client can do against these limits (simulated on the run's own token counts);
  even-rate floor = max(requests / 50, input tokens / 40,000) minutes (a continuously refilled bucket with no
                    initial burst; shown for reference).
Target: wall <= 1.15 x the window floor; 1.00 requests per call; peak RSS < 150 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ghl_bridge.anthropic_standin.admin import AnthropicStandinAdmin  # noqa: E402
from ghl_bridge.stack.stack import Stack, StackConfig  # noqa: E402
from shared.domain.call_analysis import CallAnalysis, request_params  # noqa: E402

REQUESTS_PER_MINUTE = 50
INPUT_TOKENS_PER_MINUTE = 40_000
LATENCY_MS = 800
FIXTURE = ROOT / "tests" / "fixtures" / "analysis" / "labelled_transcripts.json"


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def transcripts(count: int) -> list[str]:
    usable = [item["transcript"] for item in json.loads(FIXTURE.read_text())
              if 45 <= len(item["transcript"].split()) and "Contact:" in item["transcript"]
              and "Agent:" in item["transcript"]]
    return [f"{usable[i % len(usable)]}\nAgent: Thanks, talk soon. (ref {uuid.uuid4().hex[:8]})" for i in range(count)]


def add_location(db, texts: list[str]) -> str:
    location_id = f"loc_bench_{uuid.uuid4().hex[:8]}"
    db.execute("INSERT INTO ghl_integrations (location_id, api_token, time_zone) VALUES (%s, 'unused', "
               "'America/New_York')", (location_id,))
    calls = [Jsonb({"external_call_id": f"msg_{uuid.uuid4().hex[:16]}", "location_id": location_id,
                    "call_status": "completed", "duration_seconds": 120, "transcript": text,
                    "started_at": "2026-12-03T15:00:00Z", "raw": {"i": i}}) for i, text in enumerate(texts)]
    with db.cursor() as cursor:
        cursor.executemany("SELECT public.upsert_call(%s)", [(call,) for call in calls])
    return location_id


def window_floor(tokens: list[int]) -> float:
    """Seconds until the last of these requests is answered when each is admitted as early as a sliding 60 s window
    of REQUESTS_PER_MINUTE requests and INPUT_TOKENS_PER_MINUTE input tokens allows (in order, no concurrency cap)."""
    admitted: list[tuple[float, int]] = []
    now = 0.0
    for need in tokens:
        while True:
            recent = [(t, k) for t, k in admitted if t > now - 60.0]
            if len(recent) < REQUESTS_PER_MINUTE and sum(k for _, k in recent) + need <= INPUT_TOKENS_PER_MINUTE:
                break
            now = min(t for t, _ in recent) + 60.0  # the oldest entry leaves the window
        admitted.append((now, need))
    return now + LATENCY_MS / 1000


def run_ours(info: dict) -> tuple[float, int, float, dict]:
    env = {**os.environ, "SUPABASE_URL": info["supabase_url"], "SUPABASE_SERVICE_ROLE_KEY": info["service_role_key"],
           "ANTHROPIC_BASE_URL": info["anthropic_url"], "ANTHROPIC_API_KEY": info["anthropic_api_key"],
           "ANALYSIS_DEADLINE_SECONDS": "7200", "ANALYSIS_BATCH_THRESHOLD": "0", "LOG_LEVEL": "WARNING"}
    wrapper = ("import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); "
               "u = resource.getrusage(resource.RUSAGE_CHILDREN); "
               "print(u.ru_maxrss, u.ru_utime + u.ru_stime, file=sys.stderr); sys.exit(code)")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", wrapper, sys.executable, "-m", "ghl_bridge.cli", "analyze", "--json"],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=7200)
    elapsed = time.perf_counter() - started
    if done.returncode not in (0, 1):
        raise SystemExit(f"ghl-bridge analyze failed ({done.returncode}): {done.stderr[-2000:]}")
    peak_kb, cpu = done.stderr.strip().splitlines()[-1].split()
    return elapsed, int(peak_kb), float(cpu), json.loads(done.stdout)


def run_baseline(info: dict, db, location_id: str) -> tuple[float, int, int]:
    """The replaced system: per call, inside the webhook: one Messages request (x-api-key, max_tokens 1024, no retry),
    then the row written through PostgREST. Returns (seconds, analysed, lost)."""
    from supabase import create_client

    portal = create_client(info["supabase_url"], info["service_role_key"])
    rows = db.execute("SELECT id, transcript, started_at FROM sales_calls WHERE ghl_location_id = %s",
                      (location_id,)).fetchall()
    analysed = lost = 0
    started = time.perf_counter()
    with httpx.Client(base_url=info["anthropic_url"], timeout=120,
                      headers={"x-api-key": info["anthropic_api_key"], "anthropic-version": "2023-06-01"}) as http:
        for row in rows:
            params = request_params(row["transcript"], row["started_at"], "America/New_York",
                                    model="claude-sonnet-4-5-20250929", max_tokens=1024)
            answer = http.post("/v1/messages", json=params)
            if answer.status_code != 200:
                lost += 1
                continue
            summary = json.loads(answer.json()["content"][0]["text"])
            portal.table("sales_calls").update({"ai_summary": summary}).eq("id", row["id"]).execute()
            analysed += 1
    return time.perf_counter() - started, analysed, lost


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1000, help="calls across the 3 locations")
    parser.add_argument("--baseline-calls", type=int, default=40, help="calls the baseline is measured on")
    args = parser.parse_args()
    per_location = split(args.calls, 3)

    state = Path(tempfile.mkdtemp(prefix="bench-analyze-"))
    config = StackConfig(state_dir=state, server_url=os.environ.get("DATABASE_URL") or None,
                         database_name=f"bench_{uuid.uuid4().hex[:10]}", fixed_ports=False,
                         drop_database_on_down=True, function_env={"LOG_LEVEL": "WARNING"})
    stack = Stack(config)
    print(f"starting a local stack in {state} ...", flush=True)
    info = stack.up()
    try:
        with psycopg.connect(info["database_url"], autocommit=True, row_factory=dict_row) as db, \
                AnthropicStandinAdmin(info["anthropic_url"]) as standin:
            standin.reset()
            standin.set_limits(requests_per_minute=REQUESTS_PER_MINUTE, input_tokens_per_minute=INPUT_TOKENS_PER_MINUTE)
            standin.set_latency(LATENCY_MS)
            texts = transcripts(args.calls)
            locations, start = [], 0
            for n in per_location:
                locations.append(add_location(db, texts[start:start + n]))
                start += n
            pending = db.execute("SELECT count(*) AS n FROM sales_calls WHERE ghl_location_id = ANY(%s) AND "
                                 "analysis_status = 'pending'", (locations,)).fetchone()["n"]
            print(f"{args.calls} calls across 3 locations ({'/'.join(map(str, per_location))}), {pending} pending; "
                  f"stand-in: {REQUESTS_PER_MINUTE} requests and {INPUT_TOKENS_PER_MINUTE} input tokens per minute, "
                  f"{LATENCY_MS} ms latency", flush=True)

            load_before = os.getloadavg()[0]
            elapsed, peak_kb, worker_cpu, result = run_ours(info)
            load_after = os.getloadavg()[0]
            log = [e for e in standin.requests() if e.get("path") == "/v1/messages"]
            statuses: dict[int, int] = {}
            for entry in log:
                statuses[entry["status"]] = statuses.get(entry["status"], 0) + 1
            answered = [e for e in log if e["status"] == 200]
            input_tokens = sum(e.get("input_tokens") or 0 for e in answered)
            rows = db.execute("SELECT analysis_status, ai_summary FROM sales_calls WHERE ghl_location_id = ANY(%s)",
                              (locations,)).fetchall()
            done = [r for r in rows if r["analysis_status"] == "done"]
            valid = 0
            for r in done:
                try:
                    CallAnalysis.model_validate(r["ai_summary"])
                    valid += 1
                except ValueError:
                    pass
            by_sha: dict[str, int] = {}
            for entry in answered:
                by_sha[entry["transcript_sha256"]] = by_sha.get(entry["transcript_sha256"], 0) + 1
            repeated = sum(1 for n in by_sha.values() if n > 1)

            n = len(done)
            even_floor = 60 * max(len(answered) / REQUESTS_PER_MINUTE, input_tokens / INPUT_TOKENS_PER_MINUTE)
            floor = window_floor([e.get("input_tokens") or 0 for e in answered])

            print(f"ours done in {elapsed:.1f} s; waiting 62 s for the stand-in's window to empty, then the baseline "
                  f"on {args.baseline_calls} calls ...", flush=True)
            time.sleep(62)
            base_texts = transcripts(args.baseline_calls)
            db.execute("UPDATE ghl_integrations SET call_analysis_enabled = false WHERE location_id = ANY(%s)",
                       (locations,))
            base_location = add_location(db, base_texts)
            base_elapsed, base_analysed, base_lost = run_baseline(info, db, base_location)
            per_call = base_elapsed / args.baseline_calls

            print()
            print("== call analysis benchmark ==")
            print(f"ours      : {args.calls} calls, 3 locations at once, `ghl-bridge analyze` in a subprocess: wall "
                  f"{elapsed:.2f} s (Python start-up and imports included); load {load_before:.1f} -> {load_after:.1f}")
            for summary in result["locations"]:
                print(f"            {summary['location_id']}: claimed {summary['claimed']}, done {summary['done']}, "
                      f"failed {summary['failed']}, retry later {summary['retry_later']}, requests "
                      f"{summary['requests']}, tokens {summary['input_tokens']} in / {summary['output_tokens']} out, "
                      f"{summary['seconds']:.1f} s, status {summary['status']}")
            print(f"checks    : {n} done, {valid} valid ai_summary, {len(rows) - n} not done")
            print(f"requests  : {len(log)} Messages requests ({statuses}) for {n} calls = {len(log) / max(n, 1):.3f} "
                  f"per call ({len(answered) / max(n, 1):.3f} answered per call; {repeated} call(s) answered twice); "
                  f"target 1.00")
            print(f"floor     : {len(answered)} requests, {input_tokens} input tokens (the stand-in's count) -> "
                  f"window floor {floor:.1f} s, even-rate floor {even_floor:.1f} s "
                  f"(binding: {'input tokens' if input_tokens / INPUT_TOKENS_PER_MINUTE > len(log) / REQUESTS_PER_MINUTE else 'requests'})")
            verdict = "MET" if elapsed <= 1.15 * floor else "MISSED"
            slowest = max(s["seconds"] for s in result["locations"])
            print(f"ratio     : {elapsed / floor:.3f} x the window floor (wall; the slowest location's own time "
                  f"{slowest:.1f} s = {slowest / floor:.3f} x), {elapsed / even_floor:.3f} x the "
                  f"even-rate floor -> target (<= 1.15 x window floor) {verdict}")
            print(f"memory    : peak RSS of the worker {peak_kb / 1024:.1f} MB (target < 150 MB: "
                  f"{'MET' if peak_kb / 1024 < 150 else 'MISSED'}); worker CPU {worker_cpu:.1f} s")
            print(f"baseline  : inside the webhook, one call at a time, no pacing or retry: {args.baseline_calls} "
                  f"calls in {base_elapsed:.1f} s = {per_call:.3f} s per call (measured), {base_analysed} analysed, "
                  f"{base_lost} lost to 429s")
            print(f"            {args.calls} calls at that pace: {per_call * args.calls:.0f} s of webhook time "
                  f"(extrapolated), and above {REQUESTS_PER_MINUTE}/min or {INPUT_TOKENS_PER_MINUTE} tokens/min every "
                  f"further call is a 429 and its analysis is lost")
    finally:
        stack.down()


if __name__ == "__main__":
    main()
