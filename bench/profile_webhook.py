#!/usr/bin/env python
"""Where ghl-call-webhook's CPU goes: py-spy samples its function process (gunicorn arbiter and worker) while
concurrent senders post webhooks through the local stack, then prints the top functions by own samples and
by inclusive samples (a script, not a test; py-spy: `pip install py-spy`, needs ptrace, e.g. root).

Usage: .venv/bin/python bench/profile_webhook.py [--calls 2000] [--senders 8] [--top 25] [--function NAME]
--function reference-webhook profiles the benchmark's reference handler instead (bench/reference_webhook).
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg  # noqa: E402

from bench_webhook import REFERENCE, REFERENCE_FOLDER, WebhookSender, make_hits, run_concurrently  # noqa: E402
from ghl_bridge.stack.stack import Stack, StackConfig  # noqa: E402


def top_entries(collapsed: Path, count: int) -> tuple[int, list, list]:
    """(samples, [(own samples, frame)], [(inclusive samples, frame)]) from py-spy's raw (collapsed) output."""
    own, inclusive, total = collections.Counter(), collections.Counter(), 0
    for line in collapsed.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        frames = [frame for frame in stack.split(";") if not frame.startswith("process ")]
        if not frames:
            continue
        total += int(samples)
        own[frames[-1]] += int(samples)
        for frame in set(frames):
            inclusive[frame] += int(samples)
    return total, own.most_common(count), inclusive.most_common(count)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--function", default="ghl-call-webhook")
    parser.add_argument("--out", type=Path, help="keep py-spy's collapsed stacks here")
    args = parser.parse_args()
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")

    run = "prof" + uuid.uuid4().hex[:8]
    secret = "prof-secret-" + uuid.uuid4().hex
    state_dir = Path(tempfile.mkdtemp(prefix="profile-webhook-"))
    stack = Stack(StackConfig(state_dir=state_dir, server_url=os.environ.get("DATABASE_URL") or None,
                              database_name=f"p_{uuid.uuid4().hex[:12]}", fixed_ports=False,
                              drop_database_on_down=True, function_env={"GHL_WEBHOOK_SECRET": secret},
                              extra_functions={REFERENCE: REFERENCE_FOLDER}))
    info = stack.up()
    try:
        location = f"loc_{run}"
        with psycopg.connect(info["database_url"], autocommit=True) as conn:
            conn.execute("INSERT INTO ghl_integrations (location_id, api_token, integration_type) "
                         "VALUES (%s, 'token', 'internal')", (location,))
        rng = random.Random(7)
        sender = WebhookSender(info["functions"][args.function], secret, run)
        run_concurrently(make_hits(100, location, run + "w", rng), args.senders, sender)  # warm-up
        out = args.out or state_dir / "profile.txt"
        spy = subprocess.Popen([py_spy, "record", "--pid", str(stack.services[f"function:{args.function}"].pid),
                                "--subprocesses", "--gil", "--rate", "250", "--format", "raw", "--output", str(out),
                                "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        run_concurrently(make_hits(args.calls, location, run, rng), args.senders, sender)
        spy.send_signal(2)  # SIGINT: py-spy writes what it has and exits
        spy.wait(timeout=60)
        total, own, inclusive = top_entries(out, args.top)
        print(f"{args.function}: py-spy, {2 * args.calls} webhooks, {args.senders} senders, {total} samples "
              f"(--gil: only the thread holding the GIL is sampled, i.e. Python CPU time), non-200: {sender.failures}")
        print("top by own samples:")
        for frame, samples in own:
            print(f"  {samples / total:6.1%}  {frame}")
        print("top by inclusive samples:")
        for frame, samples in inclusive:
            print(f"  {samples / total:6.1%}  {frame}")
    finally:
        stack.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
