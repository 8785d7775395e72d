"""`ghl-bridge stack up --detach --json` / `status` / `down`, as a user runs them (a real subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from ghl_bridge.stack import database
from ghl_bridge.stack.processes import pid_is_alive

CLI = [sys.executable, "-m", "ghl_bridge.cli"]


@pytest.fixture
def cli_env(tmp_path):
    """The CLI's environment: its own state folder and free ports; its own database on DATABASE_URL's server,
    or (without DATABASE_URL) an embedded PostgreSQL in the state folder, as on a fresh machine."""
    server = os.environ.get("DATABASE_URL")
    env = {**os.environ, "GHL_BRIDGE_STATE_DIR": str(tmp_path / "state"), "GHL_BRIDGE_PORTS": "auto"}
    env.pop("GHL_WEBHOOK_SECRET", None)
    dbname = f"t_cli_{uuid.uuid4().hex[:8]}"
    if server:
        env["DATABASE_URL"] = database.with_database(server, dbname)
    yield env
    subprocess.run([*CLI, "stack", "down"], env=env, capture_output=True, timeout=60)
    if server:
        database.drop_database(database.with_database(server, "postgres"), dbname)


def test_stack_up_detach_json_status_and_down(cli_env):
    up = subprocess.run([*CLI, "stack", "up", "--detach", "--json"], env=cli_env, capture_output=True, text=True,
                        timeout=120)
    assert up.returncode == 0, up.stderr
    info = json.loads(up.stdout)
    assert set(info) >= {"supabase_url", "service_role_key", "anon_key", "database_url", "functions"}
    expected_functions = {p.parent.name.replace("_", "-") for p in Path("functions").glob("*/main.py")}
    assert set(info["functions"]) == expected_functions

    rest = f"{info['supabase_url']}/rest/v1/ghl_integrations"
    service = httpx.get(rest, headers={"apikey": info["service_role_key"],
                                       "Authorization": f"Bearer {info['service_role_key']}"})
    assert service.status_code == 200
    anon = httpx.get(rest, headers={"apikey": info["anon_key"], "Authorization": f"Bearer {info['anon_key']}"})
    assert anon.status_code == 200 and anon.json() == []
    for url in info["functions"].values():
        assert httpx.get(url).status_code == 405  # each function answers through the gateway (POST only)

    # The seeded demo integration exists in the database and, with its token, in the stack's GHL sandbox.
    seeded = httpx.get(rest, params={"location_id": "eq.loc_Ab12Cd34Ef56"},
                       headers={"apikey": info["service_role_key"], "Authorization": f"Bearer {info['service_role_key']}"})
    assert [row["api_token"] for row in seeded.json()] == ["local-demo-token"]
    search = httpx.post(f"{info['ghl_api_base_url']}/contacts/search",
                        json={"locationId": "loc_Ab12Cd34Ef56", "pageLimit": 100},
                        headers={"Authorization": "Bearer local-demo-token", "Version": "2021-07-28"})
    assert search.status_code == 200, search.text
    assert search.json()["total"] == 20  # the demo location is seeded with contacts for an import pull

    # The Anthropic stand-in answers with the stack's own key (the one the functions get), and only with it.
    assert info["anthropic_api_key"].startswith("sk-ant-local-") and info["anthropic_url"].startswith("http://127.0.0.1:")
    message = {"model": "claude-haiku-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": "Agent: hi"}]}
    answered = httpx.post(f"{info['anthropic_url']}/v1/messages", json=message,
                          headers={"x-api-key": info["anthropic_api_key"], "anthropic-version": "2023-06-01"})
    assert answered.status_code == 200, answered.text
    assert answered.json()["type"] == "message" and answered.headers["anthropic-ratelimit-requests-remaining"]
    refused = httpx.post(f"{info['anthropic_url']}/v1/messages", json=message,
                         headers={"x-api-key": "not-the-stack-key", "anthropic-version": "2023-06-01"})
    assert refused.status_code == 401 and refused.json()["error"]["type"] == "authentication_error"

    status = subprocess.run([*CLI, "stack", "status", "--json"], env=cli_env, capture_output=True, text=True)
    assert status.returncode == 0, status.stdout
    assert json.loads(status.stdout)["services"]["anthropic_standin"]["running"]
    pids = [s["pid"] for s in json.loads(status.stdout)["services"].values() if s["pid"]]
    assert pids and all(pid_is_alive(pid) for pid in pids)

    down = subprocess.run([*CLI, "stack", "down"], env=cli_env, capture_output=True, text=True, timeout=60)
    assert down.returncode == 0
    assert not any(pid_is_alive(pid) for pid in pids), "stack down must leave no process of the stack running"
    after = subprocess.run([*CLI, "stack", "status"], env=cli_env, capture_output=True, text=True)
    assert "no stack is running" in after.stdout


@pytest.mark.parametrize("url, expected", [
    ("postgresql://postgres@127.0.0.1:5432/postgres", "ghl_bridge"),  # never fill the maintenance database
    ("postgresql://postgres@127.0.0.1:5432/crm_dev", None),             # the database the user named
    (None, None),                                                       # embedded server: its own postgres
])
def test_cli_stack_database_choice(monkeypatch, url, expected):
    from ghl_bridge.stack.stack import StackConfig

    if url:
        monkeypatch.setenv("DATABASE_URL", url)
    else:
        monkeypatch.delenv("DATABASE_URL", raising=False)
    assert StackConfig.for_cli().database_name == expected
