"""Fixtures of the sync tests: settings and repository on the run's stack, locations seeded with prospects."""

from __future__ import annotations

import json

import pytest

from shared.adapters.supabase_db import create_service_client
from shared.adapters.sync_repository import SyncRepository
from shared.config import Settings
from tests.conftest import unique


def make_settings(stack, **overrides) -> Settings:
    values = {"supabase_url": stack["supabase_url"], "supabase_service_role_key": stack["service_role_key"],
              "ghl_api_base_url": stack.get("ghl_api_base_url", "http://127.0.0.1:9"), **overrides}
    return Settings(**values)


@pytest.fixture(scope="session")
def sync_database(stack):
    return create_service_client(stack["supabase_url"], stack["service_role_key"])


@pytest.fixture(scope="session")
def repository(sync_database):
    return SyncRepository(sync_database)


def insert_integration(db, location_id: str, *, token: str = "tok", mapping: dict | None = None,
                       active: bool = True, integration_type: str = "internal") -> None:
    client_id = None
    if integration_type == "client":
        client_id = db.execute("INSERT INTO clients (name) VALUES ('c') RETURNING id").fetchone()["id"]
    db.execute("INSERT INTO ghl_integrations (location_id, api_token, custom_field_mapping, is_active,"
               " integration_type, client_id) VALUES (%s, %s, %s, %s, %s, %s)",
               (location_id, token, json.dumps(mapping) if mapping is not None else None, active,
                integration_type, client_id))


def insert_prospects(db, location_id: str | None, count: int, *, campaign: str | None = None,
                     with_phone: bool = True, **columns) -> list[str]:
    """`count` prospects with unique emails (and phones); returns their ids in insertion order."""
    tag = unique("p")
    area = 200 + int(tag[-6:], 16) % 800  # phones unique across locations too (GHL may match on phone)
    ids = []
    for index in range(count):
        row = {"first_name": f"First{index}", "last_name": f"Last {tag}", "company_name": f"Firm {index}",
               "email": f"{tag}.{index}@example.com", "contact_title": "Head of Sales",
               "linkedin_url": f"https://linkedin.com/in/{tag}-{index}", "source": "conference",
               "tags": ["portal"], "campaign": campaign, "ghl_location_id": location_id, **columns}
        if with_phone and "phone" not in columns:
            row["phone"] = f"({area}) 55{index // 10000 % 10}-{index % 10000:04d}"
        names = ", ".join(row)
        marks = ", ".join(["%s"] * len(row))
        ids.append(str(db.execute(f"INSERT INTO sales_prospects ({names}) VALUES ({marks}) RETURNING id",
                                  list(row.values())).fetchone()["id"]))
    return ids


@pytest.fixture
def new_location(db):
    """A fresh active internal integration: new_location(mapping=..., token=...) -> location id."""

    def make(**kwargs) -> str:
        location_id = unique("loc")
        insert_integration(db, location_id, **kwargs)
        return location_id

    return make
