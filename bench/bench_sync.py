"""Benchmark: sync-prospects-to-ghl against the GHL sandbox, next to the replaced system's approach.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/bench_sync.py [--quick]

Starts a local stack of its own (its own database, PostgREST, gateway, every function, the GHL sandbox on
free ports), creates 3 sandbox locations at 100 requests / 10 s each with 150 ms latency and a custom field
mapping, inserts 1,000 prospects across them (334/333/333), and then, one after the other, nothing else
running:

1. ours: one POST to the sync-prospects-to-ghl function over HTTP (all 3 locations in parallel);
   wall time = the HTTP request, so it includes claims, result writes and the integration updates.
2. the replaced system's approach (baseline), on a 4th location with the same limits and latency and as
   many prospects as one of the 3: one upsert at a time with a fixed 200 ms sleep after each, a
   PostgREST write-back per prospect. The replaced system pushed every prospect that way one after the
   other, so its time for all 1,000 is computed from this measured location (printed as such).

Floors, for the requests a location sent (its upserts plus the custom-field listing): the window floor,
10 s x (ceil(N / 100) - 1) + one round trip (GHL's limit is a window: a fresh window's 100 may go at
once), 30.15 s for 334 upserts + 1; target at most 1.1 x that floor. The even-rate floor (N / 10 per s)
is printed too, for comparison with earlier figures.

--quick: 3 x 110 prospects; the baseline runs 40 prospects and is extrapolated per prospect (printed).
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import httpx
import psycopg
from psycopg.rows import dict_row

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ghl_bridge.sandbox.admin import SandboxAdmin  # noqa: E402
from ghl_bridge.stack.stack import Stack, StackConfig  # noqa: E402
from shared.domain.contact_mapping import plan_contact_upsert, resolve_custom_field_mapping  # noqa: E402

BURST = 100
WINDOW_MS = 10_000
LATENCY_MS = 150
BASELINE_SLEEP = 0.2
SCHEDULER_SECRET = "bench-scheduler-" + uuid.uuid4().hex
CUSTOM_FIELDS = [{"id": "cf_company_name", "name": "Company Name"}, {"id": "cf_title", "name": "Job Title"},
                 {"id": "cf_linkedin", "name": "LinkedIn URL"}]
MAPPING = {"company_name": "cf_company_name", "contact_title": "cf_title", "linkedin_url": "cf_linkedin"}


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def insert_prospects(db, location_id: str, count: int, area: int) -> None:
    tag = uuid.uuid4().hex[:8]
    rows = [(f"First{i}", f"Last{i}", f"Firm {i}", f"{tag}.{i}@example.com", f"({area}) 55{i // 10000 % 10}-{i % 10000:04d}",
             "Head of Sales", f"https://linkedin.com/in/{tag}-{i}", ["portal"], location_id) for i in range(count)]
    with db.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO sales_prospects (first_name, last_name, company_name, email, phone, contact_title,"
            " linkedin_url, tags, ghl_location_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)", rows)


def add_location(admin: SandboxAdmin, db, count: int, area: int):
    location = admin.create_location(burst_limit=BURST, burst_window_ms=WINDOW_MS, latency_ms=LATENCY_MS,
                                     custom_fields=CUSTOM_FIELDS)
    db.execute("INSERT INTO ghl_integrations (location_id, api_token, custom_field_mapping) VALUES (%s, %s, %s)",
               (location.id, location.token, psycopg.types.json.Jsonb(MAPPING)))
    insert_prospects(db, location.id, count, area)
    return location


def run_ours(info: dict) -> tuple[float, list[dict]]:
    started = time.perf_counter()
    response = httpx.post(info["functions"]["sync-prospects-to-ghl"], json={},
                          headers={"Authorization": f"Bearer {SCHEDULER_SECRET}"}, timeout=900)
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return elapsed, response.json()["locations"]


def run_baseline(info: dict, db, location, count: int) -> tuple[float, int]:
    """The replaced system: never-synced prospects, one upsert at a time, 200 ms sleep after each, no retry."""
    from supabase import create_client

    portal = create_client(info["supabase_url"], info["service_role_key"])
    mapping = resolve_custom_field_mapping(MAPPING, None)
    rows = db.execute("SELECT * FROM sales_prospects WHERE ghl_location_id = %s AND ghl_contact_id IS NULL"
                      " ORDER BY email LIMIT %s", (location.id, count)).fetchall()
    failed = 0
    started = time.perf_counter()
    with httpx.Client(base_url=location.base_url, timeout=30,
                      headers={"Authorization": f"Bearer {location.token}", "Version": "2021-07-28"}) as ghl:
        for row in rows:
            body = plan_contact_upsert(row, location_id=location.id, mapping=mapping).body
            response = ghl.post("/contacts/upsert", json=body)
            if response.status_code == 200 or response.status_code == 201:
                contact_id = response.json()["contact"]["id"]
                portal.table("sales_prospects").update(
                    {"ghl_contact_id": contact_id, "ghl_synced_at": datetime.now(timezone.utc).isoformat()}).eq("id", str(row["id"])).execute()
            else:
                failed += 1
            time.sleep(BASELINE_SLEEP)
    return time.perf_counter() - started, failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 x 110 prospects; baseline on 40, extrapolated")
    args = parser.parse_args()
    total = 330 if args.quick else 1000
    per_location = split(total, 3)
    baseline_measured = 40 if args.quick else per_location[0]

    state = Path(tempfile.mkdtemp(prefix="bench-sync-"))
    config = StackConfig(state_dir=state, server_url=os.environ.get("DATABASE_URL") or None,
                         database_name=f"bench_{uuid.uuid4().hex[:10]}", fixed_ports=False,
                         drop_database_on_down=True,
                         function_env={"SCHEDULER_SECRET": SCHEDULER_SECRET, "LOG_LEVEL": "WARNING"})
    stack = Stack(config)
    print(f"starting a local stack in {state} ...", flush=True)
    info = stack.up()
    try:
        with psycopg.connect(info["database_url"], autocommit=True, row_factory=dict_row) as db, \
                SandboxAdmin(info["ghl_sandbox_url"]) as admin:
            locations = [add_location(admin, db, n, 300 + i) for i, n in enumerate(per_location)]
            print(f"{total} prospects across {len(locations)} locations ({'/'.join(map(str, per_location))}); "
                  f"sandbox: {BURST} requests / {WINDOW_MS / 1000:g} s per location, {LATENCY_MS} ms latency",
                  flush=True)

            elapsed, summaries = run_ours(info)
            stats = [admin.stats(loc.id) for loc in locations]
            pushed = sum(s["pushed"] for s in summaries)
            failed = sum(s["failed"] for s in summaries)
            not_synced = db.execute("SELECT count(*) AS n FROM sales_prospects WHERE ghl_location_id = ANY(%s)"
                                    " AND (ghl_contact_id IS NULL OR ghl_synced_at <> content_updated_at)",
                                    ([loc.id for loc in locations],)).fetchone()["n"]
            duplicates = sum(sum(v - 1 for v in s["upserts_per_contact"].values()) for s in stats)
            contacts = sum(len(s["upserts_per_contact"]) for s in stats)
            rate = BURST / (WINDOW_MS / 1000)
            floor = max(per_location) / rate
            sent = max(sum(s["requests"].values()) for s in stats)
            burst_floor = (math.ceil(sent / BURST) - 1) * WINDOW_MS / 1000 + LATENCY_MS / 1000

            baseline_location = add_location(admin, db, baseline_measured, 390)
            print(f"ours done in {elapsed:.1f} s; running the baseline on {baseline_measured} prospects "
                  f"(about {baseline_measured * (BASELINE_SLEEP + LATENCY_MS / 1000):.0f} s) ...", flush=True)
            base_elapsed, base_failed = run_baseline(info, db, baseline_location, baseline_measured)
            per_prospect = base_elapsed / baseline_measured
            base_location_time = per_prospect * max(per_location)
            base_total_time = per_prospect * total
            base_stats = admin.stats(baseline_location.id)

            print()
            print("== sync-prospects-to-ghl benchmark ==")
            print(f"ours      : {total} prospects, 3 locations in parallel, one POST to the function: "
                  f"wall {elapsed:.2f} s")
            for summary in summaries:
                print(f"            {summary['location_id']}: due {summary['due']}, pushed {summary['pushed']} "
                      f"(created {summary['created']}, updated {summary['updated']}), failed {summary['failed']}, "
                      f"{summary['seconds']:.2f} s, status {summary['status']}")
            print(f"floor     : window floor for the {sent} requests of the busiest location: {burst_floor:.2f} s "
                  f"(target <= 1.1 x = {1.1 * burst_floor:.2f} s); even-rate floor {max(per_location)} / {rate:g} "
                  f"per s = {floor:.2f} s")
            verdict = "MET" if elapsed <= 1.1 * burst_floor else "MISSED"
            slowest = max(s["seconds"] for s in summaries)
            print(f"ratio     : wall {elapsed / burst_floor:.3f} x the window floor -> target {verdict}; slowest "
                  f"location's own time {slowest / burst_floor:.3f} x; wall {elapsed / floor:.3f} x the even-rate "
                  f"floor")
            print(f"checks    : pushed {pushed}/{total}, failed {failed}, not synced after the run {not_synced}, "
                  f"GHL contacts {contacts}, duplicate upserts {duplicates}, "
                  f"429s {sum(s['rate_limited_sent'] for s in stats)}, "
                  f"contract violations {sum(s['contract_violations'] for s in stats)}")
            print(f"baseline  : one request at a time + {BASELINE_SLEEP * 1000:.0f} ms sleep, measured on "
                  f"{baseline_measured} prospects of one location: {base_elapsed:.2f} s "
                  f"({per_prospect * 1000:.0f} ms per prospect, failed {base_failed}, "
                  f"429s {base_stats['rate_limited_sent']})")
            label = "measured" if baseline_measured == max(per_location) else (
                f"EXTRAPOLATED from the {baseline_measured} measured")
            print(f"            one location of {max(per_location)}: {base_location_time:.1f} s ({label}); "
                  f"all {total} one after the other as it ran: {base_total_time:.1f} s (EXTRAPOLATED: "
                  f"{per_prospect * 1000:.0f} ms x {total})")
            print(f"speed-up  : {base_location_time / elapsed:.1f} x against one location of the baseline, "
                  f"{base_total_time / elapsed:.1f} x against the baseline's whole run")
    finally:
        stack.down()
    shutil.rmtree(state, ignore_errors=True)  # kept (with its logs) only when the run failed


if __name__ == "__main__":
    main()
