"""The enrich action of process-ghl-import over HTTP (the stack's function), imported calls included, and a
worker killed mid-run (the CLI in a subprocess, SIGKILL) losing and duplicating nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import httpx
import pytest

from shared.adapters.enrich_repository import EnrichRepository
from shared.adapters.supabase_db import create_service_client
from shared.services.enrich_calls import run_enrich
from tests.conftest import TEST_SCHEDULER_SECRET
from tests.enrichment.conftest import (
    AUDIO_BYTES, EXPECTED_TEXT, add_ghl_call, call_row, completed_hit, enrich_settings, media_requests, send_webhook,
)

AUTH = {"Authorization": f"Bearer {TEST_SCHEDULER_SECRET}"}


def post(stack, body: dict, status: int = 200) -> dict:
    response = httpx.post(stack["functions"]["process-ghl-import"], json=body, headers=AUTH, timeout=120)
    assert response.status_code == status, response.text
    return response.json()


def test_imported_calls_are_enriched_through_the_function(stack, db, recordings, ghl_sandbox, media_location):
    location = media_location()
    calls = [add_ghl_call(ghl_sandbox, location) for _ in range(3)]
    batch = post(stack, {"action": "pull", "location_id": location.id, "kinds": ["calls"]})["batch"]
    assert batch["status"] == "completed"
    assert {call_row(db, c)["enrichment_status"] for c in calls} == {"pending"}

    answer = post(stack, {"action": "enrich", "location_id": location.id})
    [summary] = answer["enrich"]["locations"]
    assert (summary["claimed"], summary["done"], summary["status"]) == (3, 3, "success")
    for call_id in calls:
        row = call_row(db, call_id)
        assert row["enrichment_status"] == "done" and row["transcript"] == EXPECTED_TEXT
        assert recordings.get_bytes(row["recording_path"]) == ghl_sandbox.recording(location.id, call_id)
        assert len(row["raw_payload"]["hits"]) == 1 and next(iter(row["raw_payload"]["hits"])).startswith("import:")


@pytest.mark.parametrize("body, message", [
    ({"action": "enrich", "limit": 0}, "limit"),
    ({"action": "enrich", "limit": "5"}, "limit"),
    ({"action": "enrich", "location_id": ""}, "location_id"),
    ({"action": "enrich", "since": "yesterday"}, "unknown field"),
])
def test_a_bad_enrich_request_is_a_400(stack, body, message):
    answer = post(stack, body, status=400)
    assert message in json.dumps(answer)


def test_an_unknown_location_is_a_422(stack):
    post(stack, {"action": "enrich", "location_id": "loc_nobody_has"}, status=422)


def test_a_worker_killed_mid_run_loses_nothing_and_duplicates_nothing(stack, db, recordings, ghl_sandbox,
                                                                     media_location):
    location = media_location(latency_ms=150)
    calls = [add_ghl_call(ghl_sandbox, location) for _ in range(10)]
    for call_id in calls:
        send_webhook(stack, completed_hit(call_id, location.id))
    env = {**os.environ, "SUPABASE_URL": stack["supabase_url"], "SUPABASE_SERVICE_ROLE_KEY": stack["service_role_key"],
           "GHL_API_BASE_URL": stack["ghl_api_base_url"], "SPOOL_S3_ENDPOINT_URL": stack["s3_endpoint_url"],
           "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "GHL_MAX_IN_FLIGHT": "2",
           "ENRICH_LEASE_SECONDS": "4"}
    worker = subprocess.Popen([sys.executable, "-m", "ghl_bridge.cli", "enrich", "--location", location.id, "--json"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # kill it once it has finished some calls, not all
            done = db.execute("SELECT count(*) AS n FROM sales_calls WHERE ghl_location_id = %s"
                              " AND enrichment_status = 'done'", (location.id,)).fetchone()["n"]
            if done >= 2:
                break
            time.sleep(0.05)
        worker.send_signal(signal.SIGKILL)
    finally:
        worker.wait(10)
    rows = db.execute("SELECT enrichment_status, enrichment_claimed_until FROM sales_calls"
                      " WHERE ghl_location_id = %s", (location.id,)).fetchall()
    assert 2 <= sum(r["enrichment_status"] == "done" for r in rows) < 10  # killed mid-run
    leases = [r["enrichment_claimed_until"] for r in rows if r["enrichment_claimed_until"]]
    assert leases  # the killed worker still holds calls
    # Its leases end by themselves; then the next run finishes everything.
    wait = (max(leases) - db.execute("SELECT now() AS t").fetchone()["t"]).total_seconds()
    time.sleep(max(0.0, wait) + 0.2)

    database = create_service_client(stack["supabase_url"], stack["service_role_key"])
    run_enrich(database, enrich_settings(stack), recordings=recordings, location_id=location.id)

    for call_id in calls:
        row = call_row(db, call_id)
        assert row["enrichment_status"] == "done" and row["transcript"] == EXPECTED_TEXT
        assert row["recording_path"] == f"{location.id}/{call_id}.wav"
        assert recordings.get_bytes(row["recording_path"]) == ghl_sandbox.recording(location.id, call_id)
    keys = [item["Key"] for item in recordings.client.list_objects_v2(
        Bucket=recordings.bucket, Prefix=f"{location.id}/")["Contents"]]
    assert sorted(keys) == sorted(f"{location.id}/{c}.wav" for c in calls)  # one object per call
    # Only calls in flight at the kill were asked for twice (2 workers: at most 2 of each).
    requests = media_requests(ghl_sandbox, location.id)
    assert 10 <= requests["transcription"] <= 12 and 10 <= requests["recording"] <= 12
    assert all(len(call_row(db, c)["transcript"].splitlines()) == 2 for c in calls)  # nothing appended twice


def test_a_recording_already_stored_is_not_written_again(stack, db, recordings, ghl_sandbox, media_location):
    """A worker killed between the upload and the result: the next run finds the object and keeps it."""
    location = media_location()
    call_id = add_ghl_call(ghl_sandbox, location)
    send_webhook(stack, completed_hit(call_id, location.id))
    database = create_service_client(stack["supabase_url"], stack["service_role_key"])
    # The killed worker: claimed the call (1 s lease), stored the recording, died before recording the result.
    [claimed] = EnrichRepository(database).claim(location.id, str(uuid.uuid4()), lease_seconds=1, limit=5,
                                                 recordings_enabled=True)
    assert claimed["external_call_id"] == call_id and claimed["was_claimed"] is False
    key = f"{location.id}/{call_id}.wav"
    recordings.client.put_object(Bucket=recordings.bucket, Key=key, Body=b"written by the killed worker",
                                 ContentType="audio/x-wav")
    etag = recordings.head(key)["ETag"]
    time.sleep(1.1)  # its lease ends
    run_enrich(database, enrich_settings(stack), recordings=recordings, location_id=location.id)
    row = call_row(db, call_id)
    assert row["recording_path"] == key and row["enrichment_status"] == "done"
    assert recordings.head(key)["ETag"] == etag  # not overwritten
    assert len(ghl_sandbox.recording(location.id, call_id)) == AUDIO_BYTES
    assert media_requests(ghl_sandbox, location.id)["recording"] == 1  # headers only: the audio was not read


def test_the_cli_enriches_and_prints_json(stack, db, recordings, ghl_sandbox, media_location):
    location = media_location()
    call_id = add_ghl_call(ghl_sandbox, location)
    send_webhook(stack, completed_hit(call_id, location.id))
    env = {**os.environ, "SUPABASE_URL": stack["supabase_url"], "SUPABASE_SERVICE_ROLE_KEY": stack["service_role_key"],
           "GHL_API_BASE_URL": stack["ghl_api_base_url"], "SPOOL_S3_ENDPOINT_URL": stack["s3_endpoint_url"],
           "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}
    done = subprocess.run([sys.executable, "-m", "ghl_bridge.cli", "enrich", "--location", location.id, "--json"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["source"] == "environment" and result["recordings"] is True
    [summary] = result["locations"]
    assert (summary["location_id"], summary["done"], summary["requests"], summary["status"]) == (
        location.id, 1, 2, "success")
    assert call_row(db, call_id)["enrichment_status"] == "done"
    bad = subprocess.run([sys.executable, "-m", "ghl_bridge.cli", "enrich", "--limit", "0"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--limit" in bad.stderr
