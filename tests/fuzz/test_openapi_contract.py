"""docs/openapi.yaml is true: every documented status of every function, produced by a real request through the
running stack (or, for the states a shared stack cannot be put in, the function served in-process), and each
exchange validated against the document with openapi-core. A response the document does not describe fails."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from openapi_core.exceptions import OpenAPIError

from tests.conftest import TEST_SCHEDULER_SECRET, TEST_WEBHOOK_SECRET, unique
from tests.fuzz.contract import PATHS, call, check_exchange, check_framework_answer

pytestmark = pytest.mark.stack

WEBHOOK = {"X-Webhook-Secret": TEST_WEBHOOK_SECRET}
SCHEDULER = {"Authorization": f"Bearer {TEST_SCHEDULER_SECRET}"}
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def location(db) -> str:
    location_id = unique("loc")
    db.execute("INSERT INTO ghl_integrations (location_id, api_token) VALUES (%s, %s)",
               (location_id, "contract-token-" + uuid.uuid4().hex))
    return location_id


def hit(call_id: str, location_id: str) -> bytes:
    return json.dumps({"callId": call_id, "locationId": location_id, "callStatus": "Answered",
                       "duration": "3:04", "from": "+15551234567"}).encode()


def assert_not_allowed(url: str) -> None:
    """Other methods are no operation of the document; their answer is components/responses/MethodNotAllowed."""
    import httpx

    for method in ("GET", "PUT", "DELETE", "PATCH", "OPTIONS"):
        answer = httpx.request(method, url, headers={**WEBHOOK, **SCHEDULER}, timeout=30)
        assert answer.status_code == 405 and answer.headers["Allow"] == "POST"
        body = answer.json()
        assert set(body) == {"error", "message"} and body["error"] == "method_not_allowed"
        assert method in body["message"] and answer.headers["X-Request-Id"]


def test_the_document_is_a_valid_openapi_3_description():
    from openapi_spec_validator import validate
    from openapi_spec_validator.readers import read_from_filename

    spec, _ = read_from_filename(str(ROOT / "docs" / "openapi.yaml"))
    validate(spec)
    assert set(spec["paths"]) == set(PATHS.values())


def test_webhook_answers_match_the_document(stack, location):
    url = stack["functions"]["ghl-call-webhook"]
    call_id = unique("call")
    assert call(url, body=hit(call_id, location), headers=WEBHOOK).json()["outcome"] == "inserted"
    assert call(url, body=hit(call_id, location), headers=WEBHOOK).json()["outcome"] == "unchanged"
    assert call(url, body=b"{oops", headers=WEBHOOK, request_valid=False).status_code == 400
    assert call(url, body=b'{"notes": "no id"}', headers=WEBHOOK, request_valid=False).status_code == 400
    assert call(url, body=hit(unique("call"), location), headers={"X-Webhook-Secret": "wrong"}).status_code == 401
    assert call(url, body=hit(unique("call"), location), request_valid=False).status_code == 401
    big = json.dumps({"callId": unique("call"), "notes": "x" * 300_000}).encode()
    assert call(url, body=big, headers=WEBHOOK).status_code == 413
    assert call(url, body=hit(unique("call"), unique("nowhere")), headers=WEBHOOK).status_code == 422
    assert_not_allowed(url)


def test_sync_answers_match_the_document(stack, location):
    url = stack["functions"]["sync-prospects-to-ghl"]
    ok = call(url, body=json.dumps({"location_id": location, "dry_run": True}).encode(), headers=SCHEDULER)
    assert ok.status_code == 200 and ok.json()["dry_run"] is True
    assert call(url, body=json.dumps({"location_id": location, "limit": 0}).encode(), headers=SCHEDULER,
                request_valid=False).status_code == 400
    assert call(url, body=b"{}", request_valid=False).status_code == 401
    assert call(url, body=b"{}", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert call(url, body=b" " * 20_000, headers=SCHEDULER, request_valid=False).status_code == 413
    assert call(url, body=json.dumps({"location_id": unique("nowhere")}).encode(), headers=SCHEDULER).status_code == 422
    assert_not_allowed(url)


def test_import_answers_match_the_document(stack, db, location):
    url = stack["functions"]["process-ghl-import"]
    batch_id = db.execute("SELECT (create_import_batch(%s, '{contacts}', NULL, NULL)) ->> 'id' AS id",
                          (location,)).fetchone()["id"]
    db.execute("SELECT stage_import_page(%s, 'contacts', %s::jsonb, NULL, '{}'::jsonb, true)",
               (batch_id, json.dumps([{"external_id": "c1", "raw_data": {"id": "c1", "firstName": "A"}}])))
    done = call(url, body=json.dumps({"action": "process", "batch_id": batch_id}).encode(), headers=SCHEDULER)
    assert done.status_code == 200 and done.json()["batch"]["status"] == "completed"
    replay = call(url, body=b'{"action": "replay_spool"}', headers=SCHEDULER)
    assert replay.status_code == 200 and replay.json()["replay"]["configured"] is True
    health = call(url, body=json.dumps({"action": "health", "location_id": location}).encode(), headers=SCHEDULER)
    assert health.status_code == 200 and health.json()["locations"][0]["location_id"] == location
    assert call(url, body=b'{"action": "health", "check_tokens": 1}', headers=SCHEDULER,
                request_valid=False).status_code == 400
    assert call(url, body=b'{"action": "import"}', headers=SCHEDULER, request_valid=False).status_code == 400
    assert call(url, body=b'{"action": "process", "batch_id": "nope"}', headers=SCHEDULER,
                request_valid=False).status_code == 400
    assert call(url, body=b'{"action": "process"}', request_valid=False).status_code == 401
    assert call(url, body=b" " * 20_000, headers=SCHEDULER, request_valid=False).status_code == 413
    assert call(url, body=json.dumps({"action": "pull", "location_id": unique("nowhere")}).encode(),
                headers=SCHEDULER).status_code == 422
    assert_not_allowed(url)


@pytest.fixture
def webhook_in_process(stack, monkeypatch):
    """The webhook served in-process with a database that cannot be reached, or without a configured secret."""
    from functions_framework import create_app

    from shared import bootstrap

    def make(*, secret: bool = True, spool: bool = True):
        monkeypatch.setenv("SUPABASE_URL", "http://127.0.0.1:9")
        monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", stack["service_role_key"])
        monkeypatch.setenv("GHL_WEBHOOK_SECRET", TEST_WEBHOOK_SECRET if secret else "")
        monkeypatch.setenv("SPOOL_S3_PREFIX", f"contract-{uuid.uuid4().hex[:8]}/")
        if spool:
            monkeypatch.setenv("SPOOL_S3_BUCKET", "ghl-webhook-spool")
            monkeypatch.setenv("SPOOL_S3_ENDPOINT_URL", stack["s3_endpoint_url"])
            monkeypatch.setenv("AWS_ACCESS_KEY_ID", "local")
            monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "local")
        else:
            monkeypatch.delenv("SPOOL_S3_BUCKET", raising=False)
        bootstrap.reset()
        return create_app(target="handle", source=str(ROOT / "functions" / "ghl_call_webhook" / "main.py")).test_client()

    yield make
    bootstrap.reset()


@pytest.mark.parametrize("spool", [True, False])
def test_webhook_503_and_500_match_the_document(webhook_in_process, spool):
    body, headers = hit(unique("call"), "loc"), {"Content-Type": "application/json", **WEBHOOK}
    unavailable = webhook_in_process(spool=spool).post("/", data=body, headers=headers)
    assert unavailable.status_code == 503 and unavailable.json["details"]["spooled"] is spool
    check_framework_answer(PATHS["ghl-call-webhook"], body, headers, unavailable)

    misconfigured = webhook_in_process(secret=False).post("/", data=body, headers=headers)
    assert misconfigured.status_code == 500 and misconfigured.json["error"] == "configuration_error"
    check_framework_answer(PATHS["ghl-call-webhook"], body, headers, misconfigured)


def test_an_answer_the_document_does_not_describe_fails_the_check():
    """The checker can fail: an undocumented field, a 503 without Retry-After, an empty message."""
    url, body = "http://127.0.0.1:54321/functions/v1/ghl-call-webhook", hit("c", "l")
    headers = {"Content-Type": "application/json", **WEBHOOK}
    good = {"outcome": "inserted", "call_id": "c", "id": str(uuid.uuid4())}
    check_exchange(url, "POST", body, headers, 200, json.dumps(good).encode(), {"X-Request-Id": "r"},
                   request_valid=True)
    wrong_answers = [
        (200, {**good, "secret": "x"}, {"X-Request-Id": "r"}),
        (200, {**good, "outcome": "merged"}, {"X-Request-Id": "r"}),
        (400, {"error": "bad_request", "message": ""}, {"X-Request-Id": "r"}),
        (503, {"error": "database_unavailable", "message": "down", "details": {"spooled": True,
                                                                            "retry_after_seconds": 60}},
         {"X-Request-Id": "r"}),
        (418, {"error": "teapot", "message": "no"}, {"X-Request-Id": "r"}),
        (200, good, {}),  # no X-Request-Id
    ]
    for status, answer, answer_headers in wrong_answers:
        with pytest.raises(OpenAPIError):
            check_exchange(url, "POST", body, headers, status, json.dumps(answer).encode(), answer_headers,
                           request_valid=True)
