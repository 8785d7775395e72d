"""Doctor test helpers: sandbox locations wired to integrations, the service on real ports, finding a check."""

from __future__ import annotations

import pytest
from psycopg.types.json import Jsonb

from tests.conftest import TEST_SCHEDULER_SECRET, unique


@pytest.fixture
def settings(stack):
    from shared.config import Settings

    return Settings(supabase_url=stack["supabase_url"], supabase_service_role_key=stack["service_role_key"],
                    ghl_api_base_url=stack["ghl_sandbox_url"], scheduler_secret=TEST_SCHEDULER_SECRET)


@pytest.fixture
def repo_factory(stack):
    from shared.adapters.doctor_repository import DoctorRepository
    from shared.adapters.supabase_db import create_service_client

    client = create_service_client(stack["supabase_url"], stack["service_role_key"])
    return lambda: DoctorRepository(client)


@pytest.fixture
def location(ghl_sandbox, db):
    """location('internal' | 'client', token=None, custom_field_mapping=None, custom_fields=None) -> location id:
    a sandbox location with an active integration (its own token unless another is given)."""

    def make(kind: str = "internal", token: str | None = None, custom_field_mapping: dict | None = None,
             custom_fields: list[dict] | None = None, active: bool = True) -> str:
        sandbox = ghl_sandbox.create_location(custom_fields=custom_fields)
        client_id = None
        if kind == "client":
            client_id = db.execute("INSERT INTO clients (name) VALUES (%s) RETURNING id",
                                   (unique("client"),)).fetchone()["id"]
        db.execute("INSERT INTO ghl_integrations (location_id, api_token, name, integration_type, client_id, "
                   "custom_field_mapping, is_active) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                   (sandbox.id, token or sandbox.token, "Doctor test", kind, client_id,
                    Jsonb(custom_field_mapping) if custom_field_mapping is not None else None, active))
        return sandbox.id

    return make


@pytest.fixture
def run(repo_factory, settings):
    """run(location_id, check_ghl=False, spool=None, check_spool=False) -> DoctorReport."""
    from shared.services import doctor

    def go(location_id: str | None, *, check_ghl: bool = False, spool=None, check_spool: bool = False):
        return doctor.run_doctor(repo_factory(), location_id=location_id, check_ghl=check_ghl,
                                 ghl_factory=doctor.doctor_ghl_factory(settings),
                                 ghl_reserve=settings.ghl_daily_budget_reserve, spool=spool,
                                 check_spool=check_spool)

    return go


def find(report, location_id: str, group: str, name_start: str):
    """The check of a location's group whose name starts with name_start."""
    [loc] = [loc for loc in report.locations if loc.location_id == location_id]
    [found] = [c for g in loc.groups if g.name == group for c in g.checks if c.name.startswith(name_start)]
    return found


def ingest(db, location_id: str, call_id: str, raw: dict, **fields) -> dict:
    """One webhook hit through the database function the webhook calls (the event log included)."""
    from shared.domain.calls import CallRecord

    payload = CallRecord.build(external_call_id=call_id, location_id=location_id, raw=raw, **fields).to_sql_payload()
    return db.execute("SELECT ingest_call_event(%s) AS r", (Jsonb(payload),)).fetchone()["r"]


def completed_hit(db, location_id: str, call_id: str) -> dict:
    return ingest(db, location_id, call_id, call_status="Answered", duration_seconds=60, direction="outbound",
                  raw={"hit": "completed", "callId": call_id})


def disposition_hit(db, location_id: str, call_id: str, label: str = "Callback Requested") -> dict:
    return ingest(db, location_id, call_id, disposition=label, notes="n", raw={"hit": "disposition", "d": label})


def backdate_call(db, call_id: str, hours: float) -> None:
    for table in ("sales_calls", "calls"):
        db.execute(f"UPDATE {table} SET created_at = now() - make_interval(secs => %s) WHERE external_call_id = %s",
                   (hours * 3600, call_id))


def settings_for_prices():
    from shared.config import Settings

    return Settings(supabase_url="http://unused", supabase_service_role_key="unused")
