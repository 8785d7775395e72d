"""ghl-call-webhook through the running stack's URL (gateway -> functions-framework -> PostgREST -> Postgres)."""

from __future__ import annotations

import json
import random
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest

from shared.domain.calls import CANONICAL_DISPOSITIONS
from tests.conftest import TEST_WEBHOOK_SECRET, unique
from tests.webhook.conftest import load_fixture, with_ids

pytestmark = pytest.mark.stack

HEADERS = {"X-Webhook-Secret": TEST_WEBHOOK_SECRET, "Content-Type": "application/json"}


# GHL-FACTS' table: raw status -> (stored status, connected, inferred disposition)
GHL_STATUSES = {
    "Answered": ("answered", True, None), "No answer": ("no-answer", False, "No Answer"),
    "Busy": ("busy", False, "No Answer"), "Failed": ("failed", False, "Incorrect Number"),
    "completed": ("completed", True, None), "Voicemail": ("voicemail", False, "Voicemail"),
    "Missed": ("missed", False, "No Answer"), "Ringing": ("ringing", None, None),
}


@pytest.mark.parametrize("raw_status", sorted(GHL_STATUSES))
def test_every_status_ghl_sends(url, http, db, make_integration, raw_status):
    location, _ = make_integration("internal")
    call_id = unique("call")
    body = {**with_ids(load_fixture("call-completed.json"), call_id, location), "callStatus": raw_status}
    response = http.post(url, json=body, headers=HEADERS)
    assert response.status_code == 200, response.text
    row = db.execute("SELECT call_status, connected, disposition FROM sales_calls WHERE external_call_id = %s",
                     (call_id,)).fetchone()
    assert (row["call_status"], row["connected"], row["disposition"]) == GHL_STATUSES[raw_status]


def test_errors_through_the_gateway(url, http, db):
    call_id = unique("call")
    assert http.post(url, content=json.dumps({"callId": call_id}), headers={"X-Webhook-Secret": "no"}).status_code == 401
    assert http.post(url, content=b"{not json", headers=HEADERS).status_code == 400
    assert http.post(url, json={"callId": call_id, "locationId": unique("nowhere")}, headers=HEADERS).status_code == 422
    too_big = http.post(url, content=b"{" + b" " * (300 * 1024) + b"}", headers=HEADERS)
    assert too_big.status_code == 413
    response = http.get(url, headers=HEADERS)
    assert response.status_code == 405
    assert [e["outcome"] for e in db.execute("SELECT outcome FROM ghl_webhook_events WHERE call_id = %s",
                                             (call_id,))] == ["unknown_location"]


def test_200_calls_by_16_concurrent_senders_in_random_order(url, http, db, make_integration):
    """Every call's two hits, shuffled, 16 at a time: exactly one complete row per call."""
    location, _ = make_integration("internal")
    rng = random.Random(4242)
    start = datetime(2026, 2, 12, 15, 0, tzinfo=timezone.utc)
    expected, hits = {}, []
    prefix = unique("burst")
    for n in range(200):
        call_id = f"{prefix}_{n:03d}"
        status = rng.choice(["Answered", "No answer", "Busy", "completed", "Voicemail"])
        disposition = rng.choice(CANONICAL_DISPOSITIONS)
        to_digits = f"555{rng.randint(2000000, 9999999)}"
        completed = {"callId": call_id, "locationId": location, "contactId": f"cnt_{n}", "direction": "outbound",
                     "from": "+15551234567", "to": f"({to_digits[:3]}) {to_digits[3:6]}-{to_digits[6:]}",
                     "callStatus": status, "duration": str(n), "callStartTime": (start + timedelta(minutes=n)).isoformat()}
        dispo = {"customData": {"call_id": call_id, "disposition": disposition.upper(), "notes": f"note {n}",
                                "transcription": f"transcript {n}"}, "location": {"id": location}}
        hits += [completed, dispo]
        expected[call_id] = {"call_status": status.lower().replace(" ", "-"), "duration_seconds": n,
                             "to_number": f"+1{to_digits}", "from_number": "+15551234567",
                             "ghl_contact_id": f"cnt_{n}", "direction": "outbound",
                             "started_at": start + timedelta(minutes=n), "disposition": disposition,
                             "disposition_source": "chosen", "notes": f"note {n}", "transcript": f"transcript {n}",
                             "ghl_location_id": location}
    rng.shuffle(hits)
    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(lambda body: http.post(url, json=body, headers=HEADERS).status_code, hits))
    assert statuses == [200] * 400
    rows = db.execute("SELECT * FROM sales_calls WHERE external_call_id LIKE %s", (prefix + "%",)).fetchall()
    assert len(rows) == 200
    for row in rows:
        want = expected[row["external_call_id"]]
        assert {k: row[k] for k in want} == want
        assert len(row["raw_payload"]["hits"]) == 2
    outcomes = db.execute("SELECT outcome, count(*) AS n FROM ghl_webhook_events WHERE call_id LIKE %s "
                          "GROUP BY outcome", (prefix + "%",)).fetchall()
    assert {r["outcome"]: r["n"] for r in outcomes} == {"inserted": 200, "updated": 200}


def test_function_log_has_one_summary_line_per_request(url, http, stack, make_integration):
    from pathlib import Path

    location, _ = make_integration("internal")
    call_id = unique("call")
    http.post(url, json=with_ids(load_fixture("call-completed.json"), call_id, location),
              headers={**HEADERS, "X-Request-Id": call_id})
    log_text = "\n".join(p.read_text(errors="replace") for p in Path(stack["log_dir"]).glob("*ghl-call-webhook*"))
    lines = [json.loads(line) for line in log_text.splitlines()
             if call_id in line and line.startswith("{") and '"webhook handled"' in line]
    assert len(lines) == 1
    assert (lines[0]["outcome"], lines[0]["db_round_trips"], lines[0]["status"]) == ("inserted", 1, 200)
    assert TEST_WEBHOOK_SECRET not in log_text
