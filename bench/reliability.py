#!/usr/bin/env python
"""Reliability figures: fault injection against a stack of its own, at full size; prints them and writes
RELIABILITY.md (a script, not a timed test; tests/reliability holds the small versions).

    .venv/bin/python bench/reliability.py [--calls 2000] [--senders 8] [--prospects 1000] [--contacts 20000]
                                          [--quick] [--no-write]

Starts a local stack on an EMBEDDED Postgres in a temporary folder (free ports; the machine's shared server is
never touched, whatever DATABASE_URL says), with PostgREST, the gateway, every function, moto's S3 (the
webhook spool) and the GHL sandbox. Then, one after the other:

1. webhook storm, PostgREST stopped: N calls x 2 hits (Call Completed + Disposition, shuffled) from 8 senders
   that never retry; PostgREST is stopped once a quarter of the answers are in, kept down >= 2 s, started
   again; then the spool is replayed. Baseline: the same storm (same calls, other ids) without a fault, just
   before. Compared row by row: every call one complete row, equal to the baseline's.
2. the same with Postgres (embedded) stopped and started (PostgREST reconnects by itself).
3. sync of P prospects during GHL 429 storms and 5xx (sandbox faults: the next 300 requests 429 whatever the
   budget, then 10% of requests a 502), runs repeated until nothing is due: zero lost, zero duplicates
   (sandbox upserts per contact). Baseline: the same sync without faults on another location.
4. an import worker (a subprocess running the import process service) SIGKILLed while its chunk's transaction
   is open, in two ways: through PostgREST mid-SQL, and after the chunk's statement before its commit; the next
   run finishes the batch: counters equal the staged rows' states. Baseline: the same batch size processed
   without a kill.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import psycopg  # noqa: E402
from psycopg.rows import dict_row  # noqa: E402

from ghl_bridge.sandbox.admin import SandboxAdmin  # noqa: E402
from ghl_bridge.stack.stack import Stack, StackConfig  # noqa: E402
from tests.reliability.harness import (  # noqa: E402
    Outage, batch_counts, call_rows, counters_true, differences, event_counts, kill_worker_mid_chunk,
    new_internal_location, replay, send_storm, stage_contacts_batch, storm_bodies, wait_for_no_chunk_running,
    wait_until_serving,
)

WEBHOOK_SECRET = "reliability-webhook-" + uuid.uuid4().hex
SCHEDULER_SECRET = "reliability-scheduler-" + uuid.uuid4().hex


def connect(info) -> psycopg.Connection:
    return psycopg.connect(info["database_url"], autocommit=True, row_factory=dict_row)


def say(line: str = "") -> None:
    print(line, flush=True)


# ---- 1, 2: webhook storms with an outage -------------------------------------------------------------------

def storm_scenario(stack: Stack, info: dict, service: str, calls: int, senders: int) -> dict:
    url = info["functions"]["ghl-call-webhook"]
    baseline_prefix, fault_prefix = f"base{uuid.uuid4().hex[:6]}", f"fault{uuid.uuid4().hex[:6]}"
    with connect(info) as db:
        baseline_location = new_internal_location(db, baseline_prefix)
        fault_location = new_internal_location(db, fault_prefix)
    baseline = send_storm(url, WEBHOOK_SECRET, storm_bodies(calls, baseline_prefix, baseline_location), senders=senders)
    outage = Outage(stack, service, start_after=0.25, down_seconds=2.0, min_failures=50)
    storm = send_storm(url, WEBHOOK_SECRET, storm_bodies(calls, fault_prefix, fault_location), senders=senders,
                       outage=outage)
    recovered = wait_until_serving(info)
    started = time.monotonic()
    report = replay(info)
    replay_seconds = time.monotonic() - started
    with connect(info) as db:
        expected, got = call_rows(db, baseline_prefix), call_rows(db, fault_prefix)
        events = event_counts(db, fault_location)
    diff = differences(expected, got, limit=5)
    lost = len(set(expected) - set(got))
    return {"service": service, "calls": calls, "hits": 2 * calls, "senders": senders,
            "baseline_seconds": baseline.seconds, "baseline_statuses": dict(baseline.statuses),
            "storm_seconds": storm.seconds, "statuses": dict(storm.statuses), "spooled": storm.spooled,
            "outage": outage.events, "serving_again_after_storm_s": recovered,
            "replay": report.to_dict(), "replay_seconds": replay_seconds,
            "rows_expected": len(expected), "rows": len(got), "lost": lost,
            "rows_equal_to_baseline": not diff, "differences": diff, "events": events}


def print_storm(result: dict) -> list[str]:
    lines = [
        f"### {result['calls']:,} calls x 2 hits, {result['senders']} senders, {result['service']} stopped mid-storm",
        "",
        "| | baseline (no fault) | with the fault |",
        "|---|---|---|",
        f"| storm wall time | {result['baseline_seconds']:.1f} s | {result['storm_seconds']:.1f} s |",
        f"| answers | {_statuses(result['baseline_statuses'])} | {_statuses(result['statuses'])} |",
        f"| 503s that said `spooled: true` | - | {result['spooled']:,} |",
        f"| outage (from the stop) | - | {_outage(result['outage'])} |",
        f"| replay | - | {result['replay']['replayed']:,} replayed "
        f"({_statuses(result['replay']['outcomes'])}), {result['replay']['rejected']} rejected, "
        f"{result['replay']['kept']} kept, in {result['replay_seconds']:.1f} s |",
        f"| call rows | {result['rows_expected']:,} | {result['rows']:,} |",
        f"| calls lost | 0 | **{result['lost']}** |",
        f"| rows equal to the baseline's, column by column | - | **{'yes' if result['rows_equal_to_baseline'] else 'NO'}** |",
        f"| event log rows (of which from the spool) | {result['hits']:,} expected at least | "
        f"{result['events']['total']:,} ({result['events'].get('from_spool', 0):,}) |",
        "",
    ]
    if result["differences"]:
        lines += ["Differences:", ""] + [f"    {d}" for d in result["differences"]] + [""]
    return lines


def _statuses(counts: dict) -> str:
    return ", ".join(f"{count:,} x {status}" for status, count in sorted(counts.items(), key=lambda kv: str(kv[0])))


def _outage(events: list) -> str:
    return ", ".join(f"{what} at {seconds:.2f} s" for what, seconds in events)


# ---- 3: sync during 429 storms and 5xx -------------------------------------------------------------------

def insert_prospects(db, location_id: str, count: int) -> None:
    tag = uuid.uuid4().hex[:8]
    area = 200 + int(tag[:4], 16) % 700
    rows = [(f"First{i}", f"Last{i}", f"Firm {i}", f"{tag}.{i}@example.com",
             f"({area}) 55{i // 10000 % 10}-{i % 10000:04d}", location_id) for i in range(count)]
    with db.cursor() as cursor:
        cursor.executemany("INSERT INTO sales_prospects (first_name, last_name, company_name, email, phone,"
                           " ghl_location_id) VALUES (%s, %s, %s, %s, %s, %s)", rows)


def sync_runs(info: dict, location_id: str, db, max_runs: int = 10) -> tuple[list[dict], float]:
    summaries, started = [], time.monotonic()
    for _ in range(max_runs):
        response = httpx.post(info["functions"]["sync-prospects-to-ghl"], json={"location_id": location_id},
                              headers={"Authorization": f"Bearer {SCHEDULER_SECRET}"}, timeout=900)
        response.raise_for_status()
        [summary] = response.json()["locations"]
        summaries.append(summary)
        if summary["due"] == 0:
            break
        # a prospect the client gave up on waits out a backoff: end it, so the next run takes it at once
        db.execute("UPDATE sales_prospects SET ghl_sync_next_attempt_at = NULL WHERE ghl_location_id = %s",
                   (location_id,))
    return summaries, time.monotonic() - started


def sync_scenario(info: dict, admin: SandboxAdmin, prospects: int) -> dict:
    results = {}
    for name, faults in (("baseline", None),
                         ("faults", {"rate_limit_count": 300, "retry_after_seconds": 0.5, "error_rate": 0.1,
                                     "error_status": 502})):
        location = admin.create_location(burst_limit=100, burst_window_ms=1000)
        with connect(info) as db:
            db.execute("INSERT INTO ghl_integrations (location_id, api_token) VALUES (%s, %s)",
                       (location.id, location.token))
            insert_prospects(db, location.id, prospects)
            if faults:
                admin.set_faults(location.id, **faults)
            summaries, seconds = sync_runs(info, location.id, db)
            rows = db.execute("SELECT ghl_contact_id, ghl_sync_error FROM sales_prospects WHERE ghl_location_id = %s",
                              (location.id,)).fetchall()
        stats = admin.stats(location.id)
        contacts = admin.contacts(location.id)
        per_contact = stats["upserts_per_contact"]
        results[name] = {
            "seconds": seconds, "runs": len(summaries), "pushed": sum(s["pushed"] for s in summaries),
            "failed_attempts": sum(s["failed"] for s in summaries),
            "injected_429": stats["injected"].get("rate_limit", 0), "injected_5xx": stats["injected"].get("error", 0),
            "requests": sum(stats["requests"].values()), "contacts": len(contacts),
            "linked": sum(1 for r in rows if r["ghl_contact_id"]),
            "distinct_linked": len({r["ghl_contact_id"] for r in rows if r["ghl_contact_id"]}),
            "lost": prospects - sum(1 for r in rows if r["ghl_contact_id"]),
            "duplicate_contacts": len(contacts) - len({c.get("email") for c in contacts}),
            "max_upserts_per_contact": max(per_contact.values()) if per_contact else 0,
            "contract_violations": stats["contract_violations"]}
    return {"prospects": prospects, **results}


def print_sync(result: dict) -> list[str]:
    b, f = result["baseline"], result["faults"]
    return [
        f"### Sync of {result['prospects']:,} prospects during GHL 429 storms and 5xx",
        "",
        "Sandbox location: 100 requests per 1 s window (shortened from GHL's 100 / 10 s to keep the run short).",
        "Faults: the next 300 requests answered 429 whatever the budget (Retry-After 0.5 s), then 10% of",
        "requests a 502. Runs repeated until nothing is due (a prospect whose retries ran out waits for the next run).",
        "",
        "| | baseline (no fault) | with the faults |",
        "|---|---|---|",
        f"| wall time (all runs) | {b['seconds']:.1f} s | {f['seconds']:.1f} s |",
        f"| runs | {b['runs']} | {f['runs']} |",
        f"| injected 429s / 5xx | {b['injected_429']} / {b['injected_5xx']} | {f['injected_429']} / {f['injected_5xx']} |",
        f"| GHL requests | {b['requests']:,} | {f['requests']:,} |",
        f"| prospects pushed | {b['pushed']:,} | {f['pushed']:,} |",
        f"| GHL contacts | {b['contacts']:,} | {f['contacts']:,} |",
        f"| prospects lost (no contact id) | {b['lost']} | **{f['lost']}** |",
        f"| duplicate contacts | {b['duplicate_contacts']} | **{f['duplicate_contacts']}** |",
        f"| most upserts of one contact | {b['max_upserts_per_contact']} | {f['max_upserts_per_contact']} |",
        f"| GHL contract violations | {b['contract_violations']} | {f['contract_violations']} |",
        "",
    ]


# ---- 4: an import worker SIGKILLed mid-chunk ------------------------------------------------------------------

def import_scenario(info: dict, contacts: int) -> dict:
    from shared.adapters.import_repository import ImportRepository
    from shared.adapters.supabase_db import create_service_client
    from shared.config import Settings
    from shared.services.import_batches import advance_batch, ghl_client_factory

    settings = Settings(supabase_url=info["supabase_url"], supabase_service_role_key=info["service_role_key"],
                        import_chunk_size=500)
    repo = ImportRepository(create_service_client(info["supabase_url"], info["service_role_key"], timeout=120))
    results = {}
    for mode in ("baseline", "service", "open_transaction"):
        with connect(info) as db:
            location = f"kill-{uuid.uuid4().hex[:8]}"
            db.execute("INSERT INTO ghl_integrations (location_id, api_token) VALUES (%s, %s)",
                       (location, "kill-token-" + uuid.uuid4().hex))
            batch_id = stage_contacts_batch(db, location, contacts)
            killed = None
            if mode != "baseline":
                killed = kill_worker_mid_chunk(info, db, batch_id, mode, chunk=contacts // 2, root=ROOT)
                wait_for_no_chunk_running(db)
            after_kill = batch_counts(db, batch_id)
            started = time.monotonic()
            advance_batch(repo, ghl_client_factory(settings), settings, batch_id, deadline=time.monotonic() + 600)
            seconds = time.monotonic() - started
            final = batch_counts(db, batch_id)
            linked = db.execute("SELECT count(*) AS n, count(DISTINCT ghl_contact_id) AS d FROM sales_prospects "
                                "WHERE ghl_contact_id IN (SELECT external_id FROM ghl_import_staging WHERE batch_id = %s)",
                                (batch_id,)).fetchone()
        results[mode] = {"killed": killed, "after_kill": dict(after_kill), "after_kill_true": counters_true(after_kill),
                         "next_run_seconds": seconds, "final": dict(final), "final_true": counters_true(final),
                         "linked": linked["n"], "linked_distinct": linked["d"]}
    return {"contacts": contacts, **results}


def print_import(result: dict) -> list[str]:
    lines = [f"### An import worker killed with SIGKILL mid-chunk ({result['contacts']:,} staged contacts, half matching "
             "a prospect)", "",
             "| | baseline (no kill) | killed mid-SQL through PostgREST | killed with its transaction open |",
             "|---|---|---|---|"]
    modes = ("baseline", "service", "open_transaction")
    rows = {
        "killed while": lambda r: r["killed"]["killed_while"] if r["killed"] else "-",
        "processed / staged right after the kill": lambda r: f"{r['after_kill']['processed_records']:,} / "
                                                            f"{r['after_kill']['staged']:,}",
        "counters true right after the kill": lambda r: "yes" if r["after_kill_true"] else "NO",
        "next run": lambda r: f"{r['next_run_seconds']:.1f} s, batch {r['final']['status']}",
        "processed / errors / open at the end": lambda r: f"{r['final']['processed_records']:,} / "
                                                         f"{r['final']['error_count']} / {r['final']['open']}",
        "counters true at the end": lambda r: "**yes**" if r["final_true"] else "**NO**",
        "prospects linked (distinct)": lambda r: f"{r['linked']:,} ({r['linked_distinct']:,})",
    }
    for label, cell in rows.items():
        lines.append(f"| {label} | " + " | ".join(cell(result[m]) for m in modes) + " |")
    return lines + [""]


# ---- main ----------------------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument("--prospects", type=int, default=1000)
    parser.add_argument("--contacts", type=int, default=20000)
    parser.add_argument("--quick", action="store_true", help="200 calls, 200 prospects, 4,000 contacts")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RELIABILITY.md alone")
    args = parser.parse_args()
    if args.quick:
        args.calls, args.prospects, args.contacts = 200, 200, 4000

    state = Path(tempfile.mkdtemp(prefix="ghl-bridge-reliability-"))
    stack = Stack(StackConfig(state_dir=state, server_url=None, database_name=f"r_{uuid.uuid4().hex[:8]}",
                              fixed_ports=False, function_env={"GHL_WEBHOOK_SECRET": WEBHOOK_SECRET,
                                                               "SCHEDULER_SECRET": SCHEDULER_SECRET,
                                                               "LOG_LEVEL": "WARNING",
                                                               "DATABASE_TIMEOUT_SECONDS": "5"}))
    started = time.monotonic()
    say(f"starting a stack on an embedded Postgres in {state} ...")
    info = stack.up()
    failed = False
    try:
        sections = []
        for service in ("postgrest", "postgres"):
            say(f"webhook storm, {service} stopped mid-storm ...")
            result = storm_scenario(stack, info, service, args.calls, args.senders)
            failed |= result["lost"] > 0 or not result["rows_equal_to_baseline"]
            sections += print_storm(result)
            say("\n".join(print_storm(result)))
        say("sync during 429 storms and 5xx ...")
        with SandboxAdmin(info["ghl_sandbox_url"]) as admin:
            sync = sync_scenario(info, admin, args.prospects)
        failed |= sync["faults"]["lost"] > 0 or sync["faults"]["duplicate_contacts"] > 0
        sections += print_sync(sync)
        say("\n".join(print_sync(sync)))
        say("import worker killed mid-chunk ...")
        imports = import_scenario(info, args.contacts)
        failed |= not all(imports[m]["final_true"] for m in ("service", "open_transaction"))
        sections += print_import(imports)
        say("\n".join(print_import(imports)))
    finally:
        stack.down()
    total = time.monotonic() - started
    command = ".venv/bin/python bench/reliability.py" + (" --quick" if args.quick else "")
    header = [f"Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by `{command}` in {total:.0f} s on "
              f"{platform.machine()}, {_cores()} cores, Python {platform.python_version()} (a machine shared with "
              "other work: times are noisy; counts are exact).", ""]
    say("\n".join(header))
    if not args.no_write:
        write_reliability(header + sections)
        say("RELIABILITY.md written")
    return 1 if failed else 0


def _cores() -> int:
    import os

    return os.cpu_count() or 0


FIGURES_START = "<!-- figures: written by bench/reliability.py -->"
FIGURES_END = "<!-- end of figures -->"


def write_reliability(lines: list[str]) -> None:
    """Replace the figures section of RELIABILITY.md (the prose around it is kept)."""
    path = ROOT / "RELIABILITY.md"
    text = path.read_text()
    before, _, rest = text.partition(FIGURES_START)
    _, _, after = rest.partition(FIGURES_END)
    path.write_text(before + FIGURES_START + "\n\n" + "\n".join(lines) + "\n" + FIGURES_END + after)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except subprocess.CalledProcessError as exc:
        print(f"reliability: {exc}", file=sys.stderr)
        sys.exit(2)
