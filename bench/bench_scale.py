"""Benchmark: the sync at agency scale, fanned out on Cloud Tasks (the stand-in) against today's one-process run.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/bench_scale.py \
        [--sizes 10,50,200] [--prospects 110] [--sandboxes 4] [--workers 4] [--threads 64]

Starts a local stack of its own (free ports, its own database) whose GHL is --sandboxes sandbox processes behind
nginx (`hash $http_authorization consistent`: one location's requests always reach the same process, which keeps
its rate limit; every location is registered in every process), at 20 requests / 10 s per location and 150 ms
latency: GHL's limit scaled down so that this machine's CPU is not what is measured, GHL's servers spread over
several processes as they are not this machine's CPU. The batch function runs as --workers gunicorn processes of
--threads threads. For each N of --sizes, on N fresh locations x --prospects due prospects each (the locations of
earlier runs deactivated):

1. fan-out: one POST {"dispatch": true} to sync-prospects-to-ghl; wall time = from the POST until every prospect
   of the N locations is pushed (polled in the database every 0.25 s), or until every task has ended (a task
   stops claiming at its slot's deadline, 280 s by default: the rest is the next slot's, printed as not pushed);
2. one process (today's way, the baseline of the same run): one POST {} to the same function, which works every
   active location in one request; wall time = the request.

Floor of a location (its upserts, GHL's limit a window): 10 s x (ceil(prospects / 20) - 1) + one round trip,
50.15 s for 110; target: fan-out wall at most 1.2 x the floor at N = 200. CPU = user + system seconds of the
sync function's worker processes during the run; "locations at full pace per vCPU" = how many locations one
vCPU keeps at full pace at the CPU per request measured (at this bench's 2 requests/s per location, and at
GHL's real 10 requests/s per location). Each line also prints the GHL sandboxes' CPU and how busy the whole
machine was (every process, other users' too), since on a small shared machine these, not the function, bound
the wall time.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import psutil
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ghl_bridge.sandbox.admin import SandboxAdmin  # noqa: E402
from ghl_bridge.stack.gateway import find_or_fetch_nginx  # noqa: E402
from ghl_bridge.stack.processes import (  # noqa: E402
    free_port, start_process, stop_process, wait_until_http_answers,
)
from ghl_bridge.stack.stack import Stack, StackConfig  # noqa: E402

BURST, WINDOW_S, LATENCY_MS = 20, 10.0, 150
GHL_REAL_RATE = 10.0  # GHL's 100 requests / 10 s per location
SCHEDULER_SECRET = "bench-scheduler-" + uuid.uuid4().hex


def floor_seconds(prospects: int) -> float:
    return WINDOW_S * (math.ceil(prospects / BURST) - 1) + LATENCY_MS / 1000


def start_sandboxes(count: int, state: Path) -> tuple[str, list[str], list]:
    """`count` sandbox processes behind nginx hashing on the token; (nginx URL, sandbox URLs, services)."""
    services, urls = [], []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for index in range(count):
        port = free_port()
        args = [sys.executable, "-m", "ghl_bridge.sandbox", "--host", "127.0.0.1", "--port", str(port),
                "--latency-ms", str(LATENCY_MS), "--burst-limit", str(BURST),
                "--burst-window-ms", str(int(WINDOW_S * 1000))]
        service = start_process(f"ghl-sandbox-{index}", args, port=port, log_dir=state / "logs", env=env, cwd=ROOT)
        services.append(service)
        urls.append(f"http://127.0.0.1:{port}")
    for service, url in zip(services, urls):
        wait_until_http_answers(f"{url}/_sandbox/health", service, ok=lambda r: r.status_code == 200)
    port = free_port()
    (state / "nginx").mkdir(exist_ok=True)
    servers = "\n".join(f"    server {url.removeprefix('http://')};" for url in urls)
    conf = state / "ghl-lb.conf"
    conf.write_text(f"""
worker_processes 2;
daemon off;
pid {state}/ghl-lb.pid;
error_log {state}/logs/ghl-lb-error.log warn;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  client_body_temp_path {state}/nginx/body;
  proxy_temp_path {state}/nginx/proxy;
  fastcgi_temp_path {state}/nginx/fastcgi;
  uwsgi_temp_path {state}/nginx/uwsgi;
  scgi_temp_path {state}/nginx/scgi;
  upstream ghl {{
    hash $http_authorization consistent;
{servers}
    keepalive 512;
  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://ghl;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_read_timeout 120s;
    }}
  }}
}}
""")
    nginx = find_or_fetch_nginx(state / "tools")
    lb = start_process("ghl-lb", [str(nginx), "-p", str(state), "-e", "stderr", "-c", str(conf)], port=port,
                       log_dir=state / "logs")
    services.append(lb)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/_sandbox/health", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.05)
    return url, urls, services


def add_locations(admins: list[SandboxAdmin], db, count: int, prospects: int) -> list[str]:
    """`count` locations (registered in every sandbox process) with `prospects` due prospects each."""
    made = []
    for _ in range(count):
        location_id, token = f"loc_{uuid.uuid4().hex[:16]}", f"tok-{uuid.uuid4().hex}"
        for admin in admins:
            admin.create_location(location_id, token=token)
        db.execute("INSERT INTO ghl_integrations (location_id, api_token) VALUES (%s, %s)", (location_id, token))
        made.append(location_id)
    db.execute("""
        INSERT INTO sales_prospects (first_name, last_name, email, phone, tags, ghl_location_id)
        SELECT 'First' || i, 'Last ' || l.n, 'p' || i || '.' || l.loc || '@example.com',
               '+1' || (200 + l.n %% 700)::text || lpad(i::text, 7, '0'), ARRAY['portal'], l.loc
        FROM unnest(%s::text[]) WITH ORDINALITY AS l(loc, n), generate_series(1, %s) AS i
    """, (made, prospects))
    return made


def pushed(db, locations: list[str]) -> int:
    return db.execute("SELECT count(*) FROM sales_prospects WHERE ghl_location_id = ANY(%s) "
                      "AND ghl_contact_id IS NOT NULL", (locations,)).fetchone()[0]


def worker_cpu(pid: int) -> float:
    total = 0.0
    for process in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def machine_busy() -> float:
    """CPU seconds this machine's cores spent busy so far (every process: other users' too)."""
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


def run(mode: str, info: dict, db, admins, sync_pid: int, size: int, prospects: int,
        sandbox_pids: list[int]) -> dict:
    db.execute("UPDATE ghl_integrations SET is_active = false WHERE is_active")
    locations = add_locations(admins, db, size, prospects)
    url = info["functions"]["sync-prospects-to-ghl"]
    auth = {"Authorization": f"Bearer {SCHEDULER_SECRET}"}
    total = size * prospects
    cpu_before = worker_cpu(sync_pid)
    sandbox_before = sum(worker_cpu(pid) for pid in sandbox_pids)
    busy_before = machine_busy()
    started = time.monotonic()
    if mode == "fan-out":
        answer = httpx.post(url, json={"dispatch": True}, headers=auth, timeout=120)
        answer.raise_for_status()
        # Until every prospect is pushed, or every task has ended (a task stops claiming at its slot's deadline:
        # what is left would be the next slot's, which this benchmark does not wait for).
        from ghl_bridge.cloudtasks_standin.admin import TasksAdmin

        with TasksAdmin(info["cloud_tasks_url"]) as tasks:
            while pushed(db, locations) < total and tasks.tasks("ghl-bridge-sync")["live"]:
                time.sleep(0.25)
    else:
        answer = httpx.post(url, json={}, headers=auth, timeout=3600)
        answer.raise_for_status()
    wall = time.monotonic() - started
    cpu = worker_cpu(sync_pid) - cpu_before
    sandbox_cpu = sum(worker_cpu(pid) for pid in sandbox_pids) - sandbox_before
    busy = (machine_busy() - busy_before) / (wall * (os.cpu_count() or 1))
    done = pushed(db, locations)
    return {"mode": mode, "locations": size, "pushed": done, "expected": total, "wall": wall,
            "ratio": wall / floor_seconds(prospects), "cpu": cpu, "cpu_per_request_ms": 1000 * cpu / max(done, 1),
            "sandbox_cpu": sandbox_cpu, "machine_busy": busy}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10,50,200")
    parser.add_argument("--prospects", type=int, default=110)
    parser.add_argument("--sandboxes", type=int, default=4)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=64)
    parser.add_argument("--modes", default="fan-out,one-process")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    state = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    (state / "logs").mkdir()
    ghl_url, sandbox_urls, sandboxes = start_sandboxes(args.sandboxes, state)
    os.environ["GHL_API_BASE_URL"] = ghl_url  # the stack starts no sandbox of its own
    config = StackConfig(
        state_dir=state / "stack", server_url=os.environ.get("DATABASE_URL") or None,
        database_name=f"bench_{uuid.uuid4().hex[:10]}", fixed_ports=False, drop_database_on_down=True,
        batch_workers=args.workers, batch_threads=args.threads,
        queue_settings={"max_concurrent_dispatches": 1000, "max_dispatches_per_second": 500.0, "max_attempts": 50,
                        "min_backoff_seconds": 1.0, "max_backoff_seconds": 10.0},
        function_env={"SCHEDULER_SECRET": SCHEDULER_SECRET, "GHL_WEBHOOK_SECRET": uuid.uuid4().hex,
                      "LOG_LEVEL": "WARNING"})
    stack = Stack(config)
    results = []
    try:
        info = stack.up()
        sync_pid = stack.services["function:sync-prospects-to-ghl"].pid
        admins = [SandboxAdmin(url) for url in sandbox_urls]
        with psycopg.connect(info["database_url"], autocommit=True) as db:
            for size in sizes:
                for mode in args.modes.split(","):
                    result = run(mode, info, db, admins, sync_pid, size, args.prospects,
                                 [service.pid for service in sandboxes[:-1]])
                    results.append(result)
                    print(f"  {mode:11s} N={size:4d}: {result['wall']:7.2f} s = {result['ratio']:.2f} x floor, "
                          f"pushed {result['pushed']}/{result['expected']}, CPU {result['cpu']:.1f} s "
                          f"({result['cpu_per_request_ms']:.2f} ms/request), GHL sandboxes' CPU "
                          f"{result['sandbox_cpu']:.1f} s, machine busy {100 * result['machine_busy']:.0f}%",
                          flush=True)
    finally:
        stack.down()
        for service in sandboxes:
            stop_process(service.pid)
    floor = floor_seconds(args.prospects)
    print(f"\nsync at scale: {args.prospects} prospects per location, GHL sandbox {BURST} requests / {WINDOW_S:.0f} s "
          f"per location, {LATENCY_MS} ms latency, {args.sandboxes} sandbox processes; batch function "
          f"{args.workers} workers x {args.threads} threads; {os.cpu_count()} CPUs on this machine (shared)")
    print(f"window floor per location: {floor:.2f} s (10 s x (ceil({args.prospects}/{BURST}) - 1) + one round trip)\n")
    print("| locations | fan-out wall | / floor | one process wall | / floor | fan-out CPU ms/req | "
          "one-process CPU ms/req | machine busy (fan-out / one) |")
    print("|---|---|---|---|---|---|---|---|")
    by = {(r["mode"], r["locations"]): r for r in results}
    for size in sizes:
        fan, one = by.get(("fan-out", size)), by.get(("one-process", size))
        cell = lambda r, key, fmt: format(r[key], fmt) if r else "-"  # noqa: E731
        print(f"| {size} | {cell(fan, 'wall', '.1f')} s | {cell(fan, 'ratio', '.2f')} | {cell(one, 'wall', '.1f')} s "
              f"| {cell(one, 'ratio', '.2f')} | {cell(fan, 'cpu_per_request_ms', '.2f')} | "
              f"{cell(one, 'cpu_per_request_ms', '.2f')} | "
              f"{100 * fan['machine_busy'] if fan else 0:.0f}% / {100 * one['machine_busy'] if one else 0:.0f}% |")
    per_request = [r["cpu_per_request_ms"] for r in results if r["mode"] == "fan-out" and r["pushed"]]
    if per_request:
        cost = sum(per_request) / len(per_request) / 1000
        print(f"\nlocations kept at full pace per vCPU (fan-out, {cost * 1000:.2f} ms CPU per request): "
              f"{1 / (cost * BURST / WINDOW_S):.0f} at this bench's {BURST / WINDOW_S:.0f} requests/s per location, "
              f"{1 / (cost * GHL_REAL_RATE):.0f} at GHL's {GHL_REAL_RATE:.0f} requests/s per location")
    missing = [r for r in results if r["pushed"] != r["expected"]]
    if missing:
        print("NOT ALL PUSHED: " + ", ".join(f"{r['mode']} N={r['locations']} {r['pushed']}/{r['expected']}"
                                            for r in missing))
    target = by.get(("fan-out", 200))
    if target:
        print(f"target fan-out at 200 locations <= 1.2 x floor: {'met' if target['ratio'] <= 1.2 else 'MISSED'} "
              f"({target['ratio']:.2f} x)")


if __name__ == "__main__":
    main()
