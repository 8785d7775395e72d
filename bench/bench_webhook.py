#!/usr/bin/env python
"""Benchmark of ghl-call-webhook through a local stack's function URL (a script, not a timed test).

Fires N calls x 2 hits (Call Completed + Disposition, shuffled) with concurrent senders through
SUPABASE_URL/functions/v1/ghl-call-webhook and prints webhooks/s, p50/p99 latency, database round trips
per webhook, and, measured in the same run against the same stack, the p50 of a bare supabase-py rpc round
trip (a trivial SQL function).

The floor: the same number of hits of the same shapes sent to the reference handler
(bench/reference_webhook/main.py: read the body, json.loads, the same `ingest_call_event` rpc through the
same supabase client, answer; nothing else), served by the stack exactly like the webhook (functions-framework,
same threads, same gateway route). Side by side: webhooks/s, p50/p99 and the CPU seconds per 1,000 webhooks
of each function's process (its gunicorn arbiter and worker: user + system time from /proc). The two are
measured in alternating rounds, so a busy machine's noise falls on both.

Round trips: the function's own count (db_round_trips in its one summary log line per request: every rpc
goes through one counting wrapper), summed over the run's requests (matched by X-Request-Id). An
independent count from pg_stat_database was tried and dropped: PostgREST's pooled backends publish their
transaction counters only at their next transaction, so a window's count leaks into the next one.

Usage: .venv/bin/python bench/bench_webhook.py [--calls 5000] [--senders 8] [--rounds 4]
Needs DATABASE_URL (a PostgreSQL server; the bench creates and drops a database of its own) or runs an
embedded PostgreSQL in a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
import psycopg  # noqa: E402

from ghl_bridge.stack.stack import Stack, StackConfig  # noqa: E402
from shared.adapters.supabase_db import call_rpc, create_service_client  # noqa: E402

REFERENCE = "reference-webhook"
REFERENCE_FOLDER = Path(__file__).resolve().parent / "reference_webhook"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

DISPOSITIONS = ["No Answer", "Voicemail", "Gatekeeper", "Incorrect Number", "Not Interested",
                "Callback Requested", "Future Potential", "Meeting Booked", "Do Not Contact"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def cpu_seconds(pid: int) -> float:
    """user + system CPU seconds of a process and its descendants (gunicorn's arbiter and its worker)."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended meanwhile
        proc = int(stat.parent.name)
        parents[proc] = int(fields[1])
        times[proc] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        children = [proc for proc, ppid in parents.items() if ppid == parent and proc not in tree]
        tree.update(children)
        frontier.extend(children)
    return sum(times.get(proc, 0.0) for proc in tree)


class Measured:
    """One function's figures, summed over the rounds."""

    def __init__(self):
        self.latencies: list[float] = []
        self.seconds = self.cpu = 0.0

    def add(self, pid: int, hits: list, senders: int, sender) -> None:
        cpu_before = cpu_seconds(pid)
        latencies, seconds = run_concurrently(hits, senders, sender)
        self.cpu += cpu_seconds(pid) - cpu_before
        self.latencies += latencies
        self.seconds += seconds

    def row(self, label: str) -> str:
        count = len(self.latencies)
        return (f"  {label:<22} {count / self.seconds:>10.0f} {statistics.median(self.latencies):>9.2f} "
                f"{percentile(self.latencies, 99):>9.2f} {self.cpu / count * 1000:>14.3f}")


def make_hits(calls: int, location: str, run: str, rng: random.Random) -> list[dict]:
    start = datetime(2026, 2, 12, 15, 0, tzinfo=timezone.utc)
    hits = []
    for n in range(calls):
        call_id = f"{run}_{n}"
        digits = f"555{2000000 + n:07d}"
        hits.append({"callId": call_id, "locationId": location, "contactId": f"cnt_{run}_{n}", "direction": "outbound",
                     "from": "+15551234567", "to": f"({digits[:3]}) {digits[3:6]}-{digits[6:]}",
                     "callStatus": rng.choice(["Answered", "No answer", "Busy", "completed", "Voicemail"]),
                     "duration": rng.randint(0, 900), "callStartTime": (start + timedelta(seconds=n)).isoformat()})
        hits.append({"customData": {"call_id": call_id, "disposition": rng.choice(DISPOSITIONS),
                                    "notes": f"note {n}", "transcription": "Agent: hello ... Prospect: ..."},
                     "location": {"id": location}, "source": "disposition_workflow"})
    rng.shuffle(hits)
    return hits


def run_concurrently(items: list, senders: int, work) -> tuple[list[float], float]:
    """work(client, item) per item by `senders` threads, each with its own keep-alive client."""
    local = threading.local()
    clients = []

    def timed(item) -> float:
        if not hasattr(local, "client"):
            local.client = work.new_client()
            clients.append(local.client)
        began = time.perf_counter()
        work(local.client, item)
        return (time.perf_counter() - began) * 1000

    began = time.perf_counter()
    with ThreadPoolExecutor(max_workers=senders) as pool:
        latencies = list(pool.map(timed, items))
    return latencies, time.perf_counter() - began


class WebhookSender:
    def __init__(self, url: str, secret: str, run: str):
        self.url, self.secret, self.run = url, secret, run
        self.phase = "warmup"  # part of each X-Request-Id, so the log lines of one phase can be picked out
        self.failures = 0

    def new_client(self):
        return httpx.Client(timeout=30)

    def __call__(self, client, body: dict) -> None:
        response = client.post(self.url, content=json.dumps(body), headers={
            "X-Webhook-Secret": self.secret, "Content-Type": "application/json",
            "X-Request-Id": f"{self.run}-{self.phase}-{uuid.uuid4().hex[:12]}"})
        if response.status_code != 200:
            self.failures += 1
            if self.failures <= 3:
                print(f"  unexpected {response.status_code}: {response.text[:200]}", file=sys.stderr)


class BareRpc:
    def __init__(self, supabase_url: str, key: str):
        self.supabase_url, self.key = supabase_url, key

    def new_client(self):
        return create_service_client(self.supabase_url, self.key)

    def __call__(self, client, n: int) -> None:
        call_rpc(client, "normalize_email", {"raw": f"Bench{n}@Example.com"})


def function_round_trips(log_dir: Path, request_id_prefix: str) -> tuple[int, int]:
    """(summary lines whose request id has this prefix, their db_round_trips summed) from the function's log."""
    lines = trips = 0
    for path in log_dir.glob("*ghl-call-webhook*.log"):
        for line in path.read_text(errors="replace").splitlines():
            if f'"request_id": "{request_id_prefix}' in line and '"webhook handled"' in line:
                lines += 1
                trips += json.loads(line)["db_round_trips"]
    return lines, trips


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=5000, help="calls (each sends 2 webhooks); default 5000")
    parser.add_argument("--senders", type=int, default=8, help="concurrent senders; default 8")
    parser.add_argument("--baseline-requests", type=int, default=4000, help="bare rpc calls; default 4000")
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds of webhook / reference; default 4")
    args = parser.parse_args()

    run = "bench" + uuid.uuid4().hex[:8]
    secret = "bench-secret-" + uuid.uuid4().hex
    state_dir = Path(tempfile.mkdtemp(prefix="bench-webhook-"))
    stack = Stack(StackConfig(state_dir=state_dir, server_url=os.environ.get("DATABASE_URL") or None,
                              database_name=f"b_{uuid.uuid4().hex[:12]}", fixed_ports=False,
                              drop_database_on_down=True,
                              function_env={"GHL_WEBHOOK_SECRET": secret, "LOG_LEVEL": "INFO"},
                              extra_functions={REFERENCE: REFERENCE_FOLDER}))
    print(f"starting a local stack in {state_dir} ...", flush=True)
    info = stack.up()
    try:
        url = info["functions"]["ghl-call-webhook"]
        webhook_pid = stack.services["function:ghl-call-webhook"].pid
        reference_pid = stack.services[f"function:{REFERENCE}"].pid
        location = f"loc_{run}"
        with psycopg.connect(info["database_url"], autocommit=True) as conn:
            conn.execute("INSERT INTO ghl_integrations (location_id, api_token, integration_type) "
                         "VALUES (%s, 'token', 'internal')", (location,))
            # Half the calls find their prospect by phone (the matching path runs), half stay unmatched.
            conn.execute("INSERT INTO sales_prospects (first_name, phone) SELECT 'P' || n, '555' || lpad((2000000 + n)::text, 7, '0') "
                         "FROM generate_series(0, %s - 1, 2) AS n", (args.calls,))
            conn.execute("ANALYZE")

        rng = random.Random(20261126)
        hits = make_hits(args.calls, location, run, rng)
        reference_hits = make_hits(args.calls, location, run + "r", rng)
        sender, bare = WebhookSender(url, secret, run), BareRpc(info["supabase_url"], info["service_role_key"])
        reference = WebhookSender(info["functions"][REFERENCE], secret, run + "r")

        # Warm-up (connections, PostgREST's schema cache, plan caches): neither counted nor timed.
        warm = make_hits(100, location, run + "w", rng)
        run_concurrently(warm, args.senders, sender)
        run_concurrently(make_hits(100, location, run + "rw", rng), args.senders, reference)
        run_concurrently(list(range(200)), args.senders, bare)

        rpc_latencies, rpc_seconds = run_concurrently(list(range(args.baseline_requests)), args.senders, bare)
        rpc_single, _ = run_concurrently(list(range(1000)), 1, bare)
        sender.phase = "main"
        real, floor = Measured(), Measured()
        size = -(-len(hits) // args.rounds)
        for n in range(args.rounds):
            part = slice(n * size, (n + 1) * size)
            order = [(real, webhook_pid, hits[part], sender), (floor, reference_pid, reference_hits[part], reference)]
            for measured, pid, items, target in (order if n % 2 == 0 else order[::-1]):
                measured.add(pid, items, args.senders, target)
        latencies, seconds = real.latencies, real.seconds
        sender.phase = "single"
        single_hits = make_hits(250, location, run + "s", rng)
        single_latencies, _ = run_concurrently(single_hits, 1, sender)
        reference_single, _ = run_concurrently(make_hits(250, location, run + "rs", rng), 1, reference)
        with psycopg.connect(info["database_url"], autocommit=True) as stats:
            rows = stats.execute("SELECT count(*), count(*) FILTER (WHERE disposition_source = 'chosen' "
                                 "AND duration_seconds IS NOT NULL), count(prospect_id) FROM sales_calls "
                                 "WHERE external_call_id LIKE %s", (run + "\\_%",)).fetchone()
            reference_rows = stats.execute("SELECT count(*) FROM sales_calls WHERE external_call_id LIKE %s",
                                           (run + "r\\_%",)).fetchone()[0]
        time.sleep(1)  # the function's log lines are flushed per line; give the file a moment
        summary_lines, function_trips = function_round_trips(Path(stack.log_dir), f"{run}-main-")
        webhooks = len(hits)
        rpc_p50, rpc_p50_single = statistics.median(rpc_latencies), statistics.median(rpc_single)
        p50, p99 = statistics.median(latencies), percentile(latencies, 99)
        print()
        print(f"ghl-call-webhook: {args.calls} calls x 2 hits = {webhooks} webhooks, {args.senders} concurrent "
              f"senders, through {url.split('/functions')[0]}/functions/v1/ghl-call-webhook")
        print(f"  non-200 answers            {sender.failures}")
        print(f"  webhooks/s                 {webhooks / seconds:.0f}")
        print(f"  latency p50 / p99          {p50:.2f} ms / {p99:.2f} ms")
        print(f"  latency p50, 1 sender      {statistics.median(single_latencies):.2f} ms "
              f"({len(single_hits)} webhooks one after another)")
        print(f"  db round trips / webhook   {function_trips} / {webhooks} = {function_trips / webhooks:.3f} "
              f"(function's count, {summary_lines} summary lines)")
        print(f"  rows                       {rows[0]} calls, {rows[1]} with both hits merged, "
              f"{rows[2]} linked to a prospect (expected {args.calls}, {args.calls}, {(args.calls + 1) // 2})")
        print("baseline, same stack, same run: bare supabase-py rpc (SELECT normalize_email(...)) through the gateway")
        print(f"  rpc p50, {args.senders} concurrent          {rpc_p50:.2f} ms  ({args.baseline_requests / rpc_seconds:.0f} rpc/s)")
        print(f"  rpc p50, 1 sender           {rpc_p50_single:.2f} ms")
        print(f"webhook p50 / bare rpc p50: {p50 / rpc_p50:.2f}x with {args.senders} concurrent senders, "
              f"{statistics.median(single_latencies) / rpc_p50_single:.2f}x with 1 sender  (target <= 2x)")
        print(f"\nside by side, same stack, same run ({args.rounds} alternating rounds, {args.senders} concurrent senders; "
              f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f})")
        print(f"  {'':<22} {'webhooks/s':>10} {'p50 ms':>9} {'p99 ms':>9} {'CPU s / 1,000':>14}")
        print(real.row("ghl-call-webhook"))
        print(floor.row("reference handler"))
        ratio = lambda f: f(real) / f(floor)  # noqa: E731
        cpu_ratio = ratio(lambda m: m.cpu / len(m.latencies))
        p50_ratio = ratio(lambda m: statistics.median(m.latencies))
        print(f"  {'webhook / reference':<22} {ratio(lambda m: len(m.latencies) / m.seconds):>9.2f}x "
              f"{p50_ratio:>8.2f}x {ratio(lambda m: percentile(m.latencies, 99)):>8.2f}x {cpu_ratio:>13.2f}x")
        print(f"  p50 with 1 sender: webhook {statistics.median(single_latencies):.2f} ms, reference "
              f"{statistics.median(reference_single):.2f} ms")
        print(f"  reference: {reference.failures} non-200 answers, {reference_rows} call rows (expected {args.calls})")
        print(f"targets: CPU / 1,000 <= 1.25x the reference: {'met' if cpu_ratio <= 1.25 else 'NOT met'} "
              f"({cpu_ratio:.2f}x); p50 <= 1.25x: {'met' if p50_ratio <= 1.25 else 'NOT met'} ({p50_ratio:.2f}x)")
        ok = sender.failures == 0 and rows[0] == args.calls and reference.failures == 0
        return 0 if ok else 1
    finally:
        stack.down()


if __name__ == "__main__":
    sys.exit(main())
