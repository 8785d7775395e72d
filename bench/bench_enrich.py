"""Benchmark: call enrichment (transcripts + recordings) against the GHL sandbox, next to the replaced system's way.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/bench_enrich.py [--calls N]

Starts a local stack of its own (database, PostgREST, gateway, functions, GHL sandbox, moto S3 on free ports),
creates 3 sandbox locations at 100 requests / 10 s each with 150 ms latency, whose recordings are 1 MB WAV
files, and N connected calls across them (default 1,000: 334/333/333), each with a transcript and a recording
in the sandbox and a call row in the database (merged by upsert_call, as the webhook would: the trigger marks
them due). Then, one after the other:

1. ours: `ghl-bridge enrich --json` in a subprocess (all locations in parallel, recordings streamed to moto S3);
   wall time of the subprocess (Python start-up included), its peak RSS (getrusage of the child), GHL requests
   per call (the sandbox's counts), and checks (every call done, every object 1 MB).
2. the replaced system's way (baseline), on a 4th location with the same limits and latency: inside the
   webhook, one call at a time: GET the transcript, GET the recording (whole, in memory), write the row
   (PostgREST). Measured on --baseline-calls calls and extrapolated per call (printed as such).

Floor: the rate limit's pace for the requests needed: 2 requests per call, calls per location x 2 / (100 per
10 s); target <= 1.15 x. (The first 100 requests of each location may start at once, so a perfect run can come
in under the floor.)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
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

from ghl_bridge.sandbox.admin import SandboxAdmin  # noqa: E402
from ghl_bridge.stack.stack import Stack, StackConfig  # noqa: E402

BURST = 100
WINDOW_MS = 10_000
LATENCY_MS = 150
AUDIO_BYTES = 1024 * 1024
SENTENCES = [{"mediaChannel": 1, "sentenceIndex": 1, "startTime": 0, "endTime": 2000,
              "transcript": "Hi, this is Sam from Acme.", "confidence": 0.95},
             {"mediaChannel": 2, "sentenceIndex": 2, "startTime": 2100, "endTime": 4000,
              "transcript": "Could you call back next week?", "confidence": 0.9}]


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def add_location(admin: SandboxAdmin, db, count: int):
    location = admin.create_location(burst_limit=BURST, burst_window_ms=WINDOW_MS, latency_ms=LATENCY_MS)
    admin.set_media(location.id, recording_bytes=AUDIO_BYTES)  # served 1 MB, generated per request
    db.execute("INSERT INTO ghl_integrations (location_id, api_token) VALUES (%s, %s)", (location.id, location.token))
    ids = [f"msg_{uuid.uuid4().hex[:16]}" for _ in range(count)]
    for start in range(0, count, 200):
        admin.add_calls_with_media(location.id, [
            {"message": {"id": call_id, "status": "delivered", "meta": {"call": {"status": "completed", "duration": 120}}},
             "transcription": SENTENCES, "recording_bytes": 64} for call_id in ids[start:start + 200]])
    calls = [Jsonb({"external_call_id": call_id, "location_id": location.id, "call_status": "completed",
                    "duration_seconds": 120, "direction": "outbound", "raw": {"callId": call_id}}) for call_id in ids]
    with db.cursor() as cursor:
        cursor.executemany("SELECT public.upsert_call(%s)", [(call,) for call in calls])
    return location, ids


def cpu_seconds(stack: Stack) -> dict[str, float]:
    """CPU time so far of the stack's processes (the machine is shared: where did the CPU go?)."""
    ticks = os.sysconf("SC_CLK_TCK")
    seconds = {}
    for name, service in stack.services.items():
        try:
            fields = Path(f"/proc/{service.pid}/stat").read_text().rsplit(")", 1)[1].split()
            seconds[name] = (int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])) / ticks
        except (OSError, ValueError, IndexError):
            continue
    return seconds


def run_ours(info: dict) -> tuple[float, int, float, dict]:
    env = {**os.environ, "SUPABASE_URL": info["supabase_url"], "SUPABASE_SERVICE_ROLE_KEY": info["service_role_key"],
           "GHL_API_BASE_URL": info["ghl_sandbox_url"], "SPOOL_S3_ENDPOINT_URL": info["s3_endpoint_url"],
           "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "ENRICH_DEADLINE_SECONDS": "900",
           "LOG_LEVEL": "WARNING"}
    # A wrapper process runs the worker and reports the worker's own peak RSS (its only child).
    wrapper = ("import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); "
               "u = resource.getrusage(resource.RUSAGE_CHILDREN); "
               "print(u.ru_maxrss, u.ru_utime + u.ru_stime, file=sys.stderr); sys.exit(code)")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", wrapper, sys.executable, "-m", "ghl_bridge.cli", "enrich", "--json"],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    elapsed = time.perf_counter() - started
    if done.returncode not in (0, 1):
        raise SystemExit(f"ghl-bridge enrich failed ({done.returncode}): {done.stderr[-2000:]}")
    peak_kb, cpu = done.stderr.strip().splitlines()[-1].split()
    return elapsed, int(peak_kb), float(cpu), json.loads(done.stdout)


def run_baseline(info: dict, location, ids: list[str]) -> tuple[float, int, int]:
    """The replaced system: per call, inside the webhook: transcript, then the whole recording, then the row."""
    from supabase import create_client

    portal = create_client(info["supabase_url"], info["service_role_key"])
    failed = stored_bytes = 0
    started = time.perf_counter()
    with httpx.Client(base_url=location.base_url, timeout=60,
                      headers={"Authorization": f"Bearer {location.token}", "Version": "2021-04-15"}) as ghl:
        for call_id in ids:
            transcript = ghl.get(f"/conversations/locations/{location.id}/messages/{call_id}/transcription")
            audio = ghl.get(f"/conversations/messages/{call_id}/locations/{location.id}/recording")
            if transcript.status_code != 200 or audio.status_code != 200:
                failed += 1
                continue
            stored_bytes += len(audio.content)
            text = "\n".join(s["transcript"] for s in transcript.json())
            portal.table("sales_calls").update({"transcript": text}).eq("external_call_id", call_id).execute()
    return time.perf_counter() - started, failed, stored_bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1000, help="connected calls across the 3 locations")
    parser.add_argument("--baseline-calls", type=int, default=40, help="calls the baseline is measured on")
    args = parser.parse_args()
    per_location = split(args.calls, 3)

    state = Path(tempfile.mkdtemp(prefix="bench-enrich-"))
    config = StackConfig(state_dir=state, server_url=os.environ.get("DATABASE_URL") or None,
                         database_name=f"bench_{uuid.uuid4().hex[:10]}", fixed_ports=False,
                         drop_database_on_down=True, function_env={"LOG_LEVEL": "WARNING"})
    stack = Stack(config)
    print(f"starting a local stack in {state} ...", flush=True)
    info = stack.up()
    try:
        with psycopg.connect(info["database_url"], autocommit=True, row_factory=dict_row) as db, \
                SandboxAdmin(info["ghl_sandbox_url"]) as admin:
            made = [add_location(admin, db, n) for n in per_location]
            locations = [location for location, _ in made]
            print(f"{args.calls} connected calls across 3 locations ({'/'.join(map(str, per_location))}); sandbox: "
                  f"{BURST} requests / {WINDOW_MS / 1000:g} s per location, {LATENCY_MS} ms latency, "
                  f"{AUDIO_BYTES // 1024} KiB recordings", flush=True)

            load_before = os.getloadavg()[0]
            cpu_before = cpu_seconds(stack)
            elapsed, peak_kb, worker_cpu, result = run_ours(info)
            cpu_after = cpu_seconds(stack)
            load_after = os.getloadavg()[0]
            stack_cpu = {name: cpu_after[name] - cpu_before.get(name, 0.0) for name in cpu_after
                         if cpu_after[name] - cpu_before.get(name, 0.0) >= 0.5}
            rows = db.execute("SELECT enrichment_status, count(*) AS n FROM sales_calls WHERE ghl_location_id = ANY(%s)"
                              " GROUP BY 1", ([loc.id for loc in locations],)).fetchall()
            statuses = {r["enrichment_status"]: r["n"] for r in rows}
            requests = [admin.media(loc.id)["requests"] for loc in locations]
            stats = [admin.stats(loc.id) for loc in locations]
            ghl_requests = sum(sum(r.values()) for r in requests)
            import boto3

            s3 = boto3.client("s3", endpoint_url=info["s3_endpoint_url"], region_name="us-east-1",
                              aws_access_key_id="local", aws_secret_access_key="local")
            objects = sizes_ok = 0
            for location in locations:
                for page in s3.get_paginator("list_objects_v2").paginate(Bucket="call-recordings",
                                                                         Prefix=f"{location.id}/"):
                    for item in page.get("Contents", []):
                        objects += 1
                        sizes_ok += item["Size"] == AUDIO_BYTES
            rate = BURST / (WINDOW_MS / 1000)
            floor = 2 * max(per_location) / rate

            baseline_location, baseline_ids = add_location(admin, db, args.baseline_calls)
            print(f"ours done in {elapsed:.1f} s; running the baseline on {args.baseline_calls} calls ...", flush=True)
            base_elapsed, base_failed, base_bytes = run_baseline(info, baseline_location, baseline_ids)
            per_call = base_elapsed / args.baseline_calls

            print()
            print("== call enrichment benchmark ==")
            print(f"ours      : {args.calls} calls, 3 locations in parallel, `ghl-bridge enrich` in a subprocess: "
                  f"wall {elapsed:.2f} s (Python start-up and imports included)")
            for summary in result["locations"]:
                print(f"            {summary['location_id']}: claimed {summary['claimed']}, done {summary['done']}, "
                      f"transcripts {summary['transcripts']}, recordings {summary['recordings']}, not ready "
                      f"{summary['not_ready']}, GHL requests {summary['requests']}, {summary['seconds']:.2f} s, "
                      f"status {summary['status']}")
            print(f"floor     : 2 requests x {max(per_location)} calls per location / {rate:g} per s = {floor:.2f} s "
                  f"(target <= 1.15 x = {1.15 * floor:.2f} s)")
            slowest = max(s["seconds"] for s in result["locations"])
            verdict = "MET" if elapsed <= 1.15 * floor else "MISSED"
            print(f"ratio     : {elapsed / floor:.3f} x the floor (wall) -> target {verdict}; "
                  f"slowest location's own time {slowest:.2f} s = {slowest / floor:.3f} x")
            print(f"requests  : {ghl_requests} GHL media requests for {args.calls} calls = "
                  f"{ghl_requests / args.calls:.2f} per call (target 2.0); 429s "
                  f"{sum(s['rate_limited_sent'] for s in stats)}; contract violations "
                  f"{sum(s['contract_violations'] for s in stats)}")
            verdict = "MET" if peak_kb < 150 * 1024 else "MISSED"
            print(f"memory    : peak RSS of the worker {peak_kb / 1024:.0f} MB (target < 150 MB) -> {verdict}")
            print(f"checks    : rows {statuses}; objects {objects}, of {AUDIO_BYTES} bytes each: {sizes_ok}")
            print(f"CPU       : worker {worker_cpu:.1f} s; " + ", ".join(
                f"{name} {seconds:.1f} s" for name, seconds in sorted(stack_cpu.items(), key=lambda kv: -kv[1]))
                  + f" during the run; machine load average {load_before:.1f} before, {load_after:.1f} after "
                  f"({os.cpu_count()} CPUs, shared with other work)")
            print(f"baseline  : inside the webhook, one call at a time (transcript, whole recording in memory, row "
                  f"update), measured on {args.baseline_calls} calls: {base_elapsed:.2f} s ({per_call * 1000:.0f} ms "
                  f"per call, failed {base_failed}, {base_bytes / 1e6:.0f} MB read)")
            print(f"            all {args.calls} one after the other: {per_call * args.calls:.1f} s (EXTRAPOLATED: "
                  f"{per_call * 1000:.0f} ms x {args.calls}); it adds {per_call * 1000:.0f} ms to each webhook "
                  f"request, and a transcript GHL has not made yet is lost")
            print(f"speed-up  : {per_call * args.calls / elapsed:.1f} x against the baseline's whole run")
    finally:
        stack.down()
    shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
