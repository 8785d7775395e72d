#!/usr/bin/env python
"""Hostile, authenticated webhook bodies through a local stack's gateway: prints RELIABILITY.md's table.

For each body: the status, the answer's message, whether ghl_webhook_events keeps its exact bytes, and what the
event names as call id. A script, not a test (tests/webhook/test_hostile_input.py asserts the same).

Usage: .venv/bin/python bench/hostile_inputs.py
Needs DATABASE_URL (a PostgreSQL server; the script creates and drops a database of its own) or runs an
embedded PostgreSQL in a temporary folder.
"""

from __future__ import annotations

import os
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
import psycopg  # noqa: E402
from psycopg.rows import dict_row  # noqa: E402

from ghl_bridge.stack.stack import Stack, StackConfig  # noqa: E402

# (what is sent, the body's hostile part; None: the call id holds the NUL)
BODIES = [
    ("`NaN` as a value (`notes`)", '"notes": NaN'),
    ("`Infinity` as a value", '"notes": Infinity'),
    ("`-Infinity` under customData", '"customData": {"duration": -Infinity}'),
    ('`"duration": 1e400`', '"duration": 1e400'),
    ("an integer literal of 5,000 digits", '"duration": ' + "7" * 5000),
    ('a lone surrogate `"\\ud800"` in a string', '"notes": "call \\ud800 back"'),
    ("a lone surrogate in a key", '"x\\udc00": 1'),
    ("`\\u0000` in `notes`", '"notes": "a\\u0000b"'),
    ("`\\u0000` inside `callId`", None),
]


def main() -> int:
    secret = "hostile-secret-" + uuid.uuid4().hex
    stack = Stack(StackConfig(state_dir=Path(tempfile.mkdtemp(prefix="hostile-")),
                              server_url=os.environ.get("DATABASE_URL") or None,
                              database_name=f"b_{uuid.uuid4().hex[:12]}", fixed_ports=False,
                              drop_database_on_down=True,
                              function_env={"GHL_WEBHOOK_SECRET": secret, "LOG_LEVEL": "WARNING"}))
    info = stack.up()
    try:
        url = info["functions"]["ghl-call-webhook"]
        headers = {"X-Webhook-Secret": secret, "Content-Type": "application/json"}
        with psycopg.connect(info["database_url"], autocommit=True, row_factory=dict_row) as db, \
                httpx.Client(timeout=30) as http:
            db.execute("INSERT INTO ghl_integrations (location_id, api_token) VALUES ('loc_1', 'token')")
            print("| sent (authenticated) | answer | message | kept in ghl_webhook_events | call_id logged |")
            print("|---|---|---|---|---|")
            for n, (label, hostile) in enumerate(BODIES):
                call_id = f"hostile_{n}"
                raw = (f'{{"callId": "{call_id}\\u0000x", "locationId": "loc_1"}}' if hostile is None else
                       f'{{"callId": "{call_id}", "locationId": "loc_1", {hostile}}}').encode()
                response = http.post(url, content=raw, headers=headers)
                events = db.execute("SELECT * FROM ghl_webhook_events WHERE raw_body LIKE %s",
                                    (f'%"{call_id}%',)).fetchall()
                kept = [bytes(e["raw_body_bytes"]) if e["raw_body_bytes"] is not None else e["raw_body"].encode()
                        for e in events]
                verdict = "yes, exact bytes" if kept == [raw] else f"NO ({len(events)} events)"
                logged = events[0]["call_id"] if events else None
                print(f"| {label} | {response.status_code} | {response.json().get('message', '')} | {verdict} "
                      f"| {'`' + logged + '`' if logged else '-'} |")
            for label, request_id in (("header `X-Request-Id` of 4,000 characters", "x" * 4000),
                                      ("header `X-Request-Id: req-42.a:b_c`", "req-42.a:b_c")):
                call_id = f"reqid_{uuid.uuid4().hex[:8]}"
                response = http.post(url, json={"callId": call_id, "locationId": "loc_1"},
                                     headers={**headers, "X-Request-Id": request_id})
                echoed = response.headers.get("X-Request-Id")
                stored = db.execute("SELECT count(*) AS n FROM sales_calls WHERE external_call_id = %s",
                                    (call_id,)).fetchone()["n"]
                shown = "the same id" if echoed == request_id else f"a fresh id ({len(echoed or '')} hex)"
                print(f"| {label} | {response.status_code} | X-Request-Id answered: {shown} | "
                      f"call stored: {'yes' if stored == 1 else 'NO'} | `{call_id}` |")
    finally:
        stack.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
