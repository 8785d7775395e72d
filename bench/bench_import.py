"""Benchmark: the batch import (stage, match, process) and the memory of a pull, next to a floor measured in the
same run.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/bench_import.py [--records N]

Starts a local stack of its own (own database, PostgREST, gateway, GHL sandbox on free ports), then:

1. data: N/2 prospects; N records = N/2 GHL contacts (1/3 match a prospect by GHL id, 1/3 by phone, 1/3 by
   email, every 10th matches nobody) and N/2 call messages (TYPE_CALL, each for one of the contacts),
   normalised by the pull's own domain code (staged_call).
2. stage: the records through the `stage_import_page` rpc, 500 a page (what the pull does per GHL page).
3. floor: a copy of the staged batch, processed by bare SQL over psycopg in ONE transaction, no chunks, no
   claims, no PostgREST: (a) the matching alone (`match_import_rows` over every row at once, the same
   set-based statements), (b) the matching plus the same apply work (contacts set-based, one `upsert_call` per
   call), then rolled back so the real run sees the same database.
4. ours: `process_import_chunk` through PostgREST, 500 rows a chunk, until nothing is left.
   Target: processing <= 2x floor (b) (the same work; floor (a) is printed too).
5. pull memory: a child process pulls N contacts from a sandbox location (contacts search, 500 a page) into
   a batch and processes it, reporting tracemalloc's peak and the child's peak RSS. Target < 200 MB.

Round trips: database round trips (rpc calls) per 1,000 records, for staging and processing.

6. pull at the rate limit (--part pull-rate runs only this): L locations x (C contacts + M call messages),
   page 100, sandbox at 100 / 10 s per location and 150 ms latency, started the way the scheduler starts it
   (`process_open_batches`: one call advances every open batch), in a child process (peak RSS). The same
   data on L other locations pulled the previous way, in the same run: batches one after another, contacts
   before calls, each page staged before the next is fetched. Only the pull is timed (both runs skip the
   processing: it is the same work either way and measured in 4.). Floors per location, for the requests it
   sent: the window floor 10 s x (ceil(N / 100) - 1) + one round trip (a fresh window's 100 may go at once),
   and the chain floor: the longest cursor chain's pages x one round trip (a page's cursor comes with the
   page before). Target: wall <= 1.15 x the window floor. Each location is served by a sandbox process of
   its own (--rate-shared-sandbox: all by the stack's one), since GHL's servers are not this machine's CPU:
   one sandbox process validating every 100-record answer against the OpenAPI files for 6 streams at once
   becomes the bottleneck; the sandboxes' CPU seconds per request are printed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
from psycopg.rows import dict_row

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PAGE = 500
CHUNK = 500
RATE_PAGE = 100
RATE_BURST, RATE_WINDOW_MS, RATE_LATENCY_MS = 100, 10_000, 150


class CountingRepo:
    def __init__(self, repo):
        self._repo, self.calls = repo, 0

    def __getattr__(self, name):
        attr = getattr(self._repo, name)
        if not callable(attr):
            return attr

        def counted(*args, **kwargs):
            self.calls += 1
            return attr(*args, **kwargs)

        return counted


def make_records(n_contacts: int, n_calls: int, n_prospects: int, tag: str):
    from shared.domain.ghl_models import CallMessage
    from shared.domain.import_records import staged_call

    prospects, contacts = [], []
    for i in range(n_prospects):
        prospects.append((f"P{i}", f"+1555{i:07d}"[:12], f"p{i}.{tag}@bench.example",
                          f"g{tag}{i}" if i % 3 == 0 else None))
    for i in range(n_contacts):
        if i % 10 == 9 or i >= n_prospects:
            contact = {"id": f"x{tag}{i}", "phone": f"+1666{i:07d}"[:12], "email": f"x{i}.{tag}@bench.example"}
        elif i % 3 == 0:
            contact = {"id": f"g{tag}{i}"}
        elif i % 3 == 1:
            contact = {"id": f"h{tag}{i}", "phone": prospects[i][1]}
        else:
            contact = {"id": f"h{tag}{i}", "email": prospects[i][2].upper()}
        contact.update({"firstName": f"First{i}", "lastName": "Bench", "locationId": "bench", "tags": ["bench"]})
        contacts.append({"external_id": contact["id"], "raw_data": contact})
    calls = []
    statuses = ["completed", "answered", "no-answer", "busy", "voicemail", "failed"]
    for j in range(n_calls):
        status = statuses[j % len(statuses)]
        message = {"id": f"m{tag}{j}", "messageType": "TYPE_CALL", "type": 1, "direction": "outbound",
                   "status": "delivered", "contactId": contacts[j % n_contacts]["external_id"],
                   "dateAdded": "2026-02-12T15:04:05.000Z",
                   "meta": {"call": {"status": status, **({"duration": 60 + j % 300}
                                                           if status in ("completed", "answered") else {})}}}
        calls.append(staged_call(CallMessage.from_api(message)))
    return prospects, contacts, calls


def insert_prospects(conn, prospects) -> None:
    with conn.cursor() as cur, cur.copy(
            "COPY sales_prospects (first_name, phone, email, ghl_contact_id) FROM STDIN") as copy:
        for row in prospects:
            copy.write_row(row)


def peak_rss_kb() -> int:
    """VmHWM: this process's peak resident set. (ru_maxrss would not do: Linux carries it over fork + exec, so
    a child started by a parent holding 100,000 records would report the parent's peak.)"""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def pull_child(args) -> None:
    """Child process: pull N sandbox contacts into a batch and process it; print memory figures as JSON."""
    import tracemalloc

    from shared.adapters.import_repository import ImportRepository
    from shared.adapters.supabase_db import create_service_client
    from shared.config import Settings
    from shared.domain.import_records import PullRequest
    from shared.services.import_batches import ghl_client_factory, start_import

    settings = Settings(supabase_url=args.supabase_url, supabase_service_role_key=os.environ["SUPABASE_SERVICE_ROLE_KEY"],
                        ghl_api_base_url=args.sandbox_url, import_page_size=PAGE, import_chunk_size=CHUNK)
    repo = CountingRepo(ImportRepository(create_service_client(args.supabase_url, os.environ["SUPABASE_SERVICE_ROLE_KEY"], timeout=120)))
    rss_before = peak_rss_kb()
    tracemalloc.start()
    started = time.perf_counter()
    run = start_import(repo, ghl_client_factory(settings), settings,
                       PullRequest(location_id=args.location_id, kinds=("contacts",), since=None, created_by=None),
                       deadline=time.monotonic() + 3600)
    seconds = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(json.dumps({"seconds": seconds, "tracemalloc_peak": peak, "rss_before_kb": rss_before,
                      "rss_peak_kb": peak_rss_kb(), "pages": run.pages,
                      "staged": run.staged, "status": run.batch["status"], "rpcs": repo.calls}))


class PullOnly:
    """The real repository with processing left out (the pull benchmark times the pull alone); records when each
    batch's pull completed."""

    def __init__(self, repo):
        self._repo, self.calls, self.pull_done, self.stage_seconds = repo, 0, {}, 0.0

    def __getattr__(self, name):
        return getattr(self._repo, name)

    def stage_page(self, batch_id, *args, **kwargs):
        self.calls += 1
        started = time.perf_counter()
        result = self._repo.stage_page(batch_id, *args, **kwargs)
        self.stage_seconds += time.perf_counter() - started
        if result["batch"].get("pull_completed_at"):
            self.pull_done.setdefault(batch_id, time.perf_counter())
        return result

    def process_chunk(self, batch_id, limit, create_unmatched):
        return {"claimed": 0, "batch": self._repo.summary(batch_id)}


async def _previous_pull(repo, ghl_factory, settings, batch_id: str) -> None:
    """The pull as it was before overlap and parallel streams: kinds one after the other, each page staged before
    the next is fetched, the end of a list found by a short (or empty) page."""
    from shared.domain.import_records import staged_call, staged_contact

    context = repo.pull_context(batch_id)
    async with ghl_factory(context["location_id"], context["api_token"]) as ghl:
        for kind in context["kinds"]:
            state = None
            while not (state or {}).get("done"):
                if kind == "contacts":
                    page = await ghl.search_contacts(page_limit=RATE_PAGE, search_after=(state or {}).get("search_after"))
                    records = [staged_contact(contact) for contact in page.contacts]
                    next_state, done = {"search_after": page.next_search_after}, page.next_search_after is None
                else:
                    cursor = (state or {}).get("cursor")
                    page = await ghl.export_call_messages(cursor=cursor, limit=RATE_PAGE)
                    records = [staged_call(message) for message in page.messages]
                    done = page.next_cursor is None or page.next_cursor == cursor
                    next_state = {"cursor": page.next_cursor}
                state = repo.stage_page(batch_id, kind, records, state, next_state, done)["state"]


def pull_rate_child(args) -> None:
    """Child process: pull the given locations' batches (new: process_open_batches; previous: one after another)."""
    import asyncio

    from shared.adapters.import_repository import ImportRepository
    from shared.adapters.supabase_db import create_service_client
    from shared.config import Settings
    from shared.services.import_batches import ghl_client_factory, process_open_batches

    settings = Settings(supabase_url=args.supabase_url, supabase_service_role_key=os.environ["SUPABASE_SERVICE_ROLE_KEY"],
                        ghl_api_base_url=args.sandbox_url, import_page_size=RATE_PAGE, import_chunk_size=CHUNK)
    repo = PullOnly(ImportRepository(create_service_client(args.supabase_url, os.environ["SUPABASE_SERVICE_ROLE_KEY"], timeout=120)))
    urls = json.loads(args.sandbox_urls or "{}")

    def factory(location_id: str, token: str):  # the real client, at the location's own sandbox
        return ghl_client_factory(settings.model_copy(update={
            "ghl_api_base_url": urls.get(location_id, args.sandbox_url)}))(location_id, token)

    batch_ids = json.loads(args.batch_ids)
    started = time.perf_counter()
    if args.mode == "new":
        runs = process_open_batches(repo, factory, settings, deadline=time.monotonic() + 3600)
        warnings = [w for run in runs for w in run.warnings]
    else:
        for batch_id in batch_ids:
            asyncio.run(_previous_pull(repo, factory, settings, batch_id))
            repo.pull_done.setdefault(batch_id, time.perf_counter())
        warnings = []
    print(json.dumps({"pull_seconds": {b: repo.pull_done.get(b, float("nan")) - started for b in batch_ids},
                      "rss_peak_kb": peak_rss_kb(), "rpcs": repo.calls, "warnings": warnings,
                      "stage_ms": 1000 * repo.stage_seconds / max(1, repo.calls),
                      "cpu_seconds": time.process_time()}))


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_sandbox() -> tuple[subprocess.Popen, str]:
    """A GHL sandbox process of its own on a free port."""
    import socket

    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "ghl_bridge.sandbox", "--port", str(port)], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{url}/_sandbox/health", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError("a sandbox did not start")


def child_env(info) -> dict:
    """A child's environment: the service-role key goes there, never into its arguments (visible to ps)."""
    return {**os.environ, "SUPABASE_SERVICE_ROLE_KEY": info["service_role_key"]}


def window_floor(requests: int) -> float:
    return (math.ceil(requests / RATE_BURST) - 1) * RATE_WINDOW_MS / 1000 + RATE_LATENCY_MS / 1000


def pull_rate(info, admin, conn, args) -> None:
    """Section 6: the pull at the rate limit, new way and previous way in the same run."""
    from ghl_bridge.sandbox.admin import SandboxAdmin

    n_locations, n_contacts, n_messages = args.rate_locations, args.rate_contacts, args.rate_calls
    print(f"pull at the rate limit: {n_locations} locations x ({n_contacts:,} contacts + {n_messages:,} call messages), "
          f"page {RATE_PAGE}, sandbox {RATE_BURST} / {RATE_WINDOW_MS / 1000:g} s per location, "
          f"{RATE_LATENCY_MS} ms latency", flush=True)
    results = {}
    for mode in ("new", "previous"):
        locations, sandboxes, admins = [], [], []
        for _ in range(n_locations):
            if args.rate_shared_sandbox:
                own = admin
            else:
                process, url = start_sandbox()
                sandboxes.append(process)
                own = SandboxAdmin(url)
                admins.append(own)
            location = own.create_location(burst_limit=RATE_BURST, burst_window_ms=RATE_WINDOW_MS,
                                           daily_limit=10_000_000, latency_ms=RATE_LATENCY_MS)
            own.seed(location.id, contacts=n_contacts, calls=n_messages)
            conn.execute("INSERT INTO ghl_integrations (location_id, api_token, integration_type) VALUES (%s, %s, "
                         "'internal')", (location.id, location.token))
            locations.append(location)
        # Nothing else open: the scheduler's process advances exactly these.
        conn.execute("UPDATE ghl_import_batches SET status = 'completed' WHERE status IN ('pending', 'processing')")
        batch_ids = [str(conn.execute("SELECT (create_import_batch(%s, '{contacts,calls}', NULL, NULL)) ->> 'id' AS id",
                                      (location.id,)).fetchone()["id"]) for location in locations]
        cpu_before = [cpu_seconds(process.pid) for process in sandboxes]
        child = subprocess.run(
            [sys.executable, __file__, "--pull-rate-child", "--mode", mode,
             "--batch-ids", json.dumps(batch_ids), "--supabase-url", info["supabase_url"],
             "--sandbox-url", info["ghl_sandbox_url"], "--sandbox-urls",
             json.dumps({loc.id: loc.base_url for loc in locations})],
            env=child_env(info), capture_output=True, text=True, check=False)
        sandbox_cpu = [cpu_seconds(process.pid) - before for process, before in zip(sandboxes, cpu_before)]
        if child.returncode != 0:
            print(f"pull-rate child ({mode}) failed:\n" + child.stderr[-3000:])
            return
        figures = json.loads(child.stdout.strip().splitlines()[-1])
        per_location = []
        for index, (location, batch_id) in enumerate(zip(locations, batch_ids)):
            stats = (admins[index] if admins else admin).stats(location.id)
            batch = conn.execute("SELECT pull_state, total_records, warnings FROM ghl_import_batches WHERE id = %s",
                                 (batch_id,)).fetchone()
            requests = stats["requests_total"]
            seconds = figures["pull_seconds"][batch_id]
            chain = max((batch["pull_state"].get(kind) or {}).get("pages", 0) for kind in ("contacts", "calls"))
            per_location.append({"id": location.id, "requests": requests, "seconds": seconds,
                                 "429s": stats["rate_limited_sent"], "staged": batch["total_records"],
                                 "window_floor": window_floor(requests), "chain_floor": chain * RATE_LATENCY_MS / 1000,
                                 "warnings": batch["warnings"],
                                 "sandbox_cpu": sandbox_cpu[index] if sandbox_cpu else None})
        for process in sandboxes:
            process.kill()
            process.wait()
        for own in admins:
            own.close()
        results[mode] = {"wall": max(p["seconds"] for p in per_location), "locations": per_location,
                         "rss_mb": figures["rss_peak_kb"] / 1024, "rpcs": figures["rpcs"],
                         "stage_ms": figures["stage_ms"], "cpu": figures["cpu_seconds"]}

    new, previous = results["new"], results["previous"]
    for mode, label in (("new", "ours (scheduler's process, all at once)"),
                        ("previous", "previous way (one after another)")):
        result = results[mode]
        print(f"{label}: wall {result['wall']:.2f} s for the pull of {n_locations} locations; peak RSS "
              f"{result['rss_mb']:.0f} MB; {result['rpcs']} stage rpcs, {result['stage_ms']:.0f} ms each on average; "
              f"the pull process used {result['cpu']:.1f} s of CPU")
        for p in result["locations"]:
            rate = RATE_BURST / (RATE_WINDOW_MS / 1000)
            print(f"    {p['id']}: {p['requests']} requests, {p['429s']} 429s, {p['staged']:,} staged, pull done at "
                  f"{p['seconds']:.2f} s = {p['requests'] / p['seconds']:.1f} requests/s "
                  f"({100 * p['requests'] / p['seconds'] / rate:.0f} % of the {rate:g}/s budget); window floor "
                  f"{p['window_floor']:.2f} s, chain floor {p['chain_floor']:.2f} s"
                  + (f"; its sandbox used {p['sandbox_cpu']:.1f} s of CPU = "
                     f"{1000 * p['sandbox_cpu'] / p['requests']:.0f} ms per request" if p["sandbox_cpu"] else "")
                  + (f"; warnings {p['warnings']}" if p["warnings"] else ""))
    floor = max(p["window_floor"] for p in new["locations"])
    chain = max(max(p["chain_floor"], p["window_floor"]) for p in new["locations"])
    ratio = new["wall"] / floor
    print(f"floors: window {floor:.2f} s (the requests a location sent, 100 per window); the longest cursor chain "
          f"x {RATE_LATENCY_MS} ms with it: {chain:.2f} s")
    print(f"ratio: ours {ratio:.3f} x the window floor (target <= 1.15: {'MET' if ratio <= 1.15 else 'MISSED'}), "
          f"{new['wall'] / chain:.3f} x max(window, chain) floor; previous way {previous['wall'] / floor:.3f} x the "
          f"window floor; ours {previous['wall'] / new['wall']:.1f} x faster")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000, help="records to stage (half contacts, half calls)")
    parser.add_argument("--pull-contacts", type=int, default=None, help="sandbox contacts to pull (default: --records)")
    parser.add_argument("--part", choices=("all", "process", "pull-rate"), default="all",
                        help="process: sections 1-5; pull-rate: section 6 only")
    parser.add_argument("--rate-locations", type=int, default=3)
    parser.add_argument("--rate-contacts", type=int, default=20_000)
    parser.add_argument("--rate-calls", type=int, default=10_000, help="call messages (voicemail drops included)")
    parser.add_argument("--rate-shared-sandbox", action="store_true",
                        help="pull-rate: every location on the stack's one sandbox process")
    parser.add_argument("--sandbox-urls", help=argparse.SUPPRESS)
    parser.add_argument("--pull-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--pull-rate-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--batch-ids", help=argparse.SUPPRESS)
    parser.add_argument("--supabase-url", help=argparse.SUPPRESS)
    parser.add_argument("--sandbox-url", help=argparse.SUPPRESS)
    parser.add_argument("--location-id", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.pull_child:
        pull_child(args)
        return
    if args.pull_rate_child:
        pull_rate_child(args)
        return

    from ghl_bridge.sandbox.admin import SandboxAdmin
    from ghl_bridge.stack.stack import Stack, StackConfig
    from shared.adapters.import_repository import ImportRepository
    from shared.adapters.supabase_db import create_service_client

    n = args.records
    n_contacts, n_calls = n // 2, n - n // 2
    n_prospects = n_contacts
    pull_contacts = args.pull_contacts or n
    state = Path(tempfile.mkdtemp(prefix="bench-import-"))
    stack = Stack(StackConfig(state_dir=state, server_url=os.environ.get("DATABASE_URL") or None,
                              database_name=f"bench_{uuid.uuid4().hex[:10]}", fixed_ports=False,
                              drop_database_on_down=True, function_env={"LOG_LEVEL": "WARNING"}))
    info = stack.up()
    try:
        if args.part == "pull-rate":
            with SandboxAdmin(info["ghl_sandbox_url"]) as admin, psycopg.connect(
                    info["database_url"], autocommit=True, row_factory=dict_row) as conn:
                pull_rate(info, admin, conn, args)
            return
        print(f"records: {n:,} ({n_contacts:,} contacts, {n_calls:,} calls) against {n_prospects:,} prospects; "
              f"page {PAGE}, chunk {CHUNK}")
        admin = SandboxAdmin(info["ghl_sandbox_url"])
        location = admin.create_location(burst_limit=100_000, burst_window_ms=1000, daily_limit=10_000_000)
        conn = psycopg.connect(info["database_url"], autocommit=True, row_factory=dict_row)
        conn.execute("INSERT INTO ghl_integrations (location_id, api_token, integration_type) VALUES (%s, %s, "
                     "'internal')", (location.id, location.token))

        started = time.perf_counter()
        tag = uuid.uuid4().hex[:6]
        prospects, contacts, calls = make_records(n_contacts, n_calls, n_prospects, tag)
        insert_prospects(conn, prospects)
        conn.execute("ANALYZE sales_prospects")
        print(f"setup: {n_prospects:,} prospects inserted, records built in {time.perf_counter() - started:.1f} s")

        repo = CountingRepo(ImportRepository(create_service_client(info["supabase_url"], info["service_role_key"],
                                                                   timeout=300)))
        batch_id = repo.create_batch(location.id, ["contacts", "calls"], None, None)["id"]
        repo.calls = 0
        started = time.perf_counter()
        for kind, records in (("contacts", contacts), ("calls", calls)):
            state_before = None
            for offset in range(0, len(records), PAGE):
                done = offset + PAGE >= len(records)
                result = repo.stage_page(batch_id, kind, records[offset:offset + PAGE], state_before,
                                         {"cursor": str(offset + PAGE)}, done)
                state_before = result["state"]
        stage_seconds = time.perf_counter() - started
        stage_rpcs = repo.calls
        del contacts, calls
        conn.execute("ANALYZE ghl_import_staging")
        print(f"stage:   {n:,} records in {stage_seconds:.2f} s = {n / stage_seconds:,.0f} records/s; "
              f"{stage_rpcs} rpcs = {stage_rpcs / (n / 1000):.2f} round trips per 1,000 records")

        # Floor: the same rows in a second batch, processed by bare SQL in one transaction, rolled back.
        floor_batch = conn.execute(
            "INSERT INTO ghl_import_batches (location_id, status, kinds, pull_completed_at, total_records) "
            "VALUES (%s, 'processing', '{contacts,calls}', now(), %s) RETURNING id", (location.id, n)).fetchone()["id"]
        conn.execute(
            "INSERT INTO ghl_import_staging (batch_id, record_kind, external_id, raw_data, call_payload, "
            "ghl_contact_id, phone_e164, email_normalized) SELECT %s, record_kind, external_id, raw_data, "
            "call_payload, ghl_contact_id, phone_e164, email_normalized FROM ghl_import_staging "
            "WHERE batch_id = %s ORDER BY seq", (floor_batch, batch_id))
        conn.execute("ANALYZE ghl_import_staging")
        floor = {}
        with psycopg.connect(info["database_url"], row_factory=dict_row) as bare:
            ids = bare.execute("SELECT array_agg(id ORDER BY seq) AS ids FROM ghl_import_staging WHERE batch_id = %s",
                               (floor_batch,)).fetchone()["ids"]
            t0 = time.perf_counter()
            matched = bare.execute("SELECT match_import_rows(%s::uuid[], 'internal', NULL) AS n",
                                   (ids,)).fetchone()["n"]
            floor["match"] = time.perf_counter() - t0
            contact_ids = bare.execute("SELECT array_agg(id ORDER BY seq) AS ids FROM ghl_import_staging "
                                       "WHERE batch_id = %s AND record_kind = 'contact'", (floor_batch,)).fetchone()["ids"]
            bare.execute("SELECT import_apply_contacts(%s::uuid[], %s, 'internal', NULL, false)",
                         (contact_ids, location.id))
            bare.execute("SELECT count(upsert_call(call_payload || jsonb_build_object('location_id', %s::text, "
                         "'source', 'import', 'raw', raw_data) || jsonb_strip_nulls(jsonb_build_object("
                         "'contact_phone', phone_e164, 'contact_email', email_normalized)))) "
                         "FROM ghl_import_staging WHERE batch_id = %s AND record_kind = 'call'",
                         (location.id, floor_batch))
            floor["full"] = time.perf_counter() - t0
            bare.rollback()
        conn.execute("DELETE FROM ghl_import_batches WHERE id = %s", (floor_batch,))
        print(f"floor:   bare SQL, one transaction: matching alone {floor['match']:.2f} s ({matched:,} rows matched); "
              f"matching + the same apply work {floor['full']:.2f} s = {n / floor['full']:,.0f} records/s")

        repo.calls = 0
        started = time.perf_counter()
        chunks = 0
        while True:
            result = repo.process_chunk(batch_id, CHUNK, False)
            if not result["claimed"]:
                break
            chunks += 1
        process_seconds = time.perf_counter() - started
        batch = result["batch"]
        process_rpcs = repo.calls
        print(f"process: {n:,} records in {process_seconds:.2f} s = {n / process_seconds:,.0f} records/s; "
              f"{chunks} chunks, {process_rpcs} rpcs = {process_rpcs / (n / 1000):.2f} round trips per 1,000 records")
        print(f"         batch {batch['status']}: processed_records {batch['processed_records']:,}, "
              f"error_count {batch['error_count']:,}, total_records {batch['total_records']:,}")
        states = conn.execute("SELECT record_kind, status, count(*) AS n FROM ghl_import_staging WHERE batch_id = %s "
                              "GROUP BY 1, 2 ORDER BY 1, 2", (batch_id,)).fetchall()
        print("         rows: " + ", ".join(f"{r['record_kind']} {r['status']} {r['n']:,}" for r in states))
        total_rpcs = stage_rpcs + process_rpcs
        print(f"round trips, stage + process: {total_rpcs / (n / 1000):.2f} per 1,000 records")
        ratio = process_seconds / floor["full"]
        print(f"processing / floor (same work, bare SQL): {ratio:.2f}x (target <= 2x: "
              f"{'met' if ratio <= 2 else 'NOT met'}); processing / matching-only floor: "
              f"{process_seconds / floor['match']:.1f}x")

        # Pull memory, in a child process of its own.
        seeded = admin.seed(location.id, contacts=pull_contacts)
        child = subprocess.run(
            [sys.executable, __file__, "--pull-child", "--supabase-url", info["supabase_url"],
             "--sandbox-url", info["ghl_sandbox_url"], "--location-id", location.id],
            env=child_env(info), capture_output=True, text=True, check=False)
        if child.returncode != 0:
            print("pull child failed:\n" + child.stderr[-3000:])
        else:
            figures = json.loads(child.stdout.strip().splitlines()[-1])
            peak_mb = figures["tracemalloc_peak"] / 1e6
            rss_mb = figures["rss_peak_kb"] / 1024
            print(f"pull:    {seeded['contacts']:,} sandbox contacts, {figures['pages']} pages, "
                  f"{figures['staged']:,} staged, batch {figures['status']}, {figures['seconds']:.1f} s "
                  f"(pull + process, under tracemalloc), {figures['rpcs']} rpcs")
            print(f"         peak Python memory (tracemalloc) {peak_mb:.1f} MB; peak RSS of the pull process "
                  f"{rss_mb:.1f} MB (after imports, before the pull: {figures['rss_before_kb'] / 1024:.1f} MB); target < 200 MB: "
                  f"{'met' if rss_mb < 200 else 'NOT met'}")
        if args.part == "all":
            pull_rate(info, admin, conn, args)
        admin.close()
        conn.close()
    finally:
        stack.down()


if __name__ == "__main__":
    main()
