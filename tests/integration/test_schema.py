"""The schema against the real database and the real PostgREST: constraints, RLS, triggers, match keys."""

from __future__ import annotations

import uuid

import httpx
import psycopg
import pytest
from psycopg import errors

from ghl_bridge.stack import database
from tests.conftest import unique


def insert_integration(db, **overrides) -> dict:
    row = {"location_id": unique("loc"), "api_token": "tok-" + uuid.uuid4().hex, **overrides}
    columns = ", ".join(row)
    placeholders = ", ".join(["%s"] * len(row))
    return db.execute(f"INSERT INTO ghl_integrations ({columns}) VALUES ({placeholders}) RETURNING *",
                      list(row.values())).fetchone()


def insert_batch(db, **overrides) -> dict:
    row = {"location_id": unique("loc"), **overrides}
    columns = ", ".join(row)
    return db.execute(f"INSERT INTO ghl_import_batches ({columns}) VALUES ({', '.join(['%s'] * len(row))}) "
                      "RETURNING *", list(row.values())).fetchone()


def test_migrations_apply_from_zero_and_are_recorded(stack):
    server = stack["database_url"]
    fresh = f"t_fresh_{uuid.uuid4().hex[:8]}"
    url = database.create_database(database.with_database(server, "postgres"), fresh)
    try:
        applied = database.prepare_database(url, seed=False)
        assert applied == [p.stem.partition("_")[0] for p in database.migration_files()]
        assert database.apply_migrations(url) == [], "a second run must apply nothing"
        with psycopg.connect(url) as conn:
            tables = {r[0] for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
            rls_off = [r[0] for r in conn.execute(
                "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND c.relkind = 'r' AND NOT c.relrowsecurity")]
    finally:
        database.drop_database(database.with_database(server, "postgres"), fresh)
    assert {"ghl_integrations", "ghl_import_batches", "ghl_import_staging", "clients", "sales_prospects",
            "contacts", "sales_calls", "calls", "ghl_webhook_events"} <= tables
    assert rls_off == []


def test_ghl_tables_match_the_specification(db):
    columns = {
        (r["table_name"], r["column_name"]): (r["data_type"], r["is_nullable"], r["column_default"])
        for r in db.execute(
            "SELECT table_name, column_name, data_type, is_nullable, column_default FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name LIKE 'ghl_%%'")
    }
    expected = {
        ("ghl_integrations", "id"): ("uuid", "NO", "gen_random_uuid()"),
        ("ghl_integrations", "location_id"): ("text", "NO", None),
        ("ghl_integrations", "api_token"): ("text", "NO", None),
        ("ghl_integrations", "name"): ("text", "YES", None),
        ("ghl_integrations", "is_active"): ("boolean", "YES", "true"),
        ("ghl_integrations", "custom_field_mapping"): ("jsonb", "YES", None),
        ("ghl_integrations", "created_at"): ("timestamp with time zone", "YES", "now()"),
        ("ghl_integrations", "updated_at"): ("timestamp with time zone", "YES", "now()"),
        ("ghl_integrations", "integration_type"): ("text", "NO", "'internal'::text"),
        ("ghl_integrations", "client_id"): ("uuid", "YES", None),
        ("ghl_integrations", "last_synced_at"): ("timestamp with time zone", "YES", None),
        ("ghl_integrations", "last_sync_status"): ("text", "YES", None),
        ("ghl_integrations", "last_sync_error"): ("text", "YES", None),
        ("ghl_import_batches", "id"): ("uuid", "NO", "gen_random_uuid()"),
        ("ghl_import_batches", "location_id"): ("text", "NO", None),
        ("ghl_import_batches", "status"): ("text", "YES", "'pending'::text"),
        ("ghl_import_batches", "total_records"): ("integer", "YES", None),
        ("ghl_import_batches", "processed_records"): ("integer", "YES", "0"),
        ("ghl_import_batches", "error_count"): ("integer", "YES", "0"),
        ("ghl_import_batches", "created_by"): ("uuid", "YES", None),
        ("ghl_import_batches", "completed_at"): ("timestamp with time zone", "YES", None),
        ("ghl_import_batches", "created_at"): ("timestamp with time zone", "YES", "now()"),
        ("ghl_import_staging", "id"): ("uuid", "NO", "gen_random_uuid()"),
        ("ghl_import_staging", "batch_id"): ("uuid", "NO", None),
        ("ghl_import_staging", "raw_data"): ("jsonb", "NO", None),
        ("ghl_import_staging", "status"): ("text", "YES", "'pending'::text"),
        ("ghl_import_staging", "error_message"): ("text", "YES", None),
        ("ghl_import_staging", "matched_prospect_id"): ("uuid", "YES", None),
        ("ghl_import_staging", "matched_contact_id"): ("uuid", "YES", None),
        ("ghl_import_staging", "created_at"): ("timestamp with time zone", "YES", "now()"),
    }
    for key, spec in expected.items():
        assert columns.get(key) == spec, key
    foreign_keys = {
        (r["table_name"], r["column_name"], r["foreign_table"], r["foreign_column"])
        for r in db.execute("""
            SELECT tc.table_name, kcu.column_name, ccu.table_schema || '.' || ccu.table_name AS foreign_table,
                   ccu.column_name AS foreign_column
            FROM information_schema.table_constraints tc
            JOIN information_schema.key_column_usage kcu USING (constraint_schema, constraint_name)
            JOIN information_schema.constraint_column_usage ccu USING (constraint_schema, constraint_name)
            WHERE tc.constraint_type = 'FOREIGN KEY' AND tc.table_name LIKE 'ghl_%%'""")
    }
    assert {
        ("ghl_import_batches", "created_by", "auth.users", "id"),
        ("ghl_import_staging", "batch_id", "public.ghl_import_batches", "id"),
        ("ghl_import_staging", "matched_prospect_id", "public.sales_prospects", "id"),
        ("ghl_import_staging", "matched_contact_id", "public.contacts", "id"),
        ("ghl_integrations", "client_id", "public.clients", "id"),
    } <= foreign_keys


@pytest.mark.parametrize("status", ["pending", "processing", "completed", "failed"])
def test_batch_status_accepts_listed_values(db, status):
    assert insert_batch(db, status=status)["status"] == status


@pytest.mark.parametrize("status", ["done", "PENDING", "", "cancelled"])
def test_batch_status_rejects_others(db, status):
    with pytest.raises(errors.CheckViolation):
        insert_batch(db, status=status)


@pytest.mark.parametrize("status", ["pending", "matched", "imported", "error", "skipped"])
def test_staging_status_accepts_listed_values(db, status):
    batch = insert_batch(db)
    row = db.execute("INSERT INTO ghl_import_staging (batch_id, raw_data, status) VALUES (%s, '{}', %s) "
                     "RETURNING status", (batch["id"], status)).fetchone()
    assert row["status"] == status


@pytest.mark.parametrize("status", ["processed", "Matched", "failed", ""])
def test_staging_status_rejects_others(db, status):
    batch = insert_batch(db)
    with pytest.raises(errors.CheckViolation):
        db.execute("INSERT INTO ghl_import_staging (batch_id, raw_data, status) VALUES (%s, '{}', %s)",
                   (batch["id"], status))


@pytest.mark.parametrize("status", ["success", "partial", "failed"])
def test_last_sync_status_accepts_listed_values(db, status):
    assert insert_integration(db, last_sync_status=status)["last_sync_status"] == status


@pytest.mark.parametrize("column, value", [
    ("last_sync_status", "ok"), ("last_sync_status", "Success"),
    ("integration_type", "external"), ("integration_type", "Internal"),
])
def test_integration_checks_reject_bad_values(db, column, value):
    with pytest.raises(errors.CheckViolation):
        insert_integration(db, **{column: value})


def test_client_integration_requires_a_client(db):
    with pytest.raises(errors.CheckViolation):
        insert_integration(db, integration_type="client")
    client = db.execute("INSERT INTO clients (name) VALUES ('Acme') RETURNING id").fetchone()
    assert insert_integration(db, integration_type="client", client_id=client["id"])["client_id"] == client["id"]


@pytest.mark.parametrize("table", ["sales_calls", "calls"])
def test_call_disposition_checks(db, table):
    with pytest.raises(errors.CheckViolation):
        db.execute(f"INSERT INTO {table} (external_call_id, disposition) VALUES (%s, 'Maybe')", (unique("c"),))
    with pytest.raises(errors.CheckViolation):
        db.execute(f"INSERT INTO {table} (external_call_id, disposition, disposition_source) "
                   "VALUES (%s, 'Voicemail', 'guessed')", (unique("c"),))
    db.execute(f"INSERT INTO {table} (external_call_id, disposition, disposition_source) "
               "VALUES (%s, 'Meeting Booked', 'chosen')", (unique("c"),))


def test_foreign_keys_hold(db):
    with pytest.raises(errors.ForeignKeyViolation):
        db.execute("INSERT INTO ghl_import_staging (batch_id, raw_data) VALUES (gen_random_uuid(), '{}')")
    with pytest.raises(errors.ForeignKeyViolation):
        insert_batch(db, created_by=uuid.uuid4())
    batch = insert_batch(db)
    with pytest.raises(errors.ForeignKeyViolation):
        db.execute("INSERT INTO ghl_import_staging (batch_id, raw_data, matched_prospect_id) "
                   "VALUES (%s, '{}', gen_random_uuid())", (batch["id"],))
    with pytest.raises(errors.ForeignKeyViolation):
        db.execute("INSERT INTO contacts (client_id) VALUES (gen_random_uuid())")
    user = db.execute("INSERT INTO auth.users (email) VALUES ('op@example.com') RETURNING id").fetchone()
    assert insert_batch(db, created_by=user["id"])["created_by"] == user["id"]


def test_updated_at_is_kept_by_trigger(db):
    row = insert_integration(db)
    db.execute("UPDATE ghl_integrations SET updated_at = '2000-01-01' WHERE id = %s", (row["id"],))
    # the trigger overrides whatever a writer sends
    after = db.execute("SELECT updated_at FROM ghl_integrations WHERE id = %s", (row["id"],)).fetchone()
    assert after["updated_at"].year > 2000


def test_prospect_match_keys_are_derived_by_the_database(db):
    row = db.execute(
        "INSERT INTO sales_prospects (first_name, phone, email) VALUES ('Dana', '(555) 010-2233', "
        "'  Dana.Whitfield@Example.COM ') RETURNING phone_e164, email_normalized, content_updated_at").fetchone()
    assert row["phone_e164"] == "+15550102233"
    assert row["email_normalized"] == "dana.whitfield@example.com"


@pytest.mark.parametrize("raw, e164", [
    ("+1 555 010 9988", "+15550109988"), ("15550109988", "+15550109988"), ("555.010.9988", "+15550109988"),
    ("+44 20 7946 0958", "+442079460958"), ("0044 20 7946 0958", "+442079460958"),
    ("555-0100", None), ("not a phone", None), ("", None), ("555-010-9988 x12", "+15550109988"),
])
def test_phone_normaliser_in_sql(db, raw, e164):
    assert db.execute("SELECT normalize_phone_e164(%s) AS v", (raw,)).fetchone()["v"] == e164


def test_prospect_content_timestamp_moves_only_on_pushed_fields(db):
    row = db.execute("INSERT INTO sales_prospects (first_name) VALUES ('A') RETURNING id, content_updated_at").fetchone()
    db.execute("UPDATE sales_prospects SET ghl_contact_id = 'x', ghl_synced_at = now() WHERE id = %s", (row["id"],))
    same = db.execute("SELECT content_updated_at FROM sales_prospects WHERE id = %s", (row["id"],)).fetchone()
    assert same["content_updated_at"] == row["content_updated_at"]
    db.execute("UPDATE sales_prospects SET first_name = 'B' WHERE id = %s", (row["id"],))
    moved = db.execute("SELECT content_updated_at FROM sales_prospects WHERE id = %s", (row["id"],)).fetchone()
    assert moved["content_updated_at"] > row["content_updated_at"]


def test_webhook_event_log_is_append_only(db):
    row = db.execute("INSERT INTO ghl_webhook_events (outcome, raw_body) VALUES ('rejected', 'x') RETURNING id").fetchone()
    with pytest.raises(errors.InsufficientPrivilege):
        db.execute("UPDATE ghl_webhook_events SET outcome = 'inserted' WHERE id = %s", (row["id"],))
    with pytest.raises(errors.InsufficientPrivilege):
        db.execute("DELETE FROM ghl_webhook_events WHERE id = %s", (row["id"],))


def test_service_role_reads_integrations_and_anon_reads_none(stack, db):
    location = insert_integration(db)["location_id"]
    url = f"{stack['supabase_url']}/rest/v1/ghl_integrations"

    def get(key):
        return httpx.get(url, params={"location_id": f"eq.{location}"},
                         headers={"apikey": key, "Authorization": f"Bearer {key}"})

    service = get(stack["service_role_key"])
    assert service.status_code == 200 and [r["location_id"] for r in service.json()] == [location]
    anon = get(stack["anon_key"])
    assert anon.status_code == 200 and anon.json() == []


@pytest.mark.parametrize("table", ["ghl_integrations", "ghl_import_batches", "ghl_import_staging",
                                   "ghl_webhook_events", "sales_prospects", "contacts", "sales_calls", "calls",
                                   "clients"])
def test_anon_key_can_write_nothing(anon_client, service_client, db, table):
    from postgrest.exceptions import APIError

    with pytest.raises(APIError) as denied:
        anon_client.table(table).insert({"id": str(uuid.uuid4())} if table != "ghl_webhook_events"
                                        else {"outcome": "rejected"}).execute()
    assert denied.value.code == "42501"
    # updates and deletes through the anon key touch no row
    db.execute("INSERT INTO clients (name) VALUES ('keep')")
    anon_client.table("clients").update({"name": "hacked"}).eq("name", "keep").execute()
    anon_client.table("clients").delete().eq("name", "keep").execute()
    assert db.execute("SELECT count(*) AS n FROM clients WHERE name = 'keep'").fetchone()["n"] >= 1
    assert db.execute("SELECT count(*) AS n FROM clients WHERE name = 'hacked'").fetchone()["n"] == 0


def test_each_sql_function_redefinition_names_what_it_replaces():
    """Migrations are append-only, so a function is changed by a later migration's CREATE OR REPLACE; where to read
    it must stay obvious: a redefinition names the migration of the definition it replaces (e.g. "Same as
    20261126001000's, plus ..."), and the newest definition is the one that runs (migrations apply in order)."""
    import re
    from collections import defaultdict

    defined_in = defaultdict(list)
    for path in database.migration_files():
        for name in re.findall(r"CREATE\s+(?:OR\s+REPLACE\s+)?FUNCTION\s+(?:public\.)?(\w+)\s*\(",
                               path.read_text(), flags=re.IGNORECASE):
            if path not in defined_in[name]:
                defined_in[name].append(path)
    assert defined_in, "no function found: the pattern no longer matches the migrations"
    unexplained = {}
    for name, paths in defined_in.items():
        for earlier, later in zip(paths, paths[1:]):
            version = earlier.name.split("_", 1)[0]
            if version not in later.read_text():
                unexplained[name] = (earlier.name, later.name)
    assert unexplained == {}
