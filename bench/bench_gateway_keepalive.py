#!/usr/bin/env python
"""The gateway's idle-connection race, measured (a script, not a timed test).

Bursts of concurrent webhook POSTs through the gateway, spaced at about the functions' server idle timeout
(gunicorn's keepalive, 2 s), so that the gateway often reuses a kept connection just as the server closes it.
Runs twice in one go: once with nginx's default upstream keepalive_timeout (60 s, the baseline: what the
gateway had) and once with the gateway's setting (ghl_bridge/stack/gateway.py); prints, for each, the answers
by status and the calls missing from sales_calls.

Usage: .venv/bin/python bench/bench_gateway_keepalive.py [--rounds 60] [--burst 32] [--spacing 2.0]
Needs DATABASE_URL (a PostgreSQL server; each variant creates and drops a database of its own) or runs an
embedded PostgreSQL in a temporary folder.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
import psycopg  # noqa: E402

from ghl_bridge.stack import gateway  # noqa: E402
from ghl_bridge.stack.stack import Stack, StackConfig  # noqa: E402


def run_variant(label: str, keepalive_timeout_s: int, args) -> dict:
    gateway.FUNCTION_KEEPALIVE_TIMEOUT_S = keepalive_timeout_s  # read when the stack renders nginx.conf
    secret = "bench-secret-" + uuid.uuid4().hex
    run = "ka" + uuid.uuid4().hex[:8]
    stack = Stack(StackConfig(state_dir=Path(tempfile.mkdtemp(prefix="bench-keepalive-")),
                              server_url=os.environ.get("DATABASE_URL") or None,
                              database_name=f"b_{uuid.uuid4().hex[:12]}", fixed_ports=False,
                              drop_database_on_down=True,
                              function_env={"GHL_WEBHOOK_SECRET": secret, "LOG_LEVEL": "WARNING"}))
    info = stack.up()
    try:
        url = info["functions"]["ghl-call-webhook"]
        location = f"loc_{run}"
        with psycopg.connect(info["database_url"], autocommit=True) as conn:
            conn.execute("INSERT INTO ghl_integrations (location_id, api_token) VALUES (%s, 'token')", (location,))
        headers = {"X-Webhook-Secret": secret}
        statuses: collections.Counter = collections.Counter()
        rng = random.Random(7)
        started = time.perf_counter()
        limits = httpx.Limits(max_connections=args.burst, max_keepalive_connections=args.burst)
        with httpx.Client(timeout=30, limits=limits) as client, ThreadPoolExecutor(args.burst) as pool:
            for round_ in range(args.rounds):
                ids = [f"{run}_{round_}_{n}" for n in range(args.burst)]
                statuses.update(pool.map(lambda call_id: client.post(
                    url, json={"callId": call_id, "locationId": location}, headers=headers).status_code, ids))
                time.sleep(args.spacing + rng.uniform(-args.jitter, args.jitter))
        elapsed = time.perf_counter() - started
        with psycopg.connect(info["database_url"]) as conn:
            stored = conn.execute("SELECT count(*) FROM sales_calls WHERE external_call_id LIKE %s",
                                  (run + "%",)).fetchone()[0]
        sent = args.rounds * args.burst
        return {"variant": label, "keepalive_timeout_s": keepalive_timeout_s, "sent": sent,
                "statuses": dict(sorted(statuses.items())), "missing_calls": sent - stored,
                "seconds": round(elapsed, 1)}
    finally:
        stack.down()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=60, help="bursts; default 60")
    parser.add_argument("--burst", type=int, default=32, help="concurrent POSTs per burst; default 32")
    parser.add_argument("--spacing", type=float, default=2.0, help="seconds between bursts; default 2.0")
    parser.add_argument("--jitter", type=float, default=0.05, help="+- seconds of random jitter; default 0.05")
    args = parser.parse_args()
    fixed = gateway.FUNCTION_KEEPALIVE_TIMEOUT_S
    for label, timeout in (("baseline: nginx default", 60), ("gateway setting", fixed)):
        result = run_variant(label, timeout, args)
        print(result, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
