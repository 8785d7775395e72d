"""Fixtures of the enrichment tests: sandbox locations with their integrations, calls with media, the
recordings bucket on the stack's moto S3, and a way to run the worker in-process."""

from __future__ import annotations

import uuid

import httpx
import pytest

from shared.adapters.object_store import S3Bucket
from tests.conftest import TEST_WEBHOOK_SECRET
from tests.sync.conftest import insert_integration, make_settings

SENTENCES = [  # out of order on purpose: the text follows startTime
    {"mediaChannel": 2, "sentenceIndex": 2, "startTime": 2100, "endTime": 4000,
     "transcript": "Sure, call me back next week?", "confidence": 0.9},
    {"mediaChannel": 1, "sentenceIndex": 1, "startTime": 0, "endTime": 2000,
     "transcript": "Hi, this is Sam from Acme.", "confidence": 0.95},
]
EXPECTED_TEXT = "Agent: Hi, this is Sam from Acme.\nContact: Sure, call me back next week?"
AUDIO_BYTES = 4096


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "local")  # moto accepts any credentials
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "local")


def enrich_settings(stack, **overrides):
    values = {"spool_s3_endpoint_url": stack["s3_endpoint_url"], "ghl_max_in_flight": 4,
              "enrich_lease_seconds": 60, **overrides}
    return make_settings(stack, **values)


@pytest.fixture
def settings(stack):
    return enrich_settings(stack)


@pytest.fixture(scope="session")
def recordings(stack):
    return S3Bucket(endpoint_url=stack["s3_endpoint_url"], bucket="call-recordings", region="us-east-1")


@pytest.fixture
def media_location(db, ghl_sandbox):
    """media_location(kind='internal'|'client', **sandbox settings) -> a sandbox location with its integration.
    Afterwards: zero contract violations on every location made."""
    made = []

    def make(kind: str = "internal", **settings):
        settings.setdefault("burst_limit", 100)
        settings.setdefault("burst_window_ms", 1000)
        location = ghl_sandbox.create_location(**settings)
        insert_integration(db, location.id, token=location.token, integration_type=kind)
        made.append(location.id)
        return location

    yield make
    for location_id in made:
        stats = ghl_sandbox.stats(location_id)
        assert stats["contract_violations"] == 0, stats["contract_violation_details"]


def new_call_id() -> str:
    return "msg_" + uuid.uuid4().hex[:16]


def add_ghl_call(ghl_sandbox, location, call_id: str | None = None, *, sentences=SENTENCES,
                 recording_bytes: int | None = AUDIO_BYTES, status: str = "completed", duration: int = 184) -> str:
    """A call message in the sandbox with a transcript and a recording; returns its id (the webhook's callId)."""
    call_id = call_id or new_call_id()
    message = {"id": call_id, "status": "delivered", "direction": "outbound",
               "meta": {"call": {"status": status, "duration": duration}}}
    ghl_sandbox.add_calls_with_media(location.id, [
        {"message": message, "transcription": sentences, "recording_bytes": recording_bytes}])
    return call_id


def send_webhook(stack, body: dict) -> dict:
    response = httpx.post(stack["functions"]["ghl-call-webhook"], json=body, timeout=30,
                          headers={"X-Webhook-Secret": TEST_WEBHOOK_SECRET})
    assert response.status_code == 200, response.text
    return response.json()


def completed_hit(call_id: str, location_id: str, **extra) -> dict:
    body = {"callId": call_id, "locationId": location_id, "callStatus": "Answered", "direction": "outbound",
            "from": "+15551234567", "to": "+15559876543", "duration": 184, "contactId": "cnt_x",
            "callStartTime": "2026-02-12T15:04:05Z", **extra}
    return {k: v for k, v in body.items() if v is not None}


def call_row(db, call_id: str, table: str = "sales_calls") -> dict:
    return db.execute(f"SELECT * FROM {table} WHERE external_call_id = %s", (call_id,)).fetchone()


def media_requests(ghl_sandbox, location_id: str) -> dict:
    return ghl_sandbox.media(location_id)["requests"]
