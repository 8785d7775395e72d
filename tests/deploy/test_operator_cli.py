"""The operator commands (`ghl-bridge sync`, `ghl-bridge import ...`) against the test stack and its GHL sandbox."""

from __future__ import annotations

import json
import os

import pytest

from ghl_bridge.cli import main
from tests.conftest import unique

pytestmark = pytest.mark.stack


@pytest.fixture
def hosted_env(stack, monkeypatch):
    """The environment of an operator working against a hosted project (here: the test stack)."""
    monkeypatch.setenv("SUPABASE_URL", stack["supabase_url"])
    monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", stack["service_role_key"])
    monkeypatch.setenv("GHL_API_BASE_URL", stack["ghl_api_base_url"])
    return stack


@pytest.fixture
def sandbox_location(db, ghl_sandbox):
    """A sandbox location with an active internal integration holding its token."""
    location = ghl_sandbox.create_location()
    db.execute("INSERT INTO ghl_integrations (location_id, api_token) VALUES (%s, %s)", (location.id, location.token))
    return location


def _insert_prospects(db, location_id: str, count: int) -> list[str]:
    tag = unique("op")
    return [str(db.execute(
        "INSERT INTO sales_prospects (first_name, last_name, email, phone, company_name, ghl_location_id) "
        "VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
        (f"Op{i}", tag, f"{tag}.{i}@example.com", f"+1415555{int(tag[-4:], 16) % 1000:03d}{i}", "Firm", location_id),
    ).fetchone()["id"]) for i in range(count)]


def _json(capsys) -> dict:
    return json.loads(capsys.readouterr().out)


def test_sync_dry_run_then_push(hosted_env, db, sandbox_location, capsys):
    ids = _insert_prospects(db, sandbox_location.id, 3)

    assert main(["sync", "--location", sandbox_location.id, "--dry-run", "--json"]) == 0
    planned = _json(capsys)
    assert planned["dry_run"] is True and planned["source"] == "environment"
    [summary] = planned["locations"]
    assert (summary["location_id"], summary["due"], summary["pushed"]) == (sandbox_location.id, 3, 0)
    assert db.execute("SELECT count(*) AS n FROM sales_prospects WHERE id = ANY(%s::uuid[]) "
                      "AND ghl_contact_id IS NOT NULL", (ids,)).fetchone()["n"] == 0

    assert main(["sync", "--location", sandbox_location.id]) == 0
    table = capsys.readouterr().out
    assert sandbox_location.id in table and "pushed" in table and "success" in table
    assert db.execute("SELECT count(*) AS n FROM sales_prospects WHERE id = ANY(%s::uuid[]) "
                      "AND ghl_contact_id IS NOT NULL", (ids,)).fetchone()["n"] == 3


def test_sync_of_an_unknown_location_says_so(hosted_env, capsys):
    assert main(["sync", "--location", unique("nowhere"), "--json"]) == 1
    assert "no active internal integration for location" in capsys.readouterr().err


def test_import_pull_status_and_process(hosted_env, db, ghl_sandbox, sandbox_location, capsys):
    ghl_sandbox.seed(sandbox_location.id, contacts=7, calls=4)

    assert main(["import", "pull", "--location", sandbox_location.id, "--kinds", "contacts,calls", "--json"]) == 0
    result = _json(capsys)
    batch = result["batch"]
    assert (batch["location_id"], batch["status"]) == (sandbox_location.id, "completed")
    staged = db.execute("SELECT record_kind, count(*) AS n FROM ghl_import_staging WHERE batch_id = %s "
                        "GROUP BY record_kind", (batch["id"],)).fetchall()
    assert {row["record_kind"]: row["n"] for row in staged}["contact"] == 7
    total = sum(row["n"] for row in staged)
    assert batch["total_records"] == batch["processed_records"] == batch["run"]["records_staged"] == total

    assert main(["import", "status", batch["id"], "--json"]) == 0
    [status] = _json(capsys)["batches"]
    assert (status["id"], status["status"], status["processed_records"]) == (batch["id"], "completed", total)

    assert main(["import", "status"]) == 0
    listing = capsys.readouterr().out
    assert batch["id"] in listing and "completed" in listing

    assert main(["import", "process", batch["id"], "--json"]) == 0  # a finished batch: nothing more to do
    [again] = _json(capsys)["batches"]
    assert (again["status"], again["run"]["imported"]) == ("completed", 0)


def test_import_process_advances_open_batches(hosted_env, service_client, ghl_sandbox, sandbox_location, capsys):
    from shared.adapters.import_repository import ImportRepository

    ghl_sandbox.seed(sandbox_location.id, contacts=5)
    # A batch created but never pulled (as if its first invocation had died at once).
    batch_id = ImportRepository(service_client).create_batch(sandbox_location.id, ["contacts"], None, None)["id"]
    code = main(["import", "process", "--json"])
    batches = {b["id"]: b for b in _json(capsys)["batches"]}
    # Every open batch of the shared test database is advanced, other tests' too: one of theirs may end
    # failed (exit 1 says so); this test's batch must complete.
    assert code == (1 if any(b["status"] == "failed" for b in batches.values()) else 0)
    assert batches[batch_id]["status"] == "completed", json.dumps(batches[batch_id])
    assert batches[batch_id]["processed_records"] == 5 and batches[batch_id]["run"]["records_staged"] == 5


def test_bad_input_is_named(hosted_env, capsys):
    assert main(["import", "status", "not-a-uuid"]) == 1
    assert "must be a UUID" in capsys.readouterr().err
    assert main(["import", "pull", "--location", "x", "--kinds", "contacts,emails"]) == 1
    assert "unknown kind(s) emails" in capsys.readouterr().err


def test_without_environment_the_running_local_stack_is_used(stack, tmp_path, monkeypatch, capsys):
    # A state folder as `ghl-bridge stack up` leaves it, describing the test stack (this process stands in
    # for its services, so they count as running).
    state = {"info": {"supabase_url": stack["supabase_url"], "service_role_key": stack["service_role_key"],
                      "ghl_api_base_url": stack["ghl_api_base_url"]},
             "services": {"gateway": {"name": "gateway", "pid": os.getpid(), "port": 1, "log": ""}}}
    (tmp_path / "state.json").write_text(json.dumps(state))
    monkeypatch.setenv("GHL_BRIDGE_STATE_DIR", str(tmp_path))
    for name in ("SUPABASE_URL", "SUPABASE_SERVICE_ROLE_KEY", "GHL_API_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    assert main(["import", "status", "--json", "--limit", "1"]) == 0
    assert _json(capsys)["source"] == f"local stack ({tmp_path})"

    (tmp_path / "state.json").unlink()
    assert main(["sync", "--dry-run"]) == 2
    assert "set SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY" in capsys.readouterr().err


def test_half_a_configuration_is_refused(monkeypatch, capsys):
    monkeypatch.setenv("SUPABASE_URL", "https://abcd.supabase.co")
    monkeypatch.delenv("SUPABASE_SERVICE_ROLE_KEY", raising=False)
    assert main(["import", "status"]) == 2
    assert "SUPABASE_SERVICE_ROLE_KEY is not set" in capsys.readouterr().err
