"""Fault injection against a running stack: webhook storms with an outage in the middle, then the replay.

Shared by the (small) tests in tests/reliability and the full-size runs of bench/reliability.py.

    bodies = storm_bodies(200, prefix, location_id)         # 200 calls x 2 hits (Call Completed + Disposition)
    outage = Outage(stack, "postgrest", start_after=0.25)   # stops PostgREST once a quarter is answered
    answers = send_storm(url, bodies, senders=8, outage=outage)
    report = replay(stack_info)                              # the spool back into the database
    rows = call_rows(db, prefix)                             # {call index: the row, ids left out}
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import httpx

STATUSES = ["Answered", "No answer", "Busy", "Failed", "completed", "Voicemail", "Missed"]
DISPOSITIONS = ["No Answer", "Voicemail", "Gatekeeper", "Incorrect Number", "Not Interested",
                "Callback Requested", "Future Potential", "Meeting Booked", "Do Not Contact"]
# what depends on the run (ids, times of writing) rather than on the calls themselves
RUN_COLUMNS = {"id", "external_call_id", "ghl_location_id", "prospect_id", "created_at", "updated_at",
               "enrichment_requested_at", "enrichment_next_attempt_at"}


def storm_bodies(calls: int, prefix: str, location_id: str, seed: int = 8) -> list[tuple[int, bytes]]:
    """Two hits per call (completed + disposition) in a seeded random order: the same calls for every prefix."""
    rng = random.Random(seed)
    start = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)
    hits = []
    for index in range(calls):
        call_id, contact_id = f"{prefix}-{index}", f"cnt-{index}"
        completed = {"callId": call_id, "locationId": location_id, "contactId": contact_id,
                     "callStatus": rng.choice(STATUSES), "direction": rng.choice(["outbound", "inbound"]),
                     "from": f"+1415555{index % 10000:04d}", "to": f"(212) 555-{(index * 7) % 10000:04d}",
                     "duration": rng.randrange(0, 900),
                     "callStartTime": (start + timedelta(seconds=37 * index)).isoformat().replace("+00:00", "Z")}
        disposition = {"callId": call_id, "locationId": location_id, "contactId": contact_id,
                       "disposition": rng.choice(DISPOSITIONS),
                       "notes": f"note {index}: they said '{rng.choice(['call back', 'no thanks', 'book it'])}'"}
        hits.append((index, json.dumps(completed).encode()))
        hits.append((index, json.dumps(disposition).encode()))
    rng.shuffle(hits)
    return hits


@dataclass
class Outage:
    """Stops a stack service once `start_after` of the storm is answered, keeps it down for `down_seconds` (and
    at least until `min_failures` answers failed), then starts it again and waits until it serves."""

    stack: object  # ghl_bridge.stack.stack.Stack
    service: str  # "postgrest" | "postgres"
    start_after: float = 0.25
    down_seconds: float = 1.0
    min_failures: int = 20
    events: list[tuple[str, float]] = field(default_factory=list)
    _started: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def maybe_start(self, answered: int, total: int, failures_seen) -> None:
        if not self._started.is_set() and answered >= self.start_after * total:
            self._started.set()
            self.thread = threading.Thread(target=self._run, args=(failures_seen,), daemon=True)
            self.thread.start()

    def _run(self, failures_seen) -> None:
        began = time.monotonic()
        self.stack.stop_service(self.service)
        self.events.append(("stopped", time.monotonic() - began))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (time.monotonic() - began < self.down_seconds
                                               or failures_seen() < self.min_failures):
            time.sleep(0.02)
        self.stack.start_service(self.service)
        self.events.append(("started", time.monotonic() - began))

    def wait(self) -> None:
        if self.thread is not None:
            self.thread.join()


@dataclass
class StormResult:
    statuses: Counter
    seconds: float
    spooled: int  # 503s that said the request was spooled
    answers: list[tuple[int, int, dict]]  # (call index, status, body)


def send_storm(url: str, secret: str, bodies: list[tuple[int, bytes]], *, senders: int = 8,
               outage: Outage | None = None, timeout: float = 30.0) -> StormResult:
    """POST every body once (no retry: a sender that gives up after a 503 is the worst case)."""
    answers: list[tuple[int, int, dict]] = []
    lock = threading.Lock()
    failures = [0]
    headers = {"X-Webhook-Secret": secret, "Content-Type": "application/json"}
    local = threading.local()

    def client() -> httpx.Client:
        if not hasattr(local, "client"):
            local.client = httpx.Client(timeout=timeout)
        return local.client

    def send(item: tuple[int, bytes]) -> None:
        index, body = item
        try:
            response = client().post(url, content=body, headers=headers)
            status, answer = response.status_code, _json(response)
            if status == 503:
                answer["retry_after"] = response.headers.get("Retry-After")
        except httpx.HTTPError as exc:
            status, answer = 0, {"error": type(exc).__name__}
        with lock:
            answers.append((index, status, answer))
            if status != 200:
                failures[0] += 1
            if outage is not None:
                outage.maybe_start(len(answers), len(bodies), lambda: failures[0])

    started = time.monotonic()
    with ThreadPoolExecutor(senders) as pool:
        list(pool.map(send, bodies))
    seconds = time.monotonic() - started
    if outage is not None:
        outage.wait()
    statuses = Counter(status for _, status, _ in answers)
    spooled = sum(1 for _, status, body in answers if status == 503 and body.get("details", {}).get("spooled"))
    return StormResult(statuses=statuses, seconds=seconds, spooled=spooled, answers=answers)


def _json(response: httpx.Response) -> dict:
    try:
        value = response.json()
    except ValueError:
        return {"raw": response.text[:200]}
    return value if isinstance(value, dict) else {"value": value}


def spool_of(stack_info: dict):
    """The stack's spool (moto S3), with credentials of its own (nothing set in this process's environment)."""
    import boto3

    from shared.adapters.object_spool import ObjectSpool

    client = boto3.client("s3", endpoint_url=stack_info["s3_endpoint_url"], region_name="us-east-1",
                          aws_access_key_id="local", aws_secret_access_key="local")
    return ObjectSpool(endpoint_url=stack_info["s3_endpoint_url"], bucket="ghl-webhook-spool", region="us-east-1",
                       prefix="ghl-webhook-spool/", client=client)


def replay(stack_info: dict, spool=None):
    """The replay the scheduler runs, in this process, against the stack."""
    from shared.adapters.supabase_db import create_service_client
    from shared.config import Settings
    from shared.services.replay_spool import replay_from_settings

    settings = Settings(supabase_url=stack_info["supabase_url"], supabase_service_role_key=stack_info["service_role_key"])
    database = create_service_client(settings.supabase_url, stack_info["service_role_key"])
    return replay_from_settings(settings, database, spool or spool_of(stack_info))


def wait_until_serving(stack_info: dict, timeout: float = 90.0) -> float:
    """Until an rpc through the gateway answers (PostgREST reconnected to Postgres). Returns seconds waited."""
    started = time.monotonic()
    url = f"{stack_info['supabase_url']}/rest/v1/sales_calls?select=id&limit=1"
    key = stack_info["service_role_key"]
    while time.monotonic() - started < timeout:
        try:
            if httpx.get(url, headers={"apikey": key, "Authorization": f"Bearer {key}"}, timeout=2).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"the stack did not serve again within {timeout} s")


def call_rows(db, prefix: str, table: str = "sales_calls") -> dict[int, dict]:
    """The calls of one storm by call index, without what differs between runs (ids, locations, times)."""
    rows = db.execute(f"SELECT * FROM {table} WHERE external_call_id LIKE %s", (f"{prefix}-%",)).fetchall()
    result = {}
    for row in rows:
        index = int(row["external_call_id"].rsplit("-", 1)[1])
        assert index not in result, f"two rows for call {index}"
        kept = {k: v for k, v in row.items() if k not in RUN_COLUMNS}
        kept["raw_payload"] = _comparable_payload(row["raw_payload"] or {})
        result[index] = kept
    return result


def _comparable_payload(raw: dict) -> dict:
    """raw_payload keeps each hit as received under a key derived from the hit (ids included): compare the hits
    themselves, without the run's ids."""
    def strip(hit):
        return {k: v for k, v in hit.items() if k not in ("callId", "locationId")} if isinstance(hit, dict) else hit

    result = {k: strip(v) for k, v in raw.items() if k != "hits"}
    if isinstance(raw.get("hits"), dict):
        result["hits"] = sorted((strip(hit) for hit in raw["hits"].values()), key=lambda h: json.dumps(h, sort_keys=True))
    return result


def event_counts(db, location_id: str) -> dict[str, int]:
    rows = db.execute("SELECT outcome, (spool_key IS NOT NULL) AS replayed, count(*) AS n FROM ghl_webhook_events "
                      "WHERE location_id = %s GROUP BY 1, 2", (location_id,)).fetchall()
    counts: Counter = Counter()
    for row in rows:
        counts[row["outcome"]] += row["n"]
        if row["replayed"]:
            counts["from_spool"] += row["n"]
    counts["total"] = sum(row["n"] for row in rows)
    return dict(counts)


def new_internal_location(db, prefix: str) -> str:
    location_id = f"loc-{prefix}"
    db.execute("INSERT INTO ghl_integrations (location_id, api_token) VALUES (%s, %s)",
               (location_id, "storm-token-" + uuid.uuid4().hex))
    return location_id


def differences(expected: dict[int, dict], got: dict[int, dict], limit: int = 10) -> list[str]:
    """What differs between two storms' rows (missing calls, then column by column), at most `limit` lines."""
    found = [f"call {i}: missing" for i in sorted(set(expected) - set(got))]
    found += [f"call {i}: not expected" for i in sorted(set(got) - set(expected))]
    for index in sorted(set(expected) & set(got)):
        for column in sorted(set(expected[index]) | set(got[index])):
            if expected[index].get(column) != got[index].get(column):
                found.append(f"call {index}.{column}: {expected[index].get(column)!r} != {got[index].get(column)!r}")
    return found[:limit]


# ---- import worker killed mid-chunk --------------------------------------------------------------------

WORKER_SCRIPT = r'''
import json, sys, time
mode, supabase_url, key, database_url, batch_id, chunk = sys.argv[1:7]
if mode == "service":  # the import process service, as the function runs it (PostgREST in between)
    from shared.adapters.import_repository import ImportRepository
    from shared.adapters.supabase_db import create_service_client
    from shared.config import Settings
    from shared.services.import_batches import advance_batch, ghl_client_factory
    settings = Settings(supabase_url=supabase_url, supabase_service_role_key=key, import_chunk_size=int(chunk))
    repo = ImportRepository(create_service_client(supabase_url, key, timeout=120))
    print("working", flush=True)
    advance_batch(repo, ghl_client_factory(settings), settings, batch_id, deadline=time.monotonic() + 300)
else:  # a worker holding its chunk's transaction open (the chunk done, not committed)
    import psycopg
    conn = psycopg.connect(database_url)
    result = conn.execute("SELECT process_import_chunk(%s, %s, false)", (batch_id, int(chunk))).fetchone()[0]
    print(json.dumps({"claimed": result["claimed"]}), flush=True)
    time.sleep(600)
'''


def stage_contacts_batch(db, location_id: str, contacts: int, matched_every: int = 2) -> str:
    """A batch of `contacts` staged contacts (pull complete), every `matched_every`-th matching a prospect by email."""
    tag = uuid.uuid4().hex[:10]
    batch_id = db.execute("SELECT (create_import_batch(%s, '{contacts}', NULL, NULL)) ->> 'id' AS id",
                          (location_id,)).fetchone()["id"]
    emails = [f"{tag}.{i}@example.com" for i in range(contacts)]
    with db.cursor() as cursor:
        cursor.executemany("INSERT INTO sales_prospects (first_name, last_name, email) VALUES ('Kill', 'Test', %s)",
                           [(email,) for email in emails[::matched_every]])
    records = [{"external_id": f"k{tag}{i}", "raw_data": {"id": f"k{tag}{i}", "email": email, "firstName": "Kill"}}
               for i, email in enumerate(emails)]
    db.execute("SELECT stage_import_page(%s, 'contacts', %s::jsonb, NULL, '{}'::jsonb, true)",
               (batch_id, json.dumps(records)))
    return batch_id


def batch_counts(db, batch_id: str) -> dict:
    """The batch row and its staging rows' states, read in one snapshot."""
    return db.execute(
        "SELECT b.status, b.total_records, b.processed_records, b.error_count, c.* FROM ghl_import_batches b, LATERAL ("
        "  SELECT count(*) AS staged, count(*) FILTER (WHERE status IN ('imported', 'skipped', 'error')) AS final,"
        "  count(*) FILTER (WHERE status = 'error') AS errors,"
        "  count(*) FILTER (WHERE status IN ('pending', 'matched')) AS open"
        "  FROM ghl_import_staging WHERE batch_id = b.id) c WHERE b.id = %s", (batch_id,)).fetchone()


def counters_true(counts: dict) -> bool:
    return counts["processed_records"] == counts["final"] and counts["error_count"] == counts["errors"] \
        and counts["total_records"] == counts["staged"]


def kill_worker_mid_chunk(stack_info: dict, db, batch_id: str, mode: str, chunk: int, root) -> dict:
    """Start a worker subprocess on the batch and SIGKILL it while its chunk's transaction is open.

    mode "service": killed while process_import_chunk runs in Postgres (seen in pg_stat_activity);
    mode "open_transaction": killed after the chunk's statement returned, before its commit.
    Returns what was seen: {"killed_while": ..., "seconds_to_kill": ...}."""
    import os
    import signal
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(root)}
    worker = subprocess.Popen([sys.executable, "-c", WORKER_SCRIPT, mode, stack_info["supabase_url"],
                               stack_info["service_role_key"], stack_info["database_url"], batch_id, str(chunk)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=root)
    started = time.monotonic()
    seen = None
    try:
        if mode == "service":
            while time.monotonic() - started < 60 and worker.poll() is None:
                row = db.execute("SELECT state FROM pg_stat_activity WHERE datname = current_database() AND "
                                 "query LIKE '%%process_import_chunk%%' AND pid <> pg_backend_pid() AND "
                                 "state = 'active'").fetchone()
                if row:
                    seen = "process_import_chunk running in Postgres"
                    break
                time.sleep(0.002)
        else:
            line = worker.stdout.readline()
            seen = f"after the chunk ({line.strip()}), before its commit"
        os.kill(worker.pid, signal.SIGKILL)
    finally:
        worker.wait(timeout=30)
    if seen is None:
        raise AssertionError(f"the worker never ran its chunk: {worker.stderr.read()[-2000:]}")
    return {"killed_while": seen, "seconds_to_kill": round(time.monotonic() - started, 3),
            "returncode": worker.returncode}


def wait_for_no_chunk_running(db, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not db.execute("SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND "
                          "query LIKE '%%process_import_chunk%%' AND pid <> pg_backend_pid() AND "
                          "state IN ('active', 'idle in transaction')").fetchone():
            return
        time.sleep(0.05)
    raise TimeoutError("a chunk is still running")
