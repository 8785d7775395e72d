"""One webhook instance serving many hits at once (Cloud Functions 2nd gen --concurrency, gunicorn THREADS).

64 hits released together into ONE functions-framework process with 64 threads: every hit is inside the
handler at the same time, sharing the instance's settings, PostgREST client and replay guard. Every answer
must be its own request's (call id, request id), every call one complete row, every request one log line.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from ghl_bridge.paths import PROJECT_ROOT
from ghl_bridge.stack.processes import free_port, start_process, stop_process, wait_until_http_answers
from tests.conftest import TEST_WEBHOOK_SECRET, unique
from tests.webhook.conftest import FUNCTION_SOURCE

pytestmark = pytest.mark.stack

HITS = 64


@pytest.fixture(scope="module")
def one_process(stack, tmp_path_factory):
    """The webhook in a process of its own, served as deployed (functions-framework, one gunicorn worker)."""
    port = free_port()
    env = {**os.environ, "SUPABASE_URL": stack["supabase_url"], "SUPABASE_SERVICE_ROLE_KEY": stack["service_role_key"],
           "GHL_WEBHOOK_SECRET": TEST_WEBHOOK_SECRET, "THREADS": str(HITS), "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": str(PROJECT_ROOT)}
    framework = str(Path(sys.executable).parent / "functions-framework")
    log_dir = tmp_path_factory.mktemp("one-process")
    service = start_process("webhook-64", [framework, "--target", "handle", "--source", str(FUNCTION_SOURCE),
                                           "--host", "127.0.0.1", "--port", str(port)],
                            port=port, log_dir=log_dir, env=env, cwd=FUNCTION_SOURCE.parent)
    try:
        wait_until_http_answers(f"http://127.0.0.1:{port}/", service, timeout=60)
        yield f"http://127.0.0.1:{port}/", Path(service.log)
    finally:
        stop_process(service.pid)


def test_64_hits_at_once_into_one_process(one_process, db, make_integration):
    url, log = one_process
    location, _ = make_integration("internal")
    prefix = unique("conc")
    hits = []
    for n in range(HITS // 2):  # both hits of each call at the same moment: the merge races itself too
        call_id = f"{prefix}_{n:02d}"
        hits.append({"callId": call_id, "locationId": location, "direction": "outbound", "from": "+15551234567",
                     "to": f"+1555300{n:04d}", "callStatus": "completed", "duration": n + 1})
        hits.append({"customData": {"call_id": call_id, "disposition": "Meeting Booked", "notes": f"note {n}"},
                     "location": {"id": location}})
    request_ids = [f"{prefix}-{uuid.uuid4().hex[:8]}" for _ in hits]
    gate = threading.Barrier(HITS)

    def send(index: int) -> httpx.Response:
        with httpx.Client(timeout=60) as client:
            gate.wait(timeout=60)  # all 64 connections open, then every request leaves at once
            return client.post(url, content=json.dumps(hits[index]), headers={
                "X-Webhook-Secret": TEST_WEBHOOK_SECRET, "Content-Type": "application/json",
                "X-Request-Id": request_ids[index]})

    with ThreadPoolExecutor(max_workers=HITS) as pool:
        answers = list(pool.map(send, range(HITS)))

    assert [a.status_code for a in answers] == [200] * HITS, [a.text for a in answers if a.status_code != 200]
    for hit, request_id, answer in zip(hits, request_ids, answers):
        sent_call_id = hit.get("callId") or hit["customData"]["call_id"]
        assert answer.json()["call_id"] == sent_call_id  # no answer crossed over from another request
        assert answer.headers["X-Request-Id"] == request_id

    rows = db.execute("SELECT external_call_id, duration_seconds, disposition, disposition_source, notes, to_number "
                      "FROM sales_calls WHERE external_call_id LIKE %s ORDER BY external_call_id",
                      (prefix + "\\_%",)).fetchall()
    assert [r["external_call_id"] for r in rows] == [f"{prefix}_{n:02d}" for n in range(HITS // 2)]
    for n, row in enumerate(rows):
        assert (row["duration_seconds"], row["disposition"], row["disposition_source"], row["notes"],
                row["to_number"]) == (n + 1, "Meeting Booked", "chosen", f"note {n}", f"+1555300{n:04d}")
    outcomes = db.execute("SELECT outcome, count(*) AS n FROM ghl_webhook_events WHERE call_id LIKE %s "
                          "GROUP BY outcome", (prefix + "\\_%",)).fetchall()
    assert {r["outcome"]: r["n"] for r in outcomes} == {"inserted": HITS // 2, "updated": HITS // 2}

    # One summary line per request, each naming its own request's call (no state shared between requests).
    summaries = {}
    for line in log.read_text().splitlines():
        if line.startswith("{") and prefix in line:
            entry = json.loads(line)
            summaries[entry["request_id"]] = entry
    assert sorted(summaries) == sorted(request_ids)
    for hit, request_id in zip(hits, request_ids):
        entry = summaries[request_id]
        assert (entry["status"], entry["call_id"], entry["db_round_trips"]) == (
            200, hit.get("callId") or hit["customData"]["call_id"], 1)
