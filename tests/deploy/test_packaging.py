"""Each built artifact is complete: installed into a fresh virtual environment from its own requirements.txt,
started there with functions-framework from its own folder (PYTHONPATH unset, so nothing outside the
artifact can be imported), it answers real requests against the local stack.

The venv holds the artifact's pins alone: `uv pip install --require-hashes -r requirements.txt` (every file checked
against the lock's hashes, and any dependency the pins leave out refused, as pip does in Cloud Functions' build),
then `uv pip check`. uv rather than pip only for speed: seconds from its cache where pip takes one to two minutes
on a busy machine. Artifacts with the same pins share one venv (today all three import the same packages).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from packaging.markers import Marker

from ghl_bridge import build, lock
from ghl_bridge.stack.processes import free_port
from tests.conftest import TEST_SCHEDULER_SECRET, TEST_WEBHOOK_SECRET, unique

pytestmark = pytest.mark.stack
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"
UV = [sys.executable, "-m", "uv"]  # the dev lock's uv


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory) -> dict[str, Path]:
    return build.build_all(tmp_path_factory.mktemp("artifacts"))


def _pins(requirements: Path) -> str:
    return "".join(line + "\n" for line in requirements.read_text().splitlines() if not line.startswith("#"))


@pytest.fixture(scope="session")
def clean_venvs(tmp_path_factory, artifacts) -> dict[str, Path]:
    """Fresh venvs (no system site-packages, no project install), each holding only an artifact's pins: name -> venv."""
    venvs: dict[str, Path] = {}
    by_pins: dict[str, Path] = {}
    for name, artifact in artifacts.items():
        pins = _pins(artifact / "requirements.txt")
        if pins not in by_pins:
            venv = tmp_path_factory.mktemp("artifact-venv") / "venv"
            python = str(venv / "bin" / "python")
            for command in (["venv", "--quiet", "--python", sys.executable, str(venv)],
                            ["pip", "install", "--quiet", "--python", python, "--require-hashes",
                             "-r", str(artifact / "requirements.txt")],
                            ["pip", "check", "--python", python]):
                result = subprocess.run(UV + command, capture_output=True, text=True, timeout=900)
                assert result.returncode == 0, (command, result.stdout[-3000:], result.stderr[-3000:])
            by_pins[pins] = venv
        venvs[name] = by_pins[pins]
    return venvs


def _function_env(venv: Path, stack: dict, home: Path) -> dict[str, str]:
    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(home), "PYTHONNOUSERSITE": "1",
        "SUPABASE_URL": stack["supabase_url"], "SUPABASE_SERVICE_ROLE_KEY": stack["service_role_key"],
        "GHL_WEBHOOK_SECRET": TEST_WEBHOOK_SECRET, "SCHEDULER_SECRET": TEST_SCHEDULER_SECRET,
    }
    if stack.get("ghl_sandbox_url"):
        env["GHL_API_BASE_URL"] = stack["ghl_sandbox_url"]
    return env  # deliberately no PYTHONPATH


@pytest.fixture(scope="session")
def served(artifacts, clean_venvs, stack, tmp_path_factory) -> Iterator[dict[str, str]]:
    """Every artifact under functions-framework in the clean venv: name -> base URL."""
    logs = tmp_path_factory.mktemp("artifact-logs")
    processes: dict[str, tuple[subprocess.Popen, Path]] = {}
    urls: dict[str, str] = {}
    try:
        for name, artifact in artifacts.items():
            port = free_port()
            log = logs / f"{name}.log"
            processes[name] = (subprocess.Popen(
                [str(clean_venvs[name] / "bin" / "functions-framework"), "--target", "handle", "--source", "main.py",
                 "--host", "127.0.0.1", "--port", str(port)],
                cwd=artifact, env=_function_env(clean_venvs[name], stack, logs), stdout=log.open("wb"),
                stderr=subprocess.STDOUT), log)
            urls[name] = f"http://127.0.0.1:{port}/"
        for name, url in urls.items():
            process, log = processes[name]
            deadline = time.monotonic() + 60
            while True:
                assert process.poll() is None, f"{name} exited:\n{log.read_text()[-3000:]}"
                try:
                    httpx.get(url, timeout=2)
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, f"{name} did not answer in 60 s:\n{log.read_text()[-3000:]}"
                    time.sleep(0.1)
        yield urls
    finally:
        for process, _ in processes.values():
            process.terminate()
        for process, _ in processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def test_each_clean_venv_holds_exactly_its_artifacts_pins(artifacts, clean_venvs):
    for name, artifact in artifacts.items():
        listed = subprocess.run(UV + ["pip", "list", "--format=json", "--python", str(clean_venvs[name] / "bin" / "python")],
                                capture_output=True, text=True, timeout=60, check=True)
        installed = {lock.normalise(p["name"]): p["version"] for p in json.loads(listed.stdout)}
        # pins whose environment marker excludes this platform are not installed (anthropic's httpx2-jsfetch is
        # for emscripten only)
        pinned = {pin.name: pin.version for pin in lock.read_lock(artifact / "requirements.txt")
                  if not pin.marker or Marker(pin.marker).evaluate()}
        assert installed == pinned, name


def test_the_clean_venv_cannot_import_the_project_from_outside_the_artifact(artifacts, clean_venvs):
    probe = ("import importlib.util, os, shared; "
             "print(json.dumps([importlib.util.find_spec(m) is not None for m in ('ghl_bridge', 'tests')] "
             "+ [os.path.dirname(os.path.dirname(shared.__file__))]))")
    for artifact in artifacts.values():
        result = subprocess.run([str(clean_venvs[artifact.name] / "bin" / "python"), "-c", "import json; " + probe],
                                cwd=artifact, env={"PATH": "/usr/bin:/bin", "PYTHONNOUSERSITE": "1"},
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == [False, False, str(artifact)]


def test_webhook_artifact_rejects_a_wrong_secret_and_records_a_call(served, db):
    url = served["ghl-call-webhook"]
    location, call_id = unique("loc"), unique("call")
    db.execute("INSERT INTO ghl_integrations (location_id, api_token) VALUES (%s, 'token')", (location,))
    body = json.loads((FIXTURES / "call-completed.json").read_text())
    body.update(locationId=location, callId=call_id)

    wrong = httpx.post(url, json=body, headers={"X-Webhook-Secret": "not-the-secret"}, timeout=30)
    assert wrong.status_code == 401, wrong.text
    assert TEST_WEBHOOK_SECRET not in wrong.text

    accepted = httpx.post(url, json=body, headers={"X-Webhook-Secret": TEST_WEBHOOK_SECRET}, timeout=30)
    assert accepted.status_code == 200, accepted.text
    row = db.execute("SELECT id, ghl_location_id FROM sales_calls WHERE external_call_id = %s", (call_id,)).fetchone()
    assert accepted.json() == {"outcome": "inserted", "call_id": call_id, "id": str(row["id"])}
    assert row["ghl_location_id"] == location


def test_sync_artifact_answers_a_scheduler_dry_run(served, db, ghl_sandbox):
    url = served["sync-prospects-to-ghl"]
    location = ghl_sandbox.create_location()
    db.execute("INSERT INTO ghl_integrations (location_id, api_token) VALUES (%s, %s)", (location.id, location.token))

    unauthenticated = httpx.post(url, json={"dry_run": True}, timeout=30)
    assert unauthenticated.status_code == 401

    answer = httpx.post(url, json={"location_id": location.id, "dry_run": True},
                        headers={"Authorization": f"Bearer {TEST_SCHEDULER_SECRET}"}, timeout=120)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["dry_run"] is True and [s["location_id"] for s in body["locations"]] == [location.id]


def test_import_artifact_pulls_a_batch_and_reports_it(served, db, ghl_sandbox):
    url = served["process-ghl-import"]
    location = ghl_sandbox.create_location()
    ghl_sandbox.seed(location.id, contacts=3)
    db.execute("INSERT INTO ghl_integrations (location_id, api_token) VALUES (%s, %s)", (location.id, location.token))
    headers = {"Authorization": f"Bearer {TEST_SCHEDULER_SECRET}"}

    pulled = httpx.post(url, json={"action": "pull", "location_id": location.id, "kinds": ["contacts"]},
                        headers=headers, timeout=120)
    assert pulled.status_code == 200, pulled.text
    batch = pulled.json()["batch"]
    row = db.execute("SELECT location_id, total_records FROM ghl_import_batches WHERE id = %s", (batch["id"],)).fetchone()
    assert row["location_id"] == location.id and row["total_records"] == 3

    status = httpx.post(url, json={"action": "process", "batch_id": batch["id"]}, headers=headers, timeout=120)
    assert status.status_code == 200, status.text
    assert status.json()["batch"]["id"] == batch["id"]
