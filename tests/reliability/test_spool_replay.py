"""Spool and replay: a webhook the database cannot take is kept (503 + Retry-After) and replayed later, with its
original received time, exactly once, whatever happens to the replay itself."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest

from shared import errors
from shared.adapters.object_spool import ObjectSpool
from shared.adapters.supabase_db import call_rpc, create_service_client
from shared.services.replay_spool import replay_spool
from tests.conftest import TEST_SCHEDULER_SECRET, TEST_WEBHOOK_SECRET, unique
from tests.reliability.harness import spool_of

pytestmark = pytest.mark.stack

FUNCTION_SOURCE = Path(__file__).resolve().parents[2] / "functions" / "ghl_call_webhook" / "main.py"
DEAD_URL = "http://127.0.0.1:9"  # nothing listens there: the database "cannot be reached"
HEADERS = {"X-Webhook-Secret": TEST_WEBHOOK_SECRET, "Content-Type": "application/json"}


@pytest.fixture
def prefix() -> str:
    return f"test-{uuid.uuid4().hex[:10]}/"


@pytest.fixture
def spool(stack, prefix):
    """The stack's moto S3, under a prefix of this test's own (so a replay here sees only this test's objects)."""
    shared = spool_of(stack)
    return ObjectSpool(endpoint_url=stack["s3_endpoint_url"], bucket=shared.bucket, region="us-east-1", prefix=prefix,
                       client=shared.client)


@pytest.fixture
def rpc(stack):
    database = create_service_client(stack["supabase_url"], stack["service_role_key"])
    return lambda function, params: call_rpc(database, function, params)


@pytest.fixture
def webhook(stack, monkeypatch, prefix):
    """webhook(database_url=DEAD_URL, spool=True) -> the function through the real framework, its database
    unreachable, its spool the stack's moto S3 under this test's prefix (or none, or an unreachable one)."""
    from functions_framework import create_app

    from shared import bootstrap

    def make(database_url: str = DEAD_URL, spool: str | None = "moto"):
        monkeypatch.setenv("SUPABASE_URL", database_url)
        monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", stack["service_role_key"])
        monkeypatch.setenv("GHL_WEBHOOK_SECRET", TEST_WEBHOOK_SECRET)
        monkeypatch.setenv("DATABASE_TIMEOUT_SECONDS", "2")
        for name in ("SPOOL_S3_BUCKET", "SPOOL_S3_ENDPOINT_URL"):
            monkeypatch.delenv(name, raising=False)
        if spool is not None:
            monkeypatch.setenv("SPOOL_S3_BUCKET", "ghl-webhook-spool")
            monkeypatch.setenv("SPOOL_S3_ENDPOINT_URL", stack["s3_endpoint_url"] if spool == "moto" else DEAD_URL)
            monkeypatch.setenv("SPOOL_S3_PREFIX", prefix)
            monkeypatch.setenv("AWS_ACCESS_KEY_ID", "local")
            monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "local")
        bootstrap.reset()
        return create_app(target="handle", source=str(FUNCTION_SOURCE)).test_client()

    yield make
    bootstrap.reset()


def integration(db) -> str:
    location = unique("loc")
    db.execute("INSERT INTO ghl_integrations (location_id, api_token) VALUES (%s, %s)",
               (location, "replay-token-" + uuid.uuid4().hex))
    return location


def completed_hit(call_id: str, location: str) -> dict:
    return {"callId": call_id, "locationId": location, "callStatus": "Answered", "direction": "outbound",
            "from": "+15551234567", "to": "(555) 987-6543", "duration": 184, "contactId": "cnt_1",
            "callStartTime": "2026-02-12T15:04:05Z"}


def disposition_hit(call_id: str, location: str) -> dict:
    return {"callId": call_id, "locationId": location, "disposition": "Callback Requested",
            "notes": "call back Tuesday; '; DROP TABLE sales_calls; -- <script>alert(1)</script>"}


def test_database_down_spools_the_request_and_answers_503_with_retry_after(webhook, spool, db):
    location, call_id = integration(db), unique("call")
    body = json.dumps(completed_hit(call_id, location)).encode()
    response = webhook().post("/", data=body, headers={**HEADERS, "X-Request-Id": "rid:with.colon"})
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "60"
    answer = response.json
    assert answer["error"] == "database_unavailable" and answer["details"]["spooled"] is True
    assert "kept and will be replayed" in answer["message"]

    [key] = list(spool.keys())
    kept = spool.get(key)
    assert kept.body == body  # byte for byte as received
    assert kept.request_id == "rid_with.colon"  # a sane id, made plainer still for the object key
    assert abs((datetime.now(timezone.utc) - kept.received_at).total_seconds()) < 30
    document = spool.client.get_object(Bucket=spool.bucket, Key=key)["Body"].read().decode()
    assert TEST_WEBHOOK_SECRET not in document and "X-Webhook-Secret" not in document
    assert db.execute("SELECT count(*) AS n FROM sales_calls WHERE external_call_id = %s", (call_id,)).fetchone()["n"] == 0


@pytest.mark.parametrize("spool_setting, message", [(None, "no spool is configured"),
                                                    ("unreachable", "could not be spooled either")])
def test_without_a_working_spool_the_answer_is_still_503(webhook, spool, db, spool_setting, message):
    response = webhook(spool=spool_setting).post("/", data=json.dumps(completed_hit(unique("call"), "loc")),
                                                 headers=HEADERS)
    assert response.status_code == 503 and response.headers["Retry-After"] == "60"
    assert response.json["details"]["spooled"] is False and message in response.json["message"]
    assert list(spool.keys()) == []


def test_wrong_secret_is_never_spooled(webhook, spool):
    response = webhook().post("/", data=b"{}", headers={**HEADERS, "X-Webhook-Secret": "wrong"})
    assert response.status_code == 401 and list(spool.keys()) == []


def test_replay_ingests_with_the_original_time_then_deletes_and_a_second_replay_changes_nothing(
        webhook, spool, db, rpc):
    location, call_id = integration(db), unique("call")
    client = webhook()
    for hit in (completed_hit(call_id, location), disposition_hit(call_id, location)):
        assert client.post("/", data=json.dumps(hit), headers=HEADERS).status_code == 503
    bad_json = b'{"callId": "' + call_id.encode() + b'", oops \xff'
    assert client.post("/", data=bad_json, headers=HEADERS).status_code == 503  # refused body, log unreachable
    kept = {key: spool.get(key) for key in spool.keys()}
    assert len(kept) == 3

    report = replay_spool(spool, rpc)
    assert (report.listed, report.replayed, report.rejected, report.kept, report.stopped_by) == (3, 2, 1, 0, None)
    assert sorted(report.outcomes.elements()) == ["inserted", "updated"]
    assert list(spool.keys()) == []

    row = db.execute("SELECT * FROM sales_calls WHERE external_call_id = %s", (call_id,)).fetchone()
    assert (row["call_status"], row["disposition"], row["disposition_source"], row["duration_seconds"]) == (
        "answered", "Callback Requested", "chosen", 184)
    assert row["notes"] == disposition_hit(call_id, location)["notes"]
    events = db.execute("SELECT * FROM ghl_webhook_events WHERE spool_key = ANY(%s) ORDER BY id",
                        (list(kept),)).fetchall()
    assert len(events) == 3
    for event in events:
        assert event["received_at"] == kept[event["spool_key"]].received_at  # the webhook's time, not the replay's
    [rejected] = [e for e in events if e["outcome"] == "rejected"]
    assert "not valid UTF-8" in rejected["error"] and bytes(rejected["raw_body_bytes"]) == bad_json

    before = db.execute("SELECT count(*) AS n FROM ghl_webhook_events").fetchone()["n"]
    again = replay_spool(spool, rpc)
    assert (again.listed, again.replayed, again.rejected) == (0, 0, 0)
    assert db.execute("SELECT count(*) AS n FROM ghl_webhook_events").fetchone()["n"] == before


def test_a_replay_that_dies_before_deleting_records_nothing_twice(webhook, spool, db, rpc):
    location, call_id = integration(db), unique("call")
    assert webhook().post("/", data=json.dumps(completed_hit(call_id, location)), headers=HEADERS).status_code == 503
    [key] = list(spool.keys())

    class DeleteFails:
        def __getattr__(self, name):
            return getattr(spool, name)

        def delete(self, key):
            raise ConnectionError("object store went away")

    first = replay_spool(DeleteFails(), rpc)
    assert (first.replayed, first.kept) == (0, 1) and "object store unavailable" in first.stopped_by
    assert list(spool.keys()) == [key]  # recorded, but still spooled

    second = replay_spool(spool, rpc)
    assert (second.replayed, second.already_recorded, second.kept) == (1, 1, 0)
    assert list(spool.keys()) == []
    assert db.execute("SELECT count(*) AS n FROM ghl_webhook_events WHERE call_id = %s",
                      (call_id,)).fetchone()["n"] == 1


def test_a_transient_failure_stops_the_replay_and_keeps_the_rest(webhook, spool, db, rpc):
    location = integration(db)
    client = webhook()
    call_ids = [unique("call") for _ in range(5)]
    for call_id in call_ids:
        assert client.post("/", data=json.dumps(completed_hit(call_id, location)), headers=HEADERS).status_code == 503
    calls = []

    def failing_after_two(function, params):
        calls.append(function)
        if len(calls) > 2:
            raise errors.DatabaseUnavailable("database unavailable (PGRST001)")
        return rpc(function, params)

    report = replay_spool(spool, failing_after_two, workers=1)
    assert (report.listed, report.replayed, report.kept) == (5, 2, 3)
    assert report.stopped_by == "database unavailable (PGRST001)"
    assert len(list(spool.keys())) == 3
    rest = replay_spool(spool, rpc)
    assert (rest.replayed, rest.already_recorded) == (3, 0)
    assert db.execute("SELECT count(*) AS n FROM sales_calls WHERE external_call_id = ANY(%s)",
                      (call_ids,)).fetchone()["n"] == 5


def test_two_replays_at_once_record_each_request_once(webhook, spool, db, rpc):
    location = integration(db)
    client = webhook()
    call_ids = [unique("call") for _ in range(30)]
    for call_id in call_ids:
        client.post("/", data=json.dumps(completed_hit(call_id, location)), headers=HEADERS)
    keys = list(spool.keys())
    assert len(keys) == 30
    reports = []
    threads = [threading.Thread(target=lambda: reports.append(replay_spool(spool, rpc))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert list(spool.keys()) == []
    assert all(report.stopped_by is None for report in reports)
    assert db.execute("SELECT count(*) AS n FROM ghl_webhook_events WHERE spool_key = ANY(%s)",
                      (keys,)).fetchone()["n"] == 30
    assert db.execute("SELECT count(*) AS n FROM sales_calls WHERE external_call_id = ANY(%s)",
                      (call_ids,)).fetchone()["n"] == 30


def test_an_unknown_location_is_recorded_as_such_and_deleted(webhook, spool, db, rpc):
    call_id, nowhere = unique("call"), unique("nowhere")
    assert webhook().post("/", data=json.dumps(completed_hit(call_id, nowhere)), headers=HEADERS).status_code == 503
    report = replay_spool(spool, rpc)
    assert (report.rejected, report.kept) == (1, 0) and list(spool.keys()) == []
    [event] = db.execute("SELECT * FROM ghl_webhook_events WHERE call_id = %s", (call_id,)).fetchall()
    assert event["outcome"] == "unknown_location" and nowhere in event["error"]


def test_an_unreadable_object_is_kept_and_reported(spool, rpc):
    spool.client.put_object(Bucket=spool.bucket, Key=spool.prefix + "garbage.json", Body=b"not a spool document")
    report = replay_spool(spool, rpc)
    assert report.unreadable == [spool.prefix + "garbage.json"] and list(spool.keys()) == [spool.prefix + "garbage.json"]
    spool.delete(spool.prefix + "garbage.json")


def test_no_spool_configured_replays_nothing(rpc):
    report = replay_spool(None, rpc)
    assert report.configured is False and report.listed == 0


# ---- the scheduler's and the operator's ways in -------------------------------------------------------------

def test_the_scheduler_replays_through_process_ghl_import(stack, db):
    location, call_id = integration(db), unique("call")
    default_spool = spool_of(stack)  # the prefix the deployed webhook writes to
    default_spool.put(json.dumps(completed_hit(call_id, location)).encode(),
                      received_at=datetime(2026, 2, 12, 15, 5, tzinfo=timezone.utc), request_id="sched")
    url = stack["functions"]["process-ghl-import"]
    auth = {"Authorization": f"Bearer {TEST_SCHEDULER_SECRET}"}
    assert httpx.post(url, json={"action": "replay_spool"}, timeout=30).status_code == 401
    refused = httpx.post(url, json={"action": "replay_spool", "batch_id": "x"}, headers=auth, timeout=30)
    assert refused.status_code == 400 and "batch_id" in refused.json()["message"]

    response = httpx.post(url, json={"action": "replay_spool"}, headers=auth, timeout=60)
    assert response.status_code == 200, response.text
    replay = response.json()["replay"]
    assert replay["configured"] is True and replay["replayed"] >= 1 and replay["stopped_by"] is None
    [event] = db.execute("SELECT * FROM ghl_webhook_events WHERE call_id = %s", (call_id,)).fetchall()
    assert event["received_at"] == datetime(2026, 2, 12, 15, 5, tzinfo=timezone.utc) and event["spool_key"]


def test_ghl_bridge_replay_json(stack, db, spool, webhook, monkeypatch, capsys):
    from ghl_bridge.cli import main

    location, call_id = integration(db), unique("call")
    assert webhook().post("/", data=json.dumps(completed_hit(call_id, location)), headers=HEADERS).status_code == 503
    monkeypatch.setenv("SUPABASE_URL", stack["supabase_url"])  # the operator's environment: a hosted project
    assert main(["replay", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["replayed"], result["kept"], result["source"]) == (1, 0, "environment")
    assert db.execute("SELECT count(*) AS n FROM sales_calls WHERE external_call_id = %s", (call_id,)).fetchone()["n"] == 1

    monkeypatch.delenv("SPOOL_S3_BUCKET")
    assert main(["replay"]) == 2
    assert "no spool configured" in capsys.readouterr().err


def test_the_normal_path_never_imports_boto3(stack, db):
    """boto3 costs cold-start time: only a request that spools imports it (checked in a fresh interpreter)."""
    import os
    import subprocess
    import sys

    location = integration(db)
    script = f"""
import json, sys
from functions_framework import create_app
client = create_app(target="handle", source={str(FUNCTION_SOURCE)!r}).test_client()
body = json.dumps({completed_hit(unique("call"), location)!r})
answer = client.post("/", data=body, headers={HEADERS!r})
print(answer.status_code, "boto3" in sys.modules, "shared.services.replay_spool" in sys.modules)
"""
    env = {**os.environ, "SUPABASE_URL": stack["supabase_url"], "SUPABASE_SERVICE_ROLE_KEY": stack["service_role_key"],
           "GHL_WEBHOOK_SECRET": TEST_WEBHOOK_SECRET, "SPOOL_S3_BUCKET": "ghl-webhook-spool",
           "SPOOL_S3_ENDPOINT_URL": stack["s3_endpoint_url"], "PYTHONPATH": str(FUNCTION_SOURCE.parents[2])}
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split()[-3:] == ["200", "False", "False"], run.stdout
