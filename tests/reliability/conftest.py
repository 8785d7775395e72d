"""A stack of the reliability tests' own, on an EMBEDDED Postgres that the tests may stop and start (never the
machine's shared server), with PostgREST that they stop and start too."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.conftest import TEST_SCHEDULER_SECRET, TEST_WEBHOOK_SECRET
from tests.security.secret_scan import remember_integration_tokens, watch_stack


@pytest.fixture(scope="module")
def fault_stack(tmp_path_factory) -> Iterator[tuple]:
    """(Stack, info): Postgres embedded under a temporary folder, every port free, the functions' secrets the tests'."""
    from ghl_bridge.stack.stack import Stack, StackConfig

    config = StackConfig(state_dir=tmp_path_factory.mktemp("fault-stack"), server_url=None,
                         database_name=f"f_{uuid.uuid4().hex[:10]}", fixed_ports=False,
                         function_env={"GHL_WEBHOOK_SECRET": TEST_WEBHOOK_SECRET,
                                       "SCHEDULER_SECRET": TEST_SCHEDULER_SECRET,
                                       "DATABASE_TIMEOUT_SECONDS": "5"})
    stack = Stack(config)
    try:
        info = stack.up()
        info["log_dir"] = str(stack.log_dir)
        watch_stack(info)
        yield stack, info
        remember_integration_tokens(info)
    finally:
        stack.down()


@pytest.fixture
def fault_db(fault_stack) -> Iterator[psycopg.Connection]:
    with psycopg.connect(fault_stack[1]["database_url"], autocommit=True, row_factory=dict_row) as conn:
        yield conn
