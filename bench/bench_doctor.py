"""Benchmark: `ghl-bridge doctor` on a big database: wall time, round trips per check group, and the plan of every
query it makes (index use), next to the same SQL without the doctor's indexes measured in the same run.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/bench_doctor.py \
        [--calls 100000] [--prospects 50000] [--locations 20]

Starts a local stack of its own (own database, PostgREST, gateway, GHL sandbox on free ports), then:

1. data (bulk SQL): LOCATIONS integrations (3 of 4 internal, 1 of 4 client), each a sandbox location with its
   token; PROSPECTS prospects over the internal locations (1 % due for over an hour, 1 % failed, 0.5 % skipped);
   CALLS calls spread over the last 30 days (most with both hits and a chosen disposition, some with one hit,
   some with an unmapped label), two webhook events per call (1 % rejected), a few import batches per location
   (completed, failed, one stuck). ANALYZE.
2. ours: the doctor service (shared/services/doctor.py) through PostgREST, as the CLI and the health action run
   it: without GHL requests (the health default; median of 5) and with them (the token, budget and custom field
   checks, one GHL request per location). Round trips counted per check group. Target: under 2 s, at most one
   round trip per check group per location.
3. plans: every statement the doctor's SQL functions run, for one location, EXPLAINed by auto_explain
   (nested statements): the scans they use, and none a sequential scan of a big table.
4. baseline: the same SQL functions called directly (psycopg, all locations), with the doctor's indexes and
   then with them dropped (in a transaction rolled back afterwards), to show what the indexes buy.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
from psycopg.rows import dict_row

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BIG_TABLES = ("sales_calls", "calls", "ghl_webhook_events", "sales_prospects")
DOCTOR_INDEXES = ("ghl_webhook_events_location_received_idx", "sales_calls_unsettled_idx", "calls_unsettled_idx",
                  "sales_prospects_sync_error_idx", "ghl_webhook_events_problems_idx", "sales_prospects_unsynced_idx",
                  "sales_calls_enrichment_unavailable_idx", "calls_enrichment_unavailable_idx",
                  "sales_calls_enrichment_due_idx", "calls_enrichment_due_idx",
                  "sales_calls_analysis_due_idx", "calls_analysis_due_idx", "sales_calls_analysis_ended_idx",
                  "calls_analysis_ended_idx")
FACT_FUNCTIONS = ("doctor_webhook_facts", "doctor_sync_facts", "doctor_import_facts", "doctor_enrichment_facts",
                  "doctor_analysis_facts")


class CountingRepo:
    """DoctorRepository, counting round trips per SQL function."""

    def __init__(self, repo):
        self._repo = repo
        self.per_function: dict[str, int] = {}

    @property
    def round_trips(self) -> int:
        return self._repo.round_trips

    def _count(self, name: str) -> None:
        self.per_function[name] = self.per_function.get(name, 0) + 1

    def locations(self, location_id=None):
        self._count("doctor_locations")
        return self._repo.locations(location_id)

    def group_facts(self, function, location_ids):
        self._count(function)
        return self._repo.group_facts(function, location_ids)

    def unattributed_webhook_facts(self):
        self._count("doctor_unattributed_webhook_facts")
        return self._repo.unattributed_webhook_facts()


def seed(conn, admin, n_locations: int, n_prospects: int, n_calls: int) -> tuple[list[str], list[str]]:
    """Integrations, prospects, calls, events and batches, in bulk. Returns (internal, client) location ids."""
    internal, client = [], []
    for i in range(n_locations):
        location = admin.create_location(burst_limit=1000, burst_window_ms=1000, daily_limit=200_000,
                                         custom_fields=[{"id": f"cf_company_{i}", "name": "Company"}])
        if i % 4 == 3:
            client_id = conn.execute("INSERT INTO clients (name) VALUES (%s) RETURNING id",
                                     (f"Client {i}",)).fetchone()["id"]
            conn.execute("INSERT INTO ghl_integrations (location_id, api_token, name, integration_type, client_id, "
                         "disposition_mapping) VALUES (%s, %s, %s, 'client', %s, '{\"Interested\": \"Future "
                         "Potential\"}')", (location.id, location.token, f"Bench {i}", client_id))
            client.append(location.id)
        else:
            conn.execute("INSERT INTO ghl_integrations (location_id, api_token, name, integration_type, "
                         "custom_field_mapping, disposition_mapping, last_synced_at, last_sync_status) VALUES "
                         "(%s, %s, %s, 'internal', %s, '{\"Interested\": \"Future Potential\"}', now(), 'success')",
                         (location.id, location.token, f"Bench {i}",
                          psycopg.types.json.Jsonb({"company_name": f"cf_company_{i}"})))
            internal.append(location.id)

    # Prospects over the internal locations: most synced; 1 % due for over an hour, 1 % failed, 0.5 % skipped.
    conn.execute("""
        INSERT INTO sales_prospects (first_name, email, phone, ghl_location_id, ghl_contact_id, ghl_synced_at,
                                     content_updated_at, ghl_sync_error, ghl_sync_attempts, ghl_sync_next_attempt_at,
                                     ghl_sync_skipped_content_at)
        SELECT 'P' || g, 'p' || g || '@bench.example', '+1555' || lpad(g::text, 7, '0'), loc[1 + g %% cardinality(loc)],
               CASE WHEN g %% 100 <> 0 THEN 'gc' || g END,
               CASE WHEN g %% 100 <> 0 THEN t END, t,
               CASE WHEN g %% 100 = 1 THEN 'GHL answered 422: phone is invalid'
                    WHEN g %% 200 = 2 THEN 'no email and no phone: GHL cannot match this prospect' END,
               CASE WHEN g %% 100 = 1 THEN 2 ELSE 0 END,
               CASE WHEN g %% 100 = 1 THEN now() + interval '10 minutes' END,
               CASE WHEN g %% 200 = 2 THEN t END
        FROM generate_series(1, %s) g, LATERAL (SELECT now() - make_interval(hours => 2 + g %% 500) AS t) x,
             (SELECT %s::text[] AS loc) l
    """, (n_prospects, internal))

    # Calls over the last 30 days, both tables by the location's kind. Mix: 85 % both hits with a chosen
    # disposition; 5 % only the Call Completed hit; 3 % only the Disposition hit (no status); 4 % an unmapped
    # label (inferred); 3 % imported (no disposition).
    for table, locations, extra_cols, extra_vals in (
            ("sales_calls", internal, "", ""),
            ("calls", client, ", client_id", ", (SELECT client_id FROM ghl_integrations WHERE location_id = loc)")):
        share = len(locations) / n_locations
        conn.execute(f"""
            INSERT INTO {table} (external_call_id, ghl_location_id, call_status, connected, duration_seconds,
                                 disposition, disposition_source, disposition_label, raw_payload, created_at
                                 {extra_cols})
            SELECT '{table}-' || g, loc,
                   CASE WHEN k BETWEEN 90 AND 92 THEN NULL ELSE 'answered' END,
                   CASE WHEN k BETWEEN 90 AND 92 THEN NULL ELSE true END, 60,
                   CASE WHEN k < 85 OR k BETWEEN 90 AND 92 THEN 'Callback Requested'
                        WHEN k BETWEEN 93 AND 96 THEN 'Meeting Booked' END,
                   CASE WHEN k < 85 OR k BETWEEN 90 AND 92 THEN 'chosen'
                        WHEN k BETWEEN 93 AND 96 THEN 'inferred' END,
                   CASE WHEN k < 85 OR k BETWEEN 90 AND 92 THEN 'Callback Requested'
                        WHEN k BETWEEN 93 AND 96 THEN 'Label ' || (g %% 7) END,
                   jsonb_build_object('hits', CASE
                     WHEN k >= 97 THEN jsonb_build_object('import:' || g, jsonb_build_object('id', g))
                     WHEN k BETWEEN 85 AND 92 THEN jsonb_build_object('webhook:a' || g, jsonb_build_object('callId', g))
                     ELSE jsonb_build_object('webhook:a' || g, jsonb_build_object('callId', g, 'callStatus', 'Answered'),
                                             'webhook:b' || g, jsonb_build_object('callId', g, 'disposition', 'x'))
                   END),
                   now() - make_interval(secs => (g * 7919) %% (30 * 86400))
                   {extra_vals}
            FROM generate_series(1, %s) g, LATERAL (SELECT g %% 100 AS k, (%s::text[])[1 + g %% %s] AS loc) x
        """, (round(n_calls * share), locations, len(locations)))

    # Two webhook events per call (1 % rejected), in received order.
    conn.execute("""
        INSERT INTO ghl_webhook_events (received_at, location_id, call_id, payload, outcome, error)
        SELECT c.created_at + make_interval(secs => h), c.ghl_location_id, c.external_call_id, '{}'::jsonb,
               CASE WHEN h = 1 AND hashtext(c.external_call_id) % 100 = 0 THEN 'rejected'
                    WHEN h = 0 THEN 'inserted' ELSE 'updated' END,
               CASE WHEN h = 1 AND hashtext(c.external_call_id) % 100 = 0 THEN 'field ''duration'' must be a number' END
        FROM (SELECT external_call_id, ghl_location_id, created_at FROM sales_calls
              UNION ALL SELECT external_call_id, ghl_location_id, created_at FROM calls) c, generate_series(0, 1) h
        ORDER BY 1
    """)
    # Import batches: 5 completed, 1 failed per location; one stuck batch in the first location.
    conn.execute("""
        INSERT INTO ghl_import_batches (location_id, status, total_records, processed_records, error_count,
                                        completed_at, created_at, failure_reason)
        SELECT loc, CASE WHEN b = 5 THEN 'failed' ELSE 'completed' END, 1000, 1000, 0, now() - make_interval(days => b),
               now() - make_interval(days => b), CASE WHEN b = 5 THEN 'GHL answered 401: Invalid JWT' END
        FROM unnest(%s::text[]) loc, generate_series(0, 5) b
    """, (internal + client,))
    conn.execute("INSERT INTO ghl_import_batches (location_id, status, created_at) VALUES (%s, 'processing', "
                 "now() - interval '3 hours')", (internal[0],))
    for table in ("sales_prospects", "sales_calls", "calls", "ghl_webhook_events", "ghl_import_batches",
                  "ghl_integrations"):
        conn.execute(f"VACUUM ANALYZE {table}")
    return internal, client


def scans(plan_text: str) -> list[str]:
    """The scan nodes of a plan: 'Index Scan using x on t', 'Seq Scan on t', ..."""
    return re.findall(r"((?:Parallel )?(?:Seq Scan|Index Only Scan|Index Scan|Bitmap Heap Scan|Bitmap Index Scan)"
                      r"(?: Backward)?(?: using \S+)? on \S+)", plan_text)


def explain_nested(conn, sql: str, params: tuple) -> list[tuple[str, str]]:
    """(statement, plan) of every statement `sql` runs inside its functions (auto_explain to notices)."""
    notices: list[str] = []
    conn.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
    conn.execute("LOAD 'auto_explain'")
    for setting in ("auto_explain.log_min_duration = 0", "auto_explain.log_nested_statements = on",
                    "auto_explain.log_level = notice", "auto_explain.log_analyze = off",
                    "client_min_messages = notice"):
        conn.execute(f"SET {setting}")
    try:
        conn.execute(sql, params).fetchall()
    finally:
        conn.execute("SET auto_explain.log_min_duration = -1")
    found = []
    for message in notices:
        match = re.match(r"duration: [\d.]+ ms\s+plan:\s*Query Text: (.*?)\n(.*)", message, re.S)
        if match:
            found.append((" ".join(match.group(1).split())[:110] or "(the function's own SQL)", match.group(2)))
    return found


def ghl_baseline(ghl_url: str, database_url: str) -> float:
    """The doctor's GHL requests (GET /locations/{id}; GET .../customFields where a custom_field_mapping is set)
    sent as bare httpx calls, all at once on one pool: the floor of the GHL part on this machine and sandbox."""
    import asyncio

    import httpx

    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT location_id, api_token, custom_field_mapping IS NOT NULL "
                            "FROM ghl_integrations").fetchall()

    async def go() -> float:
        async with httpx.AsyncClient(timeout=30) as http:
            began = time.perf_counter()
            requests = []
            for location, token, mapped in rows:
                headers = {"Authorization": f"Bearer {token}", "Version": "2021-07-28"}
                requests.append(http.get(f"{ghl_url}/locations/{location}", headers=headers))
                if mapped:
                    requests.append(http.get(f"{ghl_url}/locations/{location}/customFields", headers=headers,
                                             params={"model": "contact"}))
            answers = await asyncio.gather(*requests)
            assert all(a.status_code == 200 for a in answers), [a.status_code for a in answers]
            return time.perf_counter() - began

    asyncio.run(go())  # warm
    return statistics.median(asyncio.run(go()) for _ in range(3))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--prospects", type=int, default=50_000)
    parser.add_argument("--locations", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    from ghl_bridge.sandbox.admin import SandboxAdmin
    from ghl_bridge.stack.stack import Stack, StackConfig
    from shared.adapters.doctor_repository import DoctorRepository
    from shared.adapters.supabase_db import create_service_client
    from shared.config import Settings
    from shared.services import doctor

    state = Path(tempfile.mkdtemp(prefix="bench-doctor-"))
    stack = Stack(StackConfig(state_dir=state, server_url=os.environ.get("DATABASE_URL") or None,
                              database_name=f"bench_{uuid.uuid4().hex[:10]}", fixed_ports=False,
                              drop_database_on_down=True, function_env={"LOG_LEVEL": "WARNING"}))
    info = stack.up()
    try:
        conn = psycopg.connect(info["database_url"], autocommit=True, row_factory=dict_row)
        started = time.perf_counter()
        with SandboxAdmin(info["ghl_sandbox_url"]) as admin:
            internal, client = seed(conn, admin, args.locations, args.prospects, args.calls)
        counts = conn.execute("SELECT (SELECT count(*) FROM sales_calls) + (SELECT count(*) FROM calls) AS calls, "
                              "(SELECT count(*) FROM sales_prospects) AS prospects, "
                              "(SELECT count(*) FROM ghl_webhook_events) AS events, "
                              "(SELECT count(*) FROM ghl_integrations) AS locations").fetchone()
        print(f"data: {counts['calls']:,} calls, {counts['prospects']:,} prospects, {counts['events']:,} webhook "
              f"events, {counts['locations']} locations ({len(internal)} internal, {len(client)} client); "
              f"seeded in {time.perf_counter() - started:.1f} s")

        settings = Settings(supabase_url=info["supabase_url"], supabase_service_role_key=info["service_role_key"],
                            ghl_api_base_url=info["ghl_sandbox_url"])
        client_db = create_service_client(info["supabase_url"], info["service_role_key"], timeout=60)

        def run(check_ghl: bool):
            repo = CountingRepo(DoctorRepository(client_db))
            began = time.perf_counter()
            report = doctor.run_doctor(repo, check_ghl=check_ghl, ghl_factory=doctor.doctor_ghl_factory(settings),
                                       ghl_reserve=settings.ghl_daily_budget_reserve, check_spool=False)
            return time.perf_counter() - began, report, repo

        run(False)  # warm: connections, plans
        times = []
        for _ in range(args.repeat):
            seconds, report, repo = run(False)
            times.append(seconds)
        statuses = {s: sum(loc.status == s for loc in report.locations) for s in ("OK", "WARN", "FAIL")}
        print(f"\ndoctor without GHL requests (the health default), {len(report.locations)} locations, "
              f"{args.repeat} runs: median {statistics.median(times):.3f} s (min {min(times):.3f}, "
              f"max {max(times):.3f}); locations {statuses}; overall {report.status}")
        print(f"  round trips: {repo.round_trips} in all; per function {repo.per_function} "
              f"(each for all {len(report.locations)} locations at once)")
        run(True)  # warm: the sandbox loads GHL's OpenAPI file of the family on its first request (about 2 s)
        ghl_times = []
        for _ in range(max(2, args.repeat // 2)):
            seconds, report, repo = run(True)
            ghl_times.append(seconds)
        seconds = statistics.median(ghl_times)
        print(f"doctor with GHL requests, {len(ghl_times)} runs: median {seconds:.3f} s (max {max(ghl_times):.3f}), "
              f"{report.ghl_requests} GHL requests "
              f"({report.ghl_requests / max(len(report.locations), 1):.1f} per location), "
              f"{repo.round_trips} database round trips")
        ghl_floor = ghl_baseline(info["ghl_sandbox_url"], info["database_url"])
        print(f"  baseline: the same {report.ghl_requests} GHL requests as bare httpx calls, all at once, one pool: "
              f"{ghl_floor:.3f} s (the sandbox validates each request and answer against GHL's OpenAPI files)")
        worst = max(times)
        print(f"target under 2 s: {'met' if worst < 2 and seconds < 2 else 'NOT met'} "
              f"(slowest run without GHL {worst:.3f} s, median with GHL {seconds:.3f} s); at most one round trip per "
              f"check group per location: {'met' if max(repo.per_function.values()) <= 1 else 'NOT met'}")

        # Plans of every statement, for one internal and one client location.
        print("\nplans (auto_explain of each statement inside the doctor's functions):")
        seq_big = []
        with psycopg.connect(info["database_url"], autocommit=True) as plain:
            for sql, params in (
                    ("SELECT * FROM doctor_locations(NULL)", ()),
                    ("SELECT doctor_webhook_facts(%s)", ([internal[0], client[0]],)),
                    ("SELECT doctor_sync_facts(%s)", ([internal[0]],)),
                    ("SELECT doctor_import_facts(%s)", ([internal[0]],)),
                    ("SELECT doctor_enrichment_facts(%s)", ([internal[0], client[0]],)),
                    ("SELECT doctor_analysis_facts(%s)", ([internal[0], client[0]],)),
                    ("SELECT doctor_unattributed_webhook_facts()", ())):
                print(f"  {sql % tuple(repr(p) for p in params) if params else sql}")
                for statement, plan in explain_nested(plain, sql, params):
                    used = scans(plan)
                    if not used:
                        continue
                    print(f"    {statement}")
                    for scan in used:
                        print(f"      {scan}")
                        if scan.startswith(("Seq Scan", "Parallel Seq Scan")) and scan.split()[-1] in BIG_TABLES:
                            seq_big.append((statement, scan))
        print(f"sequential scans of a big table ({', '.join(BIG_TABLES)}): {len(seq_big)}"
              + (" (ghl_integrations holds one row per location and ghl_import_batches a few per location: the "
                 "planner may scan them whole while they are small)" if not seq_big else f": {seq_big}"))

        # Baseline: the SQL functions directly, with and without the doctor's indexes (rolled back).
        ids = internal + client

        per_function: dict[str, list[float]] = {}

        def direct(tx) -> float:
            began = time.perf_counter()
            tx.execute("SELECT * FROM doctor_locations(NULL)").fetchall()
            for function in FACT_FUNCTIONS:
                one = time.perf_counter()
                tx.execute(f"SELECT {function}(%s)", (ids if function != "doctor_sync_facts" else internal,))
                per_function.setdefault(function, []).append(time.perf_counter() - one)
            tx.execute("SELECT doctor_unattributed_webhook_facts()")
            return time.perf_counter() - began

        with psycopg.connect(info["database_url"]) as tx:
            direct(tx)
            with_indexes = statistics.median(direct(tx) for _ in range(3))
            split = {f: round(statistics.median(t) * 1000) for f, t in per_function.items()}
            for index in DOCTOR_INDEXES:
                tx.execute(f"DROP INDEX {index}")
            without = statistics.median(direct(tx) for _ in range(3))
            tx.rollback()
        print(f"\nbaseline, the same SQL functions over psycopg (no PostgREST), all locations: with the doctor's "
              f"indexes {with_indexes * 1000:.0f} ms, without them {without * 1000:.0f} ms "
              f"({without / with_indexes:.1f}x); through the service and PostgREST: "
              f"{statistics.median(times) * 1000:.0f} ms; with indexes, per function (ms, all locations): {split}")
    finally:
        stack.down()


if __name__ == "__main__":
    main()
