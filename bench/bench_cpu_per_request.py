#!/usr/bin/env python
"""Benchmark: process CPU per GHL request of the sync and enrichment workers, before and after, in one run.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/bench_cpu_per_request.py \
        [--locations 5,20] [--prospects 110] [--calls 55] [--recording-bytes 65536] [--jobs sync,enrich] \
        [--before REV]

Starts a local stack of its own (database, PostgREST, moto S3, the GHL sandbox on free ports); every location
is a fresh sandbox location at 100 requests / 10 s with 150 ms latency (as issue 22 measured). Jobs: `sync` (110
prospects per location), `enrich` (55 calls per location, each a transcript and a recording streamed to moto S3:
the upload's CPU is part of the path), `enrich-transcripts` (recordings off: 110 calls, the transcript only). For
each job, location count and code version it seeds fresh locations, runs the worker as the operator does
(`ghl-bridge sync --json`, `ghl-bridge enrich --json`, one process for all locations) and measures:

- process CPU: user + system seconds of the worker process (getrusage of the child: interpreter start-up,
  imports and every thread included), as the issue measured it;
- run CPU: the same process's CPU from the moment the CLI command starts (start-up and the CLI's imports left
  out; the services' own lazy imports stay in);
- GHL requests: what the sandbox counted for those locations (retries and 429s included);
- wall time against the window floor ((ceil(requests per location / 100) - 1) x 10 s + one latency);
- with two location counts (default 5 and 20), the marginal CPU per request: what the requests the larger run
  added cost, start-up and one-off costs (imports, clients, TLS contexts) left out.

"before" is the code of main at --before (default 3387666, exported with `git archive` into a temporary folder
that goes first on the worker's PYTHONPATH); "after" is this working tree. Both run against the same stack,
sandbox settings and data shape; the worker prints which `shared` package it imported, so the figures say which
code ran. Only the worker's CPU counts (the sandbox's OpenAPI validation is not ours).

Importable (bench_scale.py uses it): `measure_cpu_per_request(info, job, locations=..., per_location=...,
code_root=None)` returns a dict of the figures for one run against a running stack's `info`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ghl_bridge.sandbox.admin import SandboxAdmin  # noqa: E402
from ghl_bridge.stack.stack import Stack, StackConfig  # noqa: E402

BASELINE_REV = "3387666"
BURST = 100
WINDOW_MS = 10_000
LATENCY_MS = 150
TARGET_MS = 1.2
CUSTOM_FIELDS = [{"id": "cf_company_name", "name": "Company Name"}, {"id": "cf_title", "name": "Job Title"},
                 {"id": "cf_linkedin", "name": "LinkedIn URL"}]
MAPPING = {"company_name": "cf_company_name", "contact_title": "cf_title", "linkedin_url": "cf_linkedin"}
SENTENCES = [{"mediaChannel": 1, "sentenceIndex": 1, "startTime": 0, "endTime": 2000,
              "transcript": "Hi, this is Sam from Acme.", "confidence": 0.95},
             {"mediaChannel": 2, "sentenceIndex": 2, "startTime": 2100, "endTime": 4000,
              "transcript": "Could you call back next week?", "confidence": 0.9}]
_FIGURES = "CPU-FIGURES "
# Runs inside the worker process: the CLI command, with its own CPU from the moment the command starts.
_WRAPPER = f"""
import json, sys, time
from ghl_bridge.cli import main
import shared
started = time.process_time()
code = main(sys.argv[1:])
print({_FIGURES!r} + json.dumps({{"run_cpu": time.process_time() - started, "shared": shared.__file__}}),
      file=sys.stderr)
sys.exit(code)
"""


# ---- the stack and its data -------------------------------------------------------------------------

def start_stack(state_dir: Path | None = None, function_env: dict[str, str] | None = None) -> tuple[Stack, dict]:
    """A local stack of its own on free ports (its own database, dropped on down)."""
    state = state_dir or Path(tempfile.mkdtemp(prefix="bench-cpu-"))
    stack = Stack(StackConfig(state_dir=state, server_url=os.environ.get("DATABASE_URL") or None,
                              database_name=f"bench_{uuid.uuid4().hex[:10]}", fixed_ports=False,
                              drop_database_on_down=True, function_env={"LOG_LEVEL": "WARNING", **(function_env or {})}))
    return stack, stack.up()


def _sandbox_location(admin: SandboxAdmin, **extra):
    return admin.create_location(burst_limit=BURST, burst_window_ms=WINDOW_MS, latency_ms=LATENCY_MS, **extra)


def seed_sync(db, admin: SandboxAdmin, locations: int, per_location: int) -> list[str]:
    """Fresh sandbox locations with a custom field mapping, each with `per_location` never-synced prospects."""
    ids = []
    for index in range(locations):
        location = _sandbox_location(admin, custom_fields=CUSTOM_FIELDS)
        db.execute("INSERT INTO ghl_integrations (location_id, api_token, custom_field_mapping) VALUES (%s, %s, %s)",
                   (location.id, location.token, Jsonb(MAPPING)))
        tag = uuid.uuid4().hex[:8]
        area = 201 + index % 700
        rows = [(f"First{i}", f"Last{i}", f"Firm {i}", f"{tag}.{i}@example.com",
                 f"({area}) 55{i // 10000 % 10}-{i % 10000:04d}", "Head of Sales", f"https://linkedin.com/in/{tag}-{i}",
                 ["portal"], location.id) for i in range(per_location)]
        with db.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO sales_prospects (first_name, last_name, company_name, email, phone, contact_title,"
                " linkedin_url, tags, ghl_location_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)", rows)
        ids.append(location.id)
    return ids


def seed_enrich(db, admin: SandboxAdmin, locations: int, per_location: int, recording_bytes: int) -> list[str]:
    """Fresh sandbox locations, each with `per_location` connected calls that have a transcript and a recording
    (2 GHL requests per call), merged by upsert_call as the webhook would (the trigger marks them due)."""
    ids = []
    for _ in range(locations):
        location = _sandbox_location(admin)
        admin.set_media(location.id, recording_bytes=recording_bytes)
        db.execute("INSERT INTO ghl_integrations (location_id, api_token) VALUES (%s, %s)",
                   (location.id, location.token))
        calls = [f"msg_{uuid.uuid4().hex[:16]}" for _ in range(per_location)]
        for start in range(0, per_location, 200):
            admin.add_calls_with_media(location.id, [
                {"message": {"id": call, "status": "delivered", "meta": {"call": {"status": "completed", "duration": 120}}},
                 "transcription": SENTENCES, "recording_bytes": 64} for call in calls[start:start + 200]])
        with db.cursor() as cursor:
            cursor.executemany("SELECT public.upsert_call(%s)", [(Jsonb(
                {"external_call_id": call, "location_id": location.id, "call_status": "completed",
                 "duration_seconds": 120, "direction": "outbound", "raw": {"callId": call}}),) for call in calls])
        ids.append(location.id)
    return ids


def deactivate(db, location_ids: list[str]) -> None:
    """Take locations out of later runs (the worker runs every active integration)."""
    db.execute("UPDATE ghl_integrations SET is_active = false WHERE location_id = ANY(%s)", (location_ids,))


def export_code(rev: str, into: Path) -> Path:
    """The tree of `rev` (git archive), for running the code as it was."""
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


# ---- one worker run ---------------------------------------------------------------------------------

JOBS = {  # job -> (CLI command, GHL requests per item, extra environment)
    "sync": ("sync", 1, {}),
    "enrich": ("enrich", 2, {}),  # transcript + recording (streamed to moto S3) per call
    "enrich-transcripts": ("enrich", 1, {"RECORDINGS_ENABLED": "false"}),  # the transcript only
}


def worker_env(info: dict, code_root: Path | None = None) -> dict[str, str]:
    env = {**os.environ, "SUPABASE_URL": info["supabase_url"], "SUPABASE_SERVICE_ROLE_KEY": info["service_role_key"],
           "GHL_API_BASE_URL": info["ghl_sandbox_url"], "SPOOL_S3_ENDPOINT_URL": info["s3_endpoint_url"],
           "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "SYNC_DEADLINE_SECONDS": "900",
           "ENRICH_DEADLINE_SECONDS": "900", "LOG_LEVEL": "WARNING"}
    if code_root is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(code_root), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def worker_command(job: str) -> list[str]:
    return [sys.executable, "-c", _WRAPPER, job, "--json"]


def run_worker(job: str, info: dict, code_root: Path | None = None, prefix: list[str] | None = None) -> dict:
    """`ghl-bridge <command> --json` for `job` (see JOBS) in a child process; its wall time, process CPU (getrusage)
    and run CPU. `prefix`: a command that starts the worker (e.g. py-spy record ... --)."""
    cwd = code_root or ROOT
    command, _, extra_env = JOBS[job]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        child = subprocess.Popen([*(prefix or []), *worker_command(command)], env={**worker_env(info, code_root),
                                                                                    **extra_env}, cwd=cwd,
                                 stdout=out, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if child.returncode not in (0, 1):
        raise RuntimeError(f"ghl-bridge {job} failed ({child.returncode}): {stderr[-3000:]}")
    figures = [line for line in stderr.splitlines() if line.startswith(_FIGURES)]
    inner = json.loads(figures[-1][len(_FIGURES):]) if figures else {}
    return {"wall": wall, "process_cpu": usage.ru_utime + usage.ru_stime, "system_cpu": usage.ru_stime,
            "run_cpu": inner.get("run_cpu"),
            "shared": inner.get("shared"), "result": _first_json(stdout)}


def _first_json(text: str) -> dict:
    """The worker's JSON answer (a wrapper such as py-spy may print more after it)."""
    start = text.find("{")
    return json.JSONDecoder().raw_decode(text[start:])[0] if start >= 0 else {}


def window_floor(requests_per_location: int) -> float:
    return (math.ceil(requests_per_location / BURST) - 1) * WINDOW_MS / 1000 + LATENCY_MS / 1000


def measure_cpu_per_request(info: dict, job: str, *, locations: int = 5, per_location: int = 110,
                            code_root: Path | None = None, recording_bytes: int = 65536,
                            prefix: list[str] | None = None) -> dict:
    """Seed `locations` fresh locations for `job` (sync: prospects; enrich: calls), run the worker once over them
    (code from `code_root`, None: this tree), take them out of later runs, and return the figures:
    {job, code, locations, per_location, requests, process_cpu, system_cpu, run_cpu, ms_per_request, run_ms_per_request,
    wall, floor, wall_over_floor, rate_limited, contract_violations, done, shared}."""
    with psycopg.connect(info["database_url"], autocommit=True, row_factory=dict_row) as db, \
            SandboxAdmin(info["ghl_sandbox_url"]) as admin:
        if job == "sync":
            ids = seed_sync(db, admin, locations, per_location)
        elif job in JOBS:
            ids = seed_enrich(db, admin, locations, per_location, recording_bytes)
        else:
            raise ValueError(f"job must be one of {', '.join(JOBS)}, not {job!r}")
        try:
            run = run_worker(job, info, code_root, prefix)
        finally:
            deactivate(db, ids)
        stats = [admin.stats(location) for location in ids]
        per_location_requests = [sum(s["requests"].values()) for s in stats]
        if job == "sync":
            done = db.execute("SELECT count(*) AS n FROM sales_prospects WHERE ghl_location_id = ANY(%s)"
                              " AND ghl_synced_at IS NOT NULL", (ids,)).fetchone()["n"]
        else:
            done = sum(s.get("done", 0) for s in run["result"].get("locations", []))
    requests = sum(per_location_requests)
    floor = window_floor(max(per_location_requests))
    return {
        "job": job, "code": "this tree" if code_root is None else str(code_root), "shared": run["shared"],
        "locations": locations, "per_location": per_location, "requests": requests,
        "process_cpu": run["process_cpu"], "system_cpu": run["system_cpu"], "run_cpu": run["run_cpu"],
        "ms_per_request": 1000 * run["process_cpu"] / max(requests, 1),
        "run_ms_per_request": 1000 * run["run_cpu"] / max(requests, 1) if run["run_cpu"] is not None else None,
        "wall": run["wall"], "floor": floor, "wall_over_floor": run["wall"] / floor,
        "rate_limited": sum(s["rate_limited_sent"] for s in stats),
        "contract_violations": sum(s["contract_violations"] for s in stats), "done": done,
        "expected": locations * per_location,
    }


def describe(figures: dict, label: str) -> str:
    run_part = (f", run CPU {figures['run_cpu']:.2f} s = {figures['run_ms_per_request']:.2f} ms/request"
                if figures["run_cpu"] is not None else "")
    return (f"{label:<7} {figures['job']:<6}: {figures['locations']} loc x {figures['per_location']} | "
            f"{figures['requests']} GHL requests | process CPU {figures['process_cpu']:.2f} s = "
            f"{figures['ms_per_request']:.2f} ms/request (system {figures['system_cpu']:.2f} s){run_part} | wall {figures['wall']:.2f} s = "
            f"{figures['wall_over_floor']:.2f} x the window floor ({figures['floor']:.2f} s) | done "
            f"{figures['done']}/{figures['expected']} | 429s {figures['rate_limited']} | contract violations "
            f"{figures['contract_violations']}")


def median_figures(runs: list[dict]) -> dict:
    """The figures of several runs of one (job, size, code): the median of every number."""
    merged = dict(runs[0])
    for key, value in runs[0].items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            merged[key] = statistics.median(run[key] for run in runs)
    return merged


def marginal_ms(small: dict, large: dict) -> float:
    """CPU per request of the requests the larger run added: what scales, start-up and one-off costs left out."""
    return 1000 * (large["process_cpu"] - small["process_cpu"]) / max(large["requests"] - small["requests"], 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--locations", default="5,20",
                        help="location counts to run (comma-separated); the first is the headline, the difference "
                             "between the first and the last gives the marginal CPU per request")
    parser.add_argument("--prospects", type=int, default=110, help="prospects per location (sync)")
    parser.add_argument("--calls", type=int, default=55, help="calls per location (enrich: 2 requests per call; "
                        "enrich-transcripts: twice as many calls, 1 request each)")
    parser.add_argument("--recording-bytes", type=int, default=65536, help="size of every recording (enrich)")
    parser.add_argument("--jobs", default="sync,enrich,enrich-transcripts", help=", ".join(JOBS))
    parser.add_argument("--before", default=BASELINE_REV, help="the git revision measured as 'before'")
    parser.add_argument("--rounds", type=int, default=1,
                        help="runs of each (job, size, code), before and after alternating; medians are compared")
    args = parser.parse_args()
    jobs = [job.strip() for job in args.jobs.split(",") if job.strip()]
    sizes = [int(n) for n in args.locations.split(",") if n.strip()]

    temp = Path(tempfile.mkdtemp(prefix="bench-cpu-"))
    before_root = export_code(args.before, temp / "before")
    # compiled like the installed tree, so "before" pays no byte-compiling that "after" does not
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(before_root / "shared"),
                    str(before_root / "ghl_bridge")], check=True)
    stack, info = start_stack(temp / "stack")
    runs: dict[tuple[str, str, int], list[dict]] = {}
    try:
        print(f"sandbox at {info['ghl_sandbox_url']}: {BURST} requests / {WINDOW_MS / 1000:g} s per location, "
              f"{LATENCY_MS} ms latency; before = {args.before} (git archive in {before_root}), after = {ROOT}; "
              f"{os.cpu_count()} cores (shared)", flush=True)
        for job in jobs:
            per_location = args.prospects if job == "sync" else args.calls * 2 // JOBS[job][1]
            for size in sizes:
                for _ in range(args.rounds):
                    for label, code_root in (("before", before_root), ("after", None)):
                        figures = measure_cpu_per_request(info, job, locations=size, per_location=per_location,
                                                          code_root=code_root, recording_bytes=args.recording_bytes)
                        runs.setdefault((job, label, size), []).append(figures)
                        print(describe(figures, label), f"[shared from {figures['shared']}]", flush=True)
        results = {key: median_figures(values) for key, values in runs.items()}
        print()
        print(f"== CPU per GHL request (process CPU / GHL requests; target <= {TARGET_MS} ms; median of "
              f"{args.rounds} run(s) each; load average at the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} "
              "cores) ==")
        for job in jobs:
            extra = f", recordings of {args.recording_bytes} bytes" if job == "enrich" else ""
            for size in sizes:
                before, after = results[(job, "before", size)], results[(job, "after", size)]
                verdict = "MET" if after["ms_per_request"] <= TARGET_MS else "MISSED"
                print(f"{job:<6} {size:>3} locations{extra}: {before['ms_per_request']:.2f} ms -> "
                      f"{after['ms_per_request']:.2f} ms ({before['ms_per_request'] / after['ms_per_request']:.1f}x "
                      f"less) -> target {verdict}; without start-up {before['run_ms_per_request']:.2f} -> "
                      f"{after['run_ms_per_request']:.2f} ms; wall/window floor {before['wall_over_floor']:.2f} x -> "
                      f"{after['wall_over_floor']:.2f} x")
            if len(sizes) > 1:
                small, large = sizes[0], sizes[-1]
                b = marginal_ms(results[(job, "before", small)], results[(job, "before", large)])
                a = marginal_ms(results[(job, "after", small)], results[(job, "after", large)])
                verdict = "MET" if a <= TARGET_MS else "MISSED"
                print(f"{job:<6} marginal ({small} -> {large} locations: the CPU the added requests cost): "
                      f"{b:.2f} ms -> {a:.2f} ms per request -> target {verdict}")
    finally:
        stack.down()
    shutil.rmtree(temp, ignore_errors=True)


if __name__ == "__main__":
    main()
