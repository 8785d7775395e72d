"""Benchmark: how much of GHL's rate-limit budget the GHL client uses, against the GHL sandbox.

    .venv/bin/python bench/bench_ghl_client.py [--quick] [--upserts 600]

Starts a sandbox of its own (100 requests / 10 s per location, 150 ms latency, contract checks on),
then runs N upserts for one location and N upserts for each of 3 locations at once, first with
GhlClient, then with the replaced system's approach (one request at a time, a fixed 200 ms sleep
after each call, no retry) as the baseline measured in the same run.

Figures per run:
  elapsed          first request sent -> last answer received
  req/s            requests the sandbox received per second and location (nominal budget 10/s; a
                   short run can exceed it, since a window's first 100 requests may start at once)
  budget share     the fastest the budget allows N requests per location, (ceil(N/100) - 1) * 10 s
                   + one latency, divided by the measured elapsed time (target >= 95 %)
  429s             429 answers the sandbox sent for the location(s)
  lost             upserts that did not end in a contact in the sandbox (must be 0)
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ghl_bridge.sandbox.admin import SandboxAdmin, SandboxLocation  # noqa: E402
from ghl_bridge.stack.processes import free_port  # noqa: E402
from shared.adapters.ghl_client import GhlClient  # noqa: E402

BURST = 100
WINDOW_MS = 10_000
LATENCY_MS = 150
BASELINE_SLEEP = 0.2


@dataclass
class RunResult:
    name: str
    locations: int
    upserts_per_location: int
    elapsed: float = 0.0
    per_location_done: list[list[float]] = field(default_factory=list)
    succeeded: int = 0
    failed: int = 0
    rate_limited: int = 0
    requests_seen: int = 0
    contacts: int = 0
    violations: int = 0

    def fastest_possible(self) -> float:
        return (math.ceil(self.upserts_per_location / BURST) - 1) * WINDOW_MS / 1000 + LATENCY_MS / 1000

    def budget_share(self) -> float:
        return self.fastest_possible() / self.elapsed if self.elapsed else 0.0

    def line(self) -> str:
        total = self.locations * self.upserts_per_location
        lost = total - self.contacts
        rate = self.requests_seen / self.elapsed if self.elapsed else 0.0
        return (f"{self.name:<32} {self.locations} loc x {self.upserts_per_location:>4} upserts | "
                f"elapsed {self.elapsed:7.2f} s | {rate / self.locations:5.2f} req/s per location "
                f"({rate:5.2f} total) | budget share {100 * self.budget_share():5.1f}% | "
                f"429s {self.rate_limited} | lost {lost} | failed calls {self.failed} | "
                f"contract violations {self.violations}")


def start_sandbox() -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "ghl_bridge.sandbox", "--host", "127.0.0.1", "--port", str(port),
         "--latency-ms", str(LATENCY_MS), "--burst-limit", str(BURST), "--burst-window-ms", str(WINDOW_MS)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the sandbox exited: {process.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"{url}/_sandbox/health", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the sandbox did not start within 30 s")


def body(location: SandboxLocation, i: int) -> dict:
    return {"email": f"bench{i}.{location.id}@example.com", "firstName": f"Bench{i}", "lastName": "Contact",
            "companyName": "Bench Inc", "source": "Portal Sync", "tags": ["bench"]}


MAX_IN_FLIGHT = 16  # GhlClient's and the settings' default; --max-in-flight changes it


async def client_run(location: SandboxLocation, n: int, started: float) -> tuple[list[float], int]:
    done: list[float] = []
    failed = 0
    async with GhlClient(location_id=location.id, token=location.token, base_url=location.base_url,
                         daily_reserve=0, max_in_flight=MAX_IN_FLIGHT) as ghl:
        async def one(i: int) -> None:
            nonlocal failed
            try:
                await ghl.upsert_contact(body(location, i))
                done.append(time.monotonic() - started)
            except Exception as exc:  # counted as lost; the figure must show it
                failed += 1
                print(f"  client upsert failed: {type(exc).__name__}: {exc}", file=sys.stderr)

        await asyncio.gather(*(one(i) for i in range(n)))
    return done, failed


async def baseline_run(location: SandboxLocation, n: int, started: float) -> tuple[list[float], int]:
    """The replaced system: one call at a time, sleep 200 ms after each, no retry (a 429 loses the record)."""
    done: list[float] = []
    failed = 0
    headers = {"Authorization": f"Bearer {location.token}", "Version": "2021-07-28"}
    async with httpx.AsyncClient(base_url=location.base_url, timeout=30) as http:
        for i in range(n):
            response = await http.post("/contacts/upsert", json={**body(location, i), "locationId": location.id},
                                       headers=headers)
            if response.status_code == 200:
                done.append(time.monotonic() - started)
            else:
                failed += 1
            await asyncio.sleep(BASELINE_SLEEP)
    return done, failed


def measure(admin: SandboxAdmin, name: str, runner, locations: int, n: int) -> RunResult:
    created = [admin.create_location() for _ in range(locations)]

    async def all_locations():
        started = time.monotonic()
        outcomes = await asyncio.gather(*(runner(location, n, started) for location in created))
        return time.monotonic() - started, outcomes

    elapsed, outcomes = asyncio.run(all_locations())
    result = RunResult(name=name, locations=locations, upserts_per_location=n, elapsed=elapsed)
    for location, (done, failed) in zip(created, outcomes):
        stats = admin.stats(location.id)
        result.per_location_done.append(done)
        result.succeeded += len(done)
        result.failed += failed
        result.rate_limited += stats["rate_limited_sent"]
        result.requests_seen += stats["requests_total"]
        result.contacts += stats["location"]["contacts"]
        result.violations += stats["contract_violations"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--upserts", type=int, default=600, help="upserts per location (default 600)")
    parser.add_argument("--quick", action="store_true", help="150 upserts per location (a smoke run)")
    parser.add_argument("--max-in-flight", type=int, default=16, help="GhlClient's max_in_flight (default 16)")
    args = parser.parse_args()
    n = 150 if args.quick else args.upserts
    global MAX_IN_FLIGHT
    MAX_IN_FLIGHT = args.max_in_flight

    process, url = start_sandbox()
    try:
        admin = SandboxAdmin(url)
        print(f"GHL sandbox at {url}: {BURST} requests / {WINDOW_MS / 1000:g} s per location, "
              f"{LATENCY_MS} ms latency; {n} upserts per location; GhlClient max_in_flight {MAX_IN_FLIGHT}; "
              f"machine: {os.cpu_count()} cores (shared)")
        print(f"budget share = fastest the budget allows ({(math.ceil(n / BURST) - 1) * WINDOW_MS / 1000:g} s + "
              f"{LATENCY_MS} ms) / measured elapsed")
        results = [
            measure(admin, "GhlClient", client_run, 1, n),
            measure(admin, "GhlClient", client_run, 3, n),
            measure(admin, "baseline (1 at a time + 200 ms)", baseline_run, 1, n),
            measure(admin, "baseline (1 at a time + 200 ms)", baseline_run, 3, n),
        ]
        for result in results:
            print(result.line())
        client_one, baseline_one = results[0], results[2]
        print(f"speed-up, one location: {baseline_one.elapsed / client_one.elapsed:.2f}x "
              f"({baseline_one.elapsed:.1f} s -> {client_one.elapsed:.1f} s)")
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


if __name__ == "__main__":
    main()
