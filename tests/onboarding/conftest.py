"""Onboarding tests: the `ghl-bridge` CLI as a subprocess (argv, stdout and stderr are what is tested) against the
test stack and its GHL sandbox, as an operator working against a hosted project would run it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from ghl_bridge.paths import PROJECT_ROOT
from tests.conftest import TEST_WEBHOOK_SECRET


@dataclass
class CliRun:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    def json(self):
        return json.loads(self.stdout)


@pytest.fixture
def home(tmp_path) -> Path:
    """The operator's home and working folder: every file a command could leave behind is under it."""
    folder = tmp_path / "home"
    folder.mkdir()
    return folder


@pytest.fixture
def cli_env(stack, home) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SUPABASE_", "GHL_", "SPOOL_", "RECORDINGS_", "GCP_"))}
    env.update(SUPABASE_URL=stack["supabase_url"], SUPABASE_SERVICE_ROLE_KEY=stack["service_role_key"],
               GHL_API_BASE_URL=stack["ghl_sandbox_url"], GHL_WEBHOOK_URL=stack["functions"]["ghl-call-webhook"],
               HOME=str(home), LOG_LEVEL="DEBUG", PYTHONPATH=str(PROJECT_ROOT), COLUMNS="200")
    return env


@pytest.fixture
def cli(cli_env, home):
    """cli(*args, stdin=None, env=None) -> CliRun: `ghl-bridge ARGS` in a subprocess (LOG_LEVEL=DEBUG, so any log
    line that could hold a token is written)."""

    def run(*args: str, stdin: str | None = None, env: dict[str, str] | None = None, timeout: float = 180) -> CliRun:
        argv = [sys.executable, "-m", "ghl_bridge.cli", *args]
        done = subprocess.run(argv, input=stdin if stdin is not None else "", capture_output=True, text=True,
                              cwd=home, env={**cli_env, **(env or {})}, timeout=timeout)
        return CliRun(argv=argv, returncode=done.returncode, stdout=done.stdout, stderr=done.stderr)

    return run


@pytest.fixture
def webhook_secret_env() -> dict[str, str]:
    return {"GHL_WEBHOOK_SECRET": TEST_WEBHOOK_SECRET}


def integration(db, location_id: str) -> dict | None:
    return db.execute("SELECT * FROM ghl_integrations WHERE location_id = %s", (location_id,)).fetchone()
