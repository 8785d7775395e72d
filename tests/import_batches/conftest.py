"""Import test helpers: sandbox locations wired to integrations, the service with real ports, counter checks."""

from __future__ import annotations

import time
import uuid

import pytest

from tests.conftest import TEST_SCHEDULER_SECRET, unique


@pytest.fixture
def import_location(ghl_sandbox, db):
    """import_location('internal' | 'client', token=None) -> (sandbox location, client_id or None): a sandbox
    location with an active integration row (token: the sandbox's, unless a wrong one is asked for)."""

    def make(kind: str = "internal", token: str | None = None, **settings):
        settings.setdefault("burst_limit", 1000)
        settings.setdefault("burst_window_ms", 1000)
        location = ghl_sandbox.create_location(**settings)
        client_id = None
        if kind == "client":
            client_id = db.execute("INSERT INTO clients (name) VALUES (%s) RETURNING id",
                                   (unique("client"),)).fetchone()["id"]
        db.execute("INSERT INTO ghl_integrations (location_id, api_token, integration_type, client_id) "
                   "VALUES (%s, %s, %s, %s)", (location.id, token or location.token, kind, client_id))
        return location, client_id

    return make


@pytest.fixture
def settings(stack):
    from shared.config import Settings

    return Settings(supabase_url=stack["supabase_url"], supabase_service_role_key=stack["service_role_key"],
                    ghl_api_base_url=stack["ghl_sandbox_url"], scheduler_secret=TEST_SCHEDULER_SECRET,
                    import_page_size=100, import_chunk_size=100)


@pytest.fixture
def repo(stack):
    from shared.adapters.import_repository import ImportRepository
    from shared.adapters.supabase_db import create_service_client

    return ImportRepository(create_service_client(stack["supabase_url"], stack["service_role_key"]))


@pytest.fixture
def ghl_factory(settings):
    from shared.services.import_batches import ghl_client_factory

    return ghl_client_factory(settings)


def far_deadline(seconds: float = 120.0) -> float:
    return time.monotonic() + seconds


def pull(repo, ghl_factory, settings, location_id, kinds=("contacts", "calls"), deadline=None, since=None):
    from shared.domain.import_records import PullRequest
    from shared.services.import_batches import start_import

    request = PullRequest(location_id=location_id, kinds=tuple(kinds), since=since, created_by=None)
    return start_import(repo, ghl_factory, settings, request,
                        deadline=far_deadline() if deadline is None else deadline)


def staged(db, batch_id) -> dict[str, dict]:
    """The batch's staging rows by external id."""
    rows = db.execute("SELECT * FROM ghl_import_staging WHERE batch_id = %s", (batch_id,)).fetchall()
    return {row["external_id"]: row for row in rows}


def assert_counters_true(db, batch_id) -> dict:
    """processed_records / error_count equal the staged row states; total_records equals the rows once pulled."""
    # one statement, one snapshot: the batch row and its staging rows as of the same moment
    both = db.execute(
        "SELECT to_jsonb(b) AS batch, c.* FROM ghl_import_batches b, LATERAL ("
        "  SELECT count(*) AS staged, count(*) FILTER (WHERE status IN ('imported', 'skipped', 'error')) AS final,"
        "  count(*) FILTER (WHERE status = 'error') AS errors,"
        "  count(*) FILTER (WHERE status IN ('pending', 'matched')) AS open"
        "  FROM ghl_import_staging WHERE batch_id = b.id) c WHERE b.id = %s", (batch_id,)).fetchone()
    batch, counts = both.pop("batch"), both
    assert batch["processed_records"] == counts["final"], (batch, counts)
    assert batch["error_count"] == counts["errors"], (batch, counts)
    if batch["pull_completed_at"] is not None:
        assert batch["total_records"] == counts["staged"], (batch, counts)
    else:
        assert batch["total_records"] is None
    if batch["status"] == "completed":
        assert counts["open"] == 0 and batch["completed_at"] is not None
    return {**batch, **counts}


def contact_record(contact_id=None, **fields) -> dict:
    return {"id": contact_id or f"c{uuid.uuid4().hex[:18]}", "firstName": "Ada", "lastName": "Import", **fields}


def call_record(message_id=None, contact_id=None, status="completed", duration=120, **fields) -> dict:
    meta = {"call": {"status": status, **({"duration": duration} if duration is not None else {})}}
    return {"id": message_id or f"m{uuid.uuid4().hex[:18]}", "contactId": contact_id or f"c{uuid.uuid4().hex[:18]}",
            "messageType": "TYPE_CALL", "type": 1, "direction": "outbound", "status": "delivered", "meta": meta,
            **fields}


def insert_prospect(db, **fields) -> str:
    columns = ", ".join(fields)
    placeholders = ", ".join(["%s"] * len(fields))
    return str(db.execute(f"INSERT INTO sales_prospects ({columns}) VALUES ({placeholders}) RETURNING id",
                          tuple(fields.values())).fetchone()["id"])


def insert_contact(db, client_id, **fields) -> str:
    fields = {"client_id": client_id, **fields}
    columns = ", ".join(fields)
    placeholders = ", ".join(["%s"] * len(fields))
    return str(db.execute(f"INSERT INTO contacts ({columns}) VALUES ({placeholders}) RETURNING id",
                          tuple(fields.values())).fetchone()["id"])


def unique_phone() -> str:
    n = uuid.uuid4().int
    return f"+1{2 + n % 8}{(n // 10) % 10**9:09d}"


def unique_email() -> str:
    return f"{uuid.uuid4().hex[:12]}@example.com"
