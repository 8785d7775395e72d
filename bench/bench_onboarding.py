"""Benchmark: `ghl-bridge location add --from-csv` for many locations: wall time and locations per second with rows
checked in parallel (the default, 8 at once), against one row at a time (--concurrency 1) measured in the same run.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/bench_onboarding.py \
        [--locations 60] [--latency-ms 150]

Starts a local stack of its own (own database, PostgREST, gateway, GHL sandbox on free ports). Makes 2 x LOCATIONS
sandbox locations, each answering after LATENCY_MS (GHL's own latency is about that) with 3 custom fields, and two
CSV files of LOCATIONS rows (mode 600). Runs the CLI as an operator would (a subprocess, against the stack as a
hosted project) on the first file with --concurrency 1 (the baseline), on the second with the default, then the
second again (every row `unchanged`). Counts the GHL requests per location from the sandbox (2 expected: the
location, its custom fields) and checks every row was stored.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FIELDS = [{"id": "cf_li", "name": "LinkedIn URL"}, {"id": "cf_title", "name": "Job Title"},
          {"id": "cf_other", "name": "Favourite Colour"}]


def write_csv(path: Path, locations) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "token", "name", "type", "client"])
        for location in locations:
            writer.writerow([location.id, location.token, "", "internal", ""])
    path.chmod(0o600)
    return path


def run_cli(info: dict, csv_path: Path, *extra: str) -> tuple[float, dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SUPABASE_", "GHL_"))}
    env.update(SUPABASE_URL=info["supabase_url"], SUPABASE_SERVICE_ROLE_KEY=info["service_role_key"],
               GHL_API_BASE_URL=info["ghl_sandbox_url"], PYTHONPATH=str(ROOT))
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "ghl_bridge.cli", "location", "add", "--from-csv", str(csv_path),
                           "--json", *extra], capture_output=True, text=True, env=env, cwd=ROOT, timeout=1800)
    elapsed = time.perf_counter() - began
    result = json.loads(done.stdout)
    if not result.get("ok"):
        raise SystemExit(f"the CSV run failed: {json.dumps(result)[:2000]}")
    return elapsed, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--locations", type=int, default=60)
    parser.add_argument("--latency-ms", type=float, default=150.0)
    args = parser.parse_args()

    from ghl_bridge.sandbox.admin import SandboxAdmin
    from ghl_bridge.stack.stack import Stack, StackConfig

    state = Path(tempfile.mkdtemp(prefix="bench-onboarding-"))
    stack = Stack(StackConfig(state_dir=state, server_url=os.environ.get("DATABASE_URL") or None,
                              database_name=f"bench_{uuid.uuid4().hex[:10]}", fixed_ports=False,
                              drop_database_on_down=True, function_env={"LOG_LEVEL": "WARNING"}))
    info = stack.up()
    try:
        with SandboxAdmin(info["ghl_sandbox_url"]) as admin:
            sets = [[admin.create_location(latency_ms=args.latency_ms, custom_fields=FIELDS, timezone="Europe/Paris")
                     for _ in range(args.locations)] for _ in range(2)]
            baseline_csv = write_csv(state / "baseline.csv", sets[0])
            parallel_csv = write_csv(state / "parallel.csv", sets[1])

            baseline_s, _ = run_cli(info, baseline_csv, "--concurrency", "1")
            parallel_s, _ = run_cli(info, parallel_csv)
            again_s, again = run_cli(info, parallel_csv)
            requests = [admin.stats(location.id)["requests_total"] for location in sets[0] + sets[1]]
        with psycopg.connect(info["database_url"]) as conn:
            stored = conn.execute("SELECT count(*) FROM ghl_integrations WHERE time_zone = 'Europe/Paris' "
                                  "AND custom_field_mapping = '{\"linkedin_url\": \"cf_li\", \"contact_title\": "
                                  "\"cf_title\"}'::jsonb").fetchone()[0]
        n = args.locations
        unchanged = sum(1 for row in again["rows"] if row.get("outcome") == "unchanged")
        print(f"location add --from-csv, {n} locations per file, sandbox latency {args.latency_ms:g} ms per GHL "
              "request, CLI as a subprocess (its start-up included)")
        print(f"  baseline, one row at a time (--concurrency 1): {baseline_s:6.2f} s  {n / baseline_s:6.1f} "
              "locations/s")
        print(f"  parallel (default, 8 rows at once):           {parallel_s:6.2f} s  {n / parallel_s:6.1f} "
              f"locations/s  -> {baseline_s / parallel_s:.1f}x the baseline")
        print(f"  the parallel file again (all unchanged: {unchanged}/{n}): {again_s:6.2f} s")
        print(f"  GHL requests per location: min {min(requests)}, max {max(requests)} (2 per add: the location, its "
              f"custom fields; 4 for the file added twice); rows stored with GHL's time zone and the proposed "
              f"mapping: {stored} of {2 * n}")
    finally:
        stack.down()


if __name__ == "__main__":
    main()
