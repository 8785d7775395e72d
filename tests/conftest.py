"""Test fixtures: one real local stack per test run (its own database, free ports, temp folder).

The server is DATABASE_URL's (CI: the machine's PostgreSQL 15) or, without it, an embedded
PostgreSQL. Tests isolate themselves with unique ids instead of cleaning up.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg.rows import dict_row

# No secret in any log line of the run: the last test greps every stack log and captured output for them.
pytest_plugins = ["tests.security.secret_scan"]

TEST_WEBHOOK_SECRET = "test-webhook-secret-" + uuid.uuid4().hex
TEST_SCHEDULER_SECRET = "test-scheduler-secret-" + uuid.uuid4().hex


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> Iterator[dict]:
    from ghl_bridge.stack.stack import Stack, StackConfig

    config = StackConfig(
        state_dir=tmp_path_factory.mktemp("stack"),
        server_url=os.environ.get("DATABASE_URL") or None,
        database_name=f"t_{uuid.uuid4().hex[:12]}",
        fixed_ports=False,
        drop_database_on_down=True,
        function_env={"GHL_WEBHOOK_SECRET": TEST_WEBHOOK_SECRET, "SCHEDULER_SECRET": TEST_SCHEDULER_SECRET,
                      "LOG_LEVEL": "DEBUG"},
    )
    running = Stack(config)
    try:
        info = running.up()
        info["log_dir"] = str(running.log_dir)
        yield info
    finally:
        running.down()


@pytest.fixture(scope="session")
def database_url(stack) -> str:
    return stack["database_url"]


@pytest.fixture
def db(database_url) -> Iterator[psycopg.Connection]:
    """A superuser connection to the run's database (autocommit, rows as dicts): for set-up and checks."""
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        yield conn


@pytest.fixture(scope="session")
def service_client(stack):
    from supabase import create_client

    return create_client(stack["supabase_url"], stack["service_role_key"])


@pytest.fixture(scope="session")
def anon_client(stack):
    from supabase import create_client

    return create_client(stack["supabase_url"], stack["anon_key"])


@pytest.fixture(scope="session")
def ghl_sandbox(stack):
    """The stack's GHL sandbox (ghl_bridge.sandbox.admin.SandboxAdmin); tests create their own locations."""
    from ghl_bridge.sandbox.admin import SandboxAdmin

    if not stack.get("ghl_sandbox_url"):
        pytest.skip("GHL_API_BASE_URL points at another GHL: this stack runs no sandbox")
    with SandboxAdmin(stack["ghl_sandbox_url"]) as admin:
        yield admin


@pytest.fixture(scope="session")
def anthropic_standin(stack):
    """The stack's Anthropic API stand-in (ghl_bridge.anthropic_standin.admin.AnthropicStandinAdmin); its url is
    stack["anthropic_url"] and the key the functions use stack["anthropic_api_key"]."""
    from ghl_bridge.anthropic_standin.admin import AnthropicStandinAdmin

    if not stack.get("anthropic_api_key"):
        pytest.skip("ANTHROPIC_BASE_URL points at another Anthropic: this stack runs no stand-in")
    with AnthropicStandinAdmin(stack["anthropic_url"]) as admin:
        yield admin


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"
