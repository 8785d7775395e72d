"""The fan-out tests' own stack: fan-out settings short enough for a test to see leases end and tasks retried.

    SYNC_LEASE_SECONDS=5 < FANOUT_LEASE_SECONDS=10: a task retried after its worker was killed starts once the
    job lease has ended, when the killed run's prospect claims have ended too, so the retry finishes the location.
    SYNC_SLOT_SECONDS=3600: every dispatch of a test run falls in one slot (the dedup under test).
    GHL_MAX_IN_FLIGHT=4: small claims (8 prospects), so a kill strands few.
    TRUSTED_INVOKER_EMAIL: the deployed configuration's token check, exercised with OIDC-shaped tokens.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.conftest import TEST_SCHEDULER_SECRET, TEST_WEBHOOK_SECRET

INVOKER = "ghl-bridge-invoker@local-project.iam.gserviceaccount.com"
AUTH = {"Authorization": f"Bearer {TEST_SCHEDULER_SECRET}"}
SYNC_QUEUE = "ghl-bridge-sync"


@pytest.fixture(scope="package")
def fanout_stack(tmp_path_factory) -> Iterator[dict]:
    from ghl_bridge.stack.stack import Stack, StackConfig

    config = StackConfig(
        state_dir=tmp_path_factory.mktemp("fanout-stack"),
        server_url=os.environ.get("DATABASE_URL") or None,
        database_name=f"t_{uuid.uuid4().hex[:12]}",
        fixed_ports=False,
        drop_database_on_down=True,
        batch_workers=3,
        function_env={"GHL_WEBHOOK_SECRET": TEST_WEBHOOK_SECRET, "SCHEDULER_SECRET": TEST_SCHEDULER_SECRET,
                      "LOG_LEVEL": "INFO", "SYNC_LEASE_SECONDS": "5", "FANOUT_LEASE_SECONDS": "10",
                      "SYNC_SLOT_SECONDS": "3600", "GHL_MAX_IN_FLIGHT": "4", "TRUSTED_INVOKER_EMAIL": INVOKER},
    )
    running = Stack(config)
    try:
        info = running.up()
        info["log_dir"] = str(running.log_dir)
        info["sync_pid"] = running.services["function:sync-prospects-to-ghl"].pid
        yield info
    finally:
        running.down()


@pytest.fixture
def fdb(fanout_stack) -> Iterator[psycopg.Connection]:
    with psycopg.connect(fanout_stack["database_url"], autocommit=True, row_factory=dict_row) as conn:
        yield conn


@pytest.fixture(scope="package")
def sandbox(fanout_stack):
    from ghl_bridge.sandbox.admin import SandboxAdmin

    with SandboxAdmin(fanout_stack["ghl_sandbox_url"]) as admin:
        yield admin


@pytest.fixture(scope="package")
def tasks_admin(fanout_stack):
    from ghl_bridge.cloudtasks_standin.admin import TasksAdmin

    with TasksAdmin(fanout_stack["cloud_tasks_url"]) as admin:
        yield admin


@pytest.fixture
def sync_locations(fdb, sandbox):
    """sync_locations(n, prospects=k, **sandbox settings) -> [location id]: sandbox locations with an active
    internal integration and k due prospects each."""
    from tests.sync.conftest import insert_integration, insert_prospects

    def make(count: int, *, prospects: int, **settings) -> list[str]:
        made = []
        for _ in range(count):
            location = sandbox.create_location(**settings)
            insert_integration(fdb, location.id, token=location.token)
            if prospects:
                insert_prospects(fdb, location.id, prospects)
            made.append(location.id)
        return made

    return make
