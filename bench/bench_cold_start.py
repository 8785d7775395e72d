#!/usr/bin/env python
"""Cold start of each function artifact, as deployed: built by ghl_bridge.build, run from its own folder in a
clean venv holding only its requirements.txt (PYTHONPATH unset). A script, not a timed test.

For each artifact it prints (medians over --runs fresh processes):
  import      `import main` in a fresh interpreter (time.perf_counter around the import)
  listening   process start -> first answered HTTP request (a GET: the handler's 405; nothing lazy runs)
  first req   process start -> first answered *real* request against a local stack (lazy imports, settings,
              the Supabase client and the database round trips of a first call)
  warm req    the same request again on the warm process
and, measured in the same run as the baselines: a bare interpreter (`python -c pass`), `import
functions_framework`, a hello-world function under functions-framework (listening and first request), and
the webhook's reference handler (bench/reference_webhook: functions-framework + the same supabase client + one
`ingest_call_event` rpc, nothing else), the floor of the webhook's own design, built like an artifact.

Then the heaviest imports on each path, from `python -X importtime` (one run each): the module-import path
(`import main`) and the first-request path (what the handler imports lazily on its first call).

Target: the webhook's first real request at most 1.5x the hello-world function's, in the same run.

Usage: .venv/bin/python bench/bench_cold_start.py [--runs 5] [--venv DIR] [--only ghl-call-webhook]
Needs DATABASE_URL (a PostgreSQL server; the bench's stack creates and drops a database of its own) or runs
an embedded PostgreSQL in a temporary folder. --venv reuses a venv (created there when missing).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
import psycopg  # noqa: E402

from ghl_bridge import build  # noqa: E402
from ghl_bridge.stack.processes import free_port  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_webhook import cpu_seconds  # noqa: E402

WEBHOOK_SECRET = "bench-webhook-" + uuid.uuid4().hex
SCHEDULER_SECRET = "bench-scheduler-" + uuid.uuid4().hex
FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "webhooks" / "call-completed.json"
HELLO = "def handle(request):\n    return 'ok'\n"
REFERENCE = "reference handler (floor)"


def ensure_venv(venv: Path, requirements: Path) -> Path:
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating a clean venv in {venv} (pip install -r requirements.txt) ...", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    result = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r",
                             str(requirements)], capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"pip install failed:\n{result.stderr[-3000:]}")
    return python


def clean_env(venv: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": tempfile.gettempdir(), "PYTHONNOUSERSITE": "1",
           "PYTHONDONTWRITEBYTECODE": "0"}
    env.update(extra or {})
    return env  # no PYTHONPATH: only the artifact folder and the venv


def median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


# ---- measurements ---------------------------------------------------------------------------------

def time_import(python: Path, folder: Path, env: dict, module: str = "main", preload: str = "") -> float:
    """Seconds to import `module` in a fresh interpreter (after `preload`, not timed)."""
    code = (f"{preload}\nimport time; t = time.perf_counter(); import {module}; "
            "print(time.perf_counter() - t)")
    result = subprocess.run([str(python), "-c", code], cwd=folder, env=env, capture_output=True, text=True, timeout=120)
    if result.returncode:
        raise RuntimeError(f"import {module} failed in {folder}:\n{result.stderr[-2000:]}")
    return float(result.stdout.strip().splitlines()[-1])


def time_bare(python: Path, env: dict) -> float:
    started = time.perf_counter()
    subprocess.run([str(python), "-c", "pass"], env=env, check=True)
    return time.perf_counter() - started


def cold_start(venv: Path, folder: Path, env: dict, request) -> tuple[float, float, float, float, float]:
    """(listening, first real request, its own latency, warm latency, CPU seconds of the process up to the first
    real answer), seconds since process start. The CPU time is the steadier figure on a busy machine."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    log = tempfile.TemporaryFile()
    started = time.perf_counter()
    process = subprocess.Popen([str(venv / "bin" / "functions-framework"), "--target", "handle", "--source",
                                "main.py", "--host", "127.0.0.1", "--port", str(port)],
                               cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        with httpx.Client(timeout=120) as client:
            while True:
                if process.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"{folder.name} exited:\n{log.read().decode()[-2000:]}")
                try:
                    client.get(url, timeout=1)
                    break
                except httpx.TransportError:
                    time.sleep(0.005)
            listening = time.perf_counter() - started
            before = time.perf_counter()
            request(client, url)
            first = time.perf_counter() - started
            first_latency = time.perf_counter() - before
            cpu = cpu_seconds(process.pid)
            before = time.perf_counter()
            request(client, url)
            warm = time.perf_counter() - before
        return listening, first, first_latency, warm, cpu
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


# ---- -X importtime --------------------------------------------------------------------------------

_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|(\s+)(\S+)$")


def importtime(python: Path, folder: Path, env: dict, code: str) -> list[tuple[int, str, float]]:
    """[(level, module, cumulative seconds)] in the order imports finished."""
    result = subprocess.run([str(python), "-X", "importtime", "-c", code], cwd=folder, env=env,
                            capture_output=True, text=True, timeout=300)
    if result.returncode:
        raise RuntimeError(f"importtime run failed in {folder}:\n{result.stderr[-2000:]}")
    entries = []
    for line in result.stderr.splitlines():
        match = _LINE.match(line)
        if match:
            entries.append(((len(match.group(3)) - 1) // 2, match.group(4), int(match.group(2)) / 1e6))
    return entries


WATCHED = ("supabase", "postgrest", "boto3", "phonenumbers", "cryptography", "pydantic_settings", "httpx")


def package_costs(entries: list[tuple[int, str, float]]) -> dict[str, float]:
    """Each top-level package's own import on this path (its dependencies included), outermost occurrence."""
    costs: dict[str, float] = {}
    for _, module, cumulative in entries:
        if "." not in module and not module.startswith("_") and module not in ("main", "shared", MARKER):
            costs[module] = max(costs.get(module, 0.0), cumulative)
    return costs


def heaviest(entries, count: int = 6) -> list[tuple[str, float]]:
    return sorted(package_costs(entries).items(), key=lambda item: -item[1])[:count]


def shared_modules(entries, count: int = 4) -> list[tuple[str, float]]:
    costs = {m: c for _, m, c in entries if m.startswith("shared.") and m.count(".") <= 2}
    return sorted(costs.items(), key=lambda item: -item[1])[:count]


MARKER = "_bench_request_starts"


def split_paths(entries):
    """(entries of `import main`, entries after the marker: what the first request imported lazily)."""
    names = [module for _, module, _ in entries]
    main_end = names.index("main") + 1
    marker = names.index(MARKER)
    return entries[:main_end], entries[marker + 1:]


# ---- the stack and the requests -------------------------------------------------------------------

def start_stack(state_dir: Path):
    from ghl_bridge.stack.stack import Stack, StackConfig

    config = StackConfig(state_dir=state_dir, server_url=os.environ.get("DATABASE_URL") or None,
                         database_name=f"bench_{uuid.uuid4().hex[:10]}", fixed_ports=False,
                         drop_database_on_down=True,
                         function_env={"GHL_WEBHOOK_SECRET": WEBHOOK_SECRET, "SCHEDULER_SECRET": SCHEDULER_SECRET})
    stack = Stack(config)
    return stack, stack.up()


def make_requests(info: dict) -> dict:
    """The first real request of each function (each call new ids, so a cold start does real work)."""
    location = f"loc_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(info["database_url"], autocommit=True) as conn:
        conn.execute("INSERT INTO ghl_integrations (location_id, api_token) VALUES (%s, 'bench-token')", (location,))
    fixture = json.loads(FIXTURE.read_text())
    scheduler = {"Authorization": f"Bearer {SCHEDULER_SECRET}"}

    def webhook(client, url):
        body = {**fixture, "locationId": location, "callId": f"call_{uuid.uuid4().hex}"}
        answer = client.post(url, json=body, headers={"X-Webhook-Secret": WEBHOOK_SECRET})
        assert answer.status_code == 200, answer.text

    def sync(client, url):  # a dry run of a location with nothing due: settings, client, SQL, no GHL call
        answer = client.post(url, json={"location_id": location, "dry_run": True, "limit": 1}, headers=scheduler)
        assert answer.status_code in (200,), answer.text

    def process(client, url):  # a scheduler's "process" with no open batch: settings, client, one rpc
        answer = client.post(url, json={"action": "process", "batch_id": str(uuid.uuid4())}, headers=scheduler)
        assert answer.status_code in (200, 400), answer.text  # 400: that batch does not exist (after the rpc)

    def hello(client, url):
        assert client.get(url).status_code == 200

    return {"ghl-call-webhook": webhook, "sync-prospects-to-ghl": sync, "process-ghl-import": process,
            "hello-world (baseline)": hello, REFERENCE: webhook}


def first_request_code(name: str, info: dict) -> str:
    """A script for -X importtime: import main, then one real request through the framework in-process."""
    fixture = json.loads(FIXTURE.read_text())
    bodies = {
        "ghl-call-webhook": ({**fixture, "callId": f"call_{uuid.uuid4().hex}"}, {"X-Webhook-Secret": WEBHOOK_SECRET}),
        "sync-prospects-to-ghl": ({"location_id": "none", "dry_run": True}, {"Authorization": f"Bearer {SCHEDULER_SECRET}"}),
        "process-ghl-import": ({"action": "process", "batch_id": str(uuid.uuid4())},
                               {"Authorization": f"Bearer {SCHEDULER_SECRET}"}),
    }
    body, headers = bodies[name]
    return ("import main\n"  # first, alone: its entries are the module-import path
            "import functions_framework\n"
            "client = functions_framework.create_app('handle', 'main.py').test_client()\n"
            f"import {MARKER}\n"  # everything after this line is the first request's
            f"client.post('/', json={body!r}, headers={headers!r})\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--venv", type=Path, help="a venv to (re)use; default: a new one in a temporary folder")
    parser.add_argument("--only", action="append", metavar="FUNCTION",
                        help="measure only this function (repeatable); the hello-world baseline always runs")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-cold-start-"))
    artifacts = build.build_all(work / "artifacts")
    if args.only:
        artifacts = {name: folder for name, folder in artifacts.items() if name in args.only}
    hello = work / "artifacts" / "hello-world (baseline)"
    hello.mkdir()
    (hello / "main.py").write_text(HELLO)
    venv = args.venv or work / "venv"
    python = ensure_venv(venv, next(iter(artifacts.values())) / "requirements.txt")

    stack, info = start_stack(work / "stack")
    try:
        env = clean_env(venv, {"SUPABASE_URL": info["supabase_url"], "SUPABASE_SERVICE_ROLE_KEY": info["service_role_key"],
                               "GHL_WEBHOOK_SECRET": WEBHOOK_SECRET, "SCHEDULER_SECRET": SCHEDULER_SECRET,
                               "GHL_API_BASE_URL": info.get("ghl_api_base_url", "http://127.0.0.1:9"),
                               "LOG_LEVEL": "WARNING"})
        requests = make_requests(info)
        folders = {**artifacts, hello.name: hello}
        if "ghl-call-webhook" in artifacts:  # the reference handler, packaged like the webhook's artifact
            reference = work / "artifacts" / REFERENCE
            shutil.copytree(artifacts["ghl-call-webhook"], reference)
            shutil.copy(Path(__file__).resolve().parent / "reference_webhook" / "main.py", reference / "main.py")
            folders[REFERENCE] = reference

        print(f"cold start, medians of {args.runs} fresh processes each (clean venv {venv}, {os.cpu_count()} cores, "
              "shared machine: noisy)")
        bare = [time_bare(python, env) for _ in range(args.runs)]
        framework = [time_import(python, hello, env, "functions_framework") for _ in range(args.runs)]
        # What the adapter's client costs on top of what every function has loaded by then (pydantic, httpx).
        loaded = "import pydantic, httpx"
        postgrest = [time_import(python, hello, env, "postgrest", loaded) for _ in range(args.runs)]
        print(f"baseline: python -c pass {median_ms(bare):.0f} ms (whole process); "
              f"import functions_framework {median_ms(framework):.0f} ms; "
              f"with pydantic+httpx loaded: import postgrest (supabase-py's PostgREST client, all the artifacts "
              f"carry of supabase-py) {median_ms(postgrest):.0f} ms")
        header = (f"{'function':<26} {'import main':>12} {'listening':>10} {'first req':>10} {'(its latency)':>14} "
                  f"{'warm req':>9} {'CPU to first req':>17}")
        print(header)
        print("-" * len(header))
        firsts, cpus = {}, {}
        for name, folder in folders.items():
            imports = [time_import(python, folder, env) for _ in range(args.runs)]
            starts = [cold_start(venv, folder, env, requests[name]) for _ in range(args.runs)]
            listening, first, latency, warm, cpu = (median_ms([s[i] for s in starts]) for i in range(5))
            firsts[name], cpus[name] = first, cpu
            print(f"{name:<26} {median_ms(imports):>9.0f} ms {listening:>7.0f} ms {first:>7.0f} ms "
                  f"{latency:>11.0f} ms {warm:>6.1f} ms {cpu:>14.0f} ms", flush=True)
        if "ghl-call-webhook" in firsts:
            ratio = firsts["ghl-call-webhook"] / firsts[hello.name]
            print(f"first real request: webhook / hello-world {ratio:.2f}x (target <= 1.5x: "
                  f"{'met' if ratio <= 1.5 else 'NOT met'}); reference handler / hello-world "
                  f"{firsts[REFERENCE] / firsts[hello.name]:.2f}x; webhook / reference handler "
                  f"{firsts['ghl-call-webhook'] / firsts[REFERENCE]:.2f}x")
            print(f"CPU to the first real answer: webhook / hello-world {cpus['ghl-call-webhook'] / cpus[hello.name]:.2f}x; "
                  f"reference handler / hello-world {cpus[REFERENCE] / cpus[hello.name]:.2f}x; webhook / reference "
                  f"handler {cpus['ghl-call-webhook'] / cpus[REFERENCE]:.2f}x")

        print("\nheaviest imports (cumulative ms, one -X importtime run; a package's time includes its dependencies)")
        for name, folder in artifacts.items():
            (folder / f"{MARKER}.py").write_text("")
            entries = importtime(python, folder, env, first_request_code(name, info))
            at_import, at_request = split_paths(entries)
            fmt = lambda items: ", ".join(f"{module} {seconds * 1000:.0f}" for module, seconds in items) or "-"  # noqa: E731
            where = []
            for package in WATCHED:
                on_import, on_request = package_costs(at_import).get(package), package_costs(at_request).get(package)
                where.append(f"{package}: " + (f"import path {on_import * 1000:.0f}" if on_import else
                                                f"first request {on_request * 1000:.0f}" if on_request else "never"))
            print(f"{name}\n  import path:        {fmt(heaviest(at_import))}\n"
                  f"    shared modules:   {fmt(shared_modules(at_import))}\n"
                  f"  first-request path: {fmt(heaviest(at_request))}\n"
                  f"    shared modules:   {fmt(shared_modules(at_request))}\n"
                  f"  watched: {'; '.join(where)}")
    finally:
        stack.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
