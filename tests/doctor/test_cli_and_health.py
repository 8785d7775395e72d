"""`ghl-bridge doctor` (--json shape, exit codes), `ghl-bridge webhook test`, and the health action of
process-ghl-import through the stack's gateway."""

from __future__ import annotations

import json

import httpx
import pytest

from ghl_bridge.cli import main
from tests.conftest import TEST_SCHEDULER_SECRET, TEST_WEBHOOK_SECRET, unique

pytestmark = pytest.mark.stack


@pytest.fixture
def hosted_env(stack, monkeypatch):
    """An operator's environment against a hosted project (here: the test stack); no spool configured."""
    monkeypatch.setenv("SUPABASE_URL", stack["supabase_url"])
    monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", stack["service_role_key"])
    monkeypatch.setenv("GHL_API_BASE_URL", stack["ghl_sandbox_url"])
    for name in ("SPOOL_S3_BUCKET", "SPOOL_S3_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    return stack


def check_shape(check: dict) -> None:
    assert set(check) == {"name", "status", "detail", "fix"} and check["status"] in ("OK", "WARN", "FAIL")


def test_json_shape_and_exit_code_0_without_a_fail(hosted_env, location, db, capsys):
    loc = location()
    db.execute("SELECT finish_prospect_sync_run(%s, 'success')", (loc,))
    assert main(["doctor", "--location", loc, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) >= {"status", "checked_at", "seconds", "db_round_trips", "ghl_checked", "ghl_requests",
                           "locations", "general", "source"}
    assert report["ghl_checked"] is True and report["ghl_requests"] == 1 and report["source"] == "environment"
    [got] = report["locations"]
    assert (got["location_id"], got["integration_type"], got["is_active"]) == (loc, "internal", True)
    assert [g["name"] for g in got["groups"]] == ["ghl", "webhooks", "sync", "import", "enrichment", "analysis"]
    for group in got["groups"] + report["general"]:
        assert set(group) == {"name", "status", "checks"} and group["checks"]
        for check in group["checks"]:
            check_shape(check)
    spool = next(g for g in report["general"] if g["name"] == "spool")
    assert spool["status"] == "WARN"  # no spool in this environment: said, not failed
    assert report["status"] == "WARN"  # no delivery yet, no spool


def test_exit_code_1_on_a_fail_and_the_table_says_what_to_do(hosted_env, location, capsys):
    loc = location(token="not-a-token")
    assert main(["doctor", "--location", loc]) == 1
    out = capsys.readouterr().out
    assert loc in out and "FAIL" in out and "api_token" in out and "overall: FAIL" in out
    assert "not-a-token" not in out
    assert main(["doctor", "--location", loc, "--no-ghl", "--json"]) == 0  # nothing else fails
    assert json.loads(capsys.readouterr().out)["ghl_requests"] == 0


def test_half_a_configuration_exits_2(monkeypatch, capsys):
    monkeypatch.setenv("SUPABASE_URL", "http://127.0.0.1:9")
    monkeypatch.delenv("SUPABASE_SERVICE_ROLE_KEY", raising=False)
    assert main(["doctor"]) == 2
    assert "SUPABASE_SERVICE_ROLE_KEY" in capsys.readouterr().err


def test_webhook_test_round_trip_and_cleanup(hosted_env, location, db, monkeypatch, capsys):
    loc = location("client")
    monkeypatch.setenv("GHL_WEBHOOK_SECRET", TEST_WEBHOOK_SECRET)
    url = hosted_env["functions"]["ghl-call-webhook"]
    assert main(["webhook", "test", "--location", loc, "--url", url, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    call_id = result["call_id"]
    assert call_id.startswith("ghl-bridge-webhook-test-") and result["ok"] and result["deleted"]
    assert [a["status"] for a in result["answers"]] == [200, 200]
    assert [a["outcome"] for a in result["answers"]] == ["inserted", "updated"]
    row = result["row"]
    assert result["table"] == "calls" and row["ghl_location_id"] == loc
    assert (row["call_status"], row["disposition"], row["disposition_source"], row["disposition_label"]) == (
        "answered", "Callback Requested", "chosen", "Callback Requested")
    # the row is gone; the append-only event log keeps both deliveries
    assert db.execute("SELECT count(*) AS n FROM calls WHERE external_call_id = %s", (call_id,)).fetchone()["n"] == 0
    assert db.execute("SELECT count(*) AS n FROM ghl_webhook_events WHERE call_id = %s",
                      (call_id,)).fetchone()["n"] == 2


def test_webhook_test_with_a_wrong_secret_fails_and_says_why(hosted_env, location, monkeypatch, capsys):
    loc = location()
    monkeypatch.setenv("GHL_WEBHOOK_SECRET", "wrong-" + unique("s"))
    assert main(["webhook", "test", "--location", loc, "--url", hosted_env["functions"]["ghl-call-webhook"]]) == 1
    captured = capsys.readouterr()
    assert "401" in captured.out and "refused the secret" in captured.out and "round trip FAILED" in captured.err


# ---- health through the function -----------------------------------------------------------------------------------

def health(stack, body, token=TEST_SCHEDULER_SECRET):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(stack["functions"]["process-ghl-import"], json=body, headers=headers, timeout=60)


@pytest.mark.parametrize("token", [None, "wrong-secret"])
def test_health_needs_the_scheduler_credential(stack, token):
    response = health(stack, {"action": "health"}, token=token)
    assert response.status_code == 401 and "SCHEDULER_SECRET" in response.json()["message"]


def test_health_returns_the_report_without_ghl_requests(stack, location, ghl_sandbox):
    loc = location(token=None)
    response = health(stack, {"action": "health", "location_id": loc})
    assert response.status_code == 200, response.text
    report = response.json()
    [got] = report["locations"]
    assert got["location_id"] == loc and report["ghl_checked"] is False and report["ghl_requests"] == 0
    assert ghl_sandbox.stats(loc)["requests_total"] == 0
    statuses = [got["status"]] + [g["status"] for g in report["general"]]
    assert report["status"] == max(statuses, key=["OK", "WARN", "FAIL"].index)
    assert [g["name"] for g in report["general"]] == ["webhooks (no location)", "spool"]
    assert report["db_round_trips"] == 7


def test_health_checks_tokens_when_asked(stack, location, ghl_sandbox):
    loc = location(token="not-a-token")
    report = health(stack, {"action": "health", "location_id": loc, "check_tokens": True}).json()
    token = report["locations"][0]["groups"][0]["checks"][0]
    assert (token["name"], token["status"], report["status"]) == ("token", "FAIL", "FAIL")
    assert "not-a-token" not in json.dumps(report)


@pytest.mark.parametrize(("body", "message"), [
    ({"action": "health", "check_tokens": "yes"}, "check_tokens must be true or false"),
    ({"action": "health", "verbose": True}, "unknown field(s) for action health: verbose"),
    ({"action": "health", "location_id": ""}, "location_id must be a non-empty string"),
    ({"action": "health", "location_id": None}, "location_id must be a non-empty string"),
])
def test_health_bad_bodies_get_400(stack, body, message):
    response = health(stack, body)
    assert response.status_code == 400 and message in response.json()["message"]


def test_against_the_running_local_stack_without_environment(stack, location, db, tmp_path, monkeypatch, capsys):
    """As after `ghl-bridge stack up`: the stack's URLs, webhook secret and moto spool are found in its state
    folder (this process stands in for its services, so they count as running)."""
    import os

    state = {"info": {key: stack[key] for key in ("supabase_url", "service_role_key", "ghl_api_base_url",
                                                  "functions", "ghl_webhook_secret", "s3_endpoint_url")},
             "services": {"gateway": {"name": "gateway", "pid": os.getpid(), "port": 1, "log": ""}}}
    (tmp_path / "state.json").write_text(json.dumps(state))
    monkeypatch.setenv("GHL_BRIDGE_STATE_DIR", str(tmp_path))
    for name in ("SUPABASE_URL", "SUPABASE_SERVICE_ROLE_KEY", "GHL_API_BASE_URL", "GHL_WEBHOOK_SECRET",
                 "SPOOL_S3_BUCKET", "SPOOL_S3_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    loc = location()
    assert main(["webhook", "test", "--location", loc, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["ok"] and result["url"] == stack["functions"]["ghl-call-webhook"]
    assert result["source"] == f"local stack ({tmp_path})" and result["table"] == "sales_calls"
    assert db.execute("SELECT count(*) AS n FROM sales_calls WHERE external_call_id = %s",
                      (result["call_id"],)).fetchone()["n"] == 0
    main(["doctor", "--location", loc, "--no-ghl", "--json"])
    report = json.loads(capsys.readouterr().out)
    spool = next(g for g in report["general"] if g["name"] == "spool")["checks"][0]
    assert "no spool configured" not in spool["detail"]  # the stack's moto S3 was found
    # the test call's two deliveries count as accepted ones
    assert "inserted 1" in report["locations"][0]["groups"][1]["checks"][0]["detail"]
