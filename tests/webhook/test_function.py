"""ghl-call-webhook through the real framework (functions_framework test client) against the test stack."""

from __future__ import annotations

import base64
import json
import logging

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.conftest import TEST_WEBHOOK_SECRET, unique
from tests.webhook.conftest import fixture_names, load_fixture, secret_headers, with_ids

pytestmark = pytest.mark.stack


class Captured(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture
def summaries():
    handler = Captured()
    logger = logging.getLogger("ghl_bridge.ghl_call_webhook")
    # Another test in this process may have configured the package's logs at WARNING (the operator CLI does).
    previous_level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield handler.records
    logger.removeHandler(handler)
    logger.setLevel(previous_level)


def events(db, call_id: str) -> list[dict]:
    return db.execute("SELECT * FROM ghl_webhook_events WHERE call_id = %s ORDER BY id", (call_id,)).fetchall()


def post(client, body, **headers):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post("/", data=data, headers=secret_headers(**headers))


@pytest.mark.parametrize("fixture", fixture_names())
def test_each_fixture_shape_is_ingested(webhook_app, db, make_integration, summaries, fixture):
    location, _ = make_integration("internal")
    call_id = unique("call")
    response = post(webhook_app, with_ids(load_fixture(fixture), call_id, location))
    assert response.status_code == 200, response.json
    row = db.execute("SELECT * FROM sales_calls WHERE external_call_id = %s", (call_id,)).fetchone()
    assert response.json == {"outcome": "inserted", "call_id": call_id, "id": str(row["id"])}
    assert row["ghl_location_id"] == location
    [event] = events(db, call_id)
    assert (event["outcome"], event["call_row_id"], event["location_id"]) == ("inserted", row["id"], location)
    summary = [r for r in summaries if r.getMessage() == "webhook handled"][-1].fields
    assert (summary["call_id"], summary["outcome"], summary["db_round_trips"], summary["status"]) == (
        call_id, "inserted", 1, 200)


@pytest.mark.parametrize("first", ["call-completed.json", "disposition.json"])
def test_two_hits_in_either_order(webhook_app, db, make_integration, first):
    location, _ = make_integration("internal")
    call_id = unique("call")
    order = [first, ({"call-completed.json", "disposition.json"} - {first}).pop()]
    answers = [post(webhook_app, with_ids(load_fixture(name), call_id, location)).json for name in order]
    assert [a["outcome"] for a in answers] == ["inserted", "updated"] and answers[0]["id"] == answers[1]["id"]
    row = db.execute("SELECT * FROM sales_calls WHERE external_call_id = %s", (call_id,)).fetchone()
    assert (row["call_status"], row["connected"], row["duration_seconds"], row["from_number"]) == (
        "answered", True, 184, "+15551234567")
    assert (row["disposition"], row["disposition_source"]) == ("Callback Requested", "chosen")
    assert row["notes"] and row["transcript"] and len(row["raw_payload"]["hits"]) == 2


def test_same_hit_twice_answers_unchanged(webhook_app, db, make_integration):
    location, _ = make_integration("internal")
    call_id = unique("call")
    body = with_ids(load_fixture("call-completed.json"), call_id, location)
    first, second = post(webhook_app, body), post(webhook_app, body)
    assert (first.json["outcome"], second.json["outcome"]) == ("inserted", "unchanged")
    assert second.json["id"] == first.json["id"]
    assert [e["outcome"] for e in events(db, call_id)] == ["inserted", "unchanged"]


def test_client_location_routes_to_calls(webhook_app, db, make_integration):
    location, client_id = make_integration("client")
    call_id, contact = unique("call"), unique("cnt")
    contact_row = db.execute("INSERT INTO contacts (client_id, ghl_contact_id) VALUES (%s, %s) RETURNING id",
                             (client_id, contact)).fetchone()
    response = post(webhook_app, with_ids(load_fixture("call-completed.json"), call_id, location, contact))
    assert response.status_code == 200
    row = db.execute("SELECT * FROM calls WHERE external_call_id = %s", (call_id,)).fetchone()
    assert (str(row["id"]), row["contact_id"], row["client_id"]) == (response.json["id"], contact_row["id"], client_id)


def test_wrong_secret_is_401_and_writes_nothing(webhook_app, db, make_integration, summaries):
    location, _ = make_integration("internal")
    call_id = unique("call")
    body = json.dumps(with_ids(load_fixture("call-completed.json"), call_id, location))
    for headers in ({"X-Webhook-Secret": "wrong"}, {}):
        response = webhook_app.post("/", data=body, headers=headers)
        assert response.status_code == 401
        assert TEST_WEBHOOK_SECRET not in response.get_data(as_text=True)
    assert events(db, call_id) == []
    assert db.execute("SELECT count(*) AS n FROM sales_calls WHERE external_call_id = %s", (call_id,)).fetchone()["n"] == 0
    assert all(r.fields["db_round_trips"] == 0 for r in summaries)


def test_bad_json_is_400_and_the_raw_body_is_kept(webhook_app, db):
    marker = unique("broken")
    raw = '{"callId": "' + marker + '", oops'
    response = post(webhook_app, raw)
    assert response.status_code == 400
    assert "not valid JSON" in response.json["message"]
    [event] = db.execute("SELECT * FROM ghl_webhook_events WHERE raw_body = %s", (raw,)).fetchall()
    assert (event["outcome"], event["payload"]) == ("rejected", None) and "JSON" in event["error"]


def test_body_that_is_not_utf8_is_400_and_kept(webhook_app, db):
    marker = unique("bytes")
    raw = b'{"callId": "' + marker.encode() + b'\xff\xfe"}'
    assert post(webhook_app, raw).status_code == 400
    [event] = db.execute("SELECT * FROM ghl_webhook_events WHERE raw_body LIKE %s", (f"%{marker}%",)).fetchall()
    assert event["outcome"] == "rejected"


def test_no_call_id_is_400_and_kept(webhook_app, db, make_integration):
    location, _ = make_integration("internal")
    response = post(webhook_app, {"locationId": location, "callStatus": "Answered"})
    assert response.status_code == 400 and "no call id" in response.json["message"]
    [event] = db.execute("SELECT * FROM ghl_webhook_events WHERE location_id = %s", (location,)).fetchall()
    assert event["outcome"] == "rejected" and event["payload"]["callStatus"] == "Answered" and event["raw_body"]


def test_wrong_type_is_400_naming_the_field(webhook_app, db):
    call_id = unique("call")
    response = post(webhook_app, {"callId": call_id, "duration": {"seconds": 3}})
    assert response.status_code == 400 and "'duration'" in response.json["message"]
    assert [e["outcome"] for e in events(db, call_id)] == ["rejected"]


def test_huge_body_is_413(webhook_app, db):
    call_id = unique("call")
    body = json.dumps({"callId": call_id, "transcription": "x" * (256 * 1024)})
    response = post(webhook_app, body)
    assert response.status_code == 413
    assert events(db, call_id) == []


def test_unknown_location_is_422_and_kept(webhook_app, db):
    call_id, location = unique("call"), unique("nowhere")
    response = post(webhook_app, with_ids(load_fixture("call-completed.json"), call_id, location))
    assert response.status_code == 422 and location in response.json["message"]
    [event] = events(db, call_id)
    assert (event["outcome"], event["location_id"]) == ("unknown_location", location)
    assert event["payload"]["callId"] == call_id


def test_inactive_location_is_422(webhook_app, db, make_integration):
    location, _ = make_integration("internal", active=False)
    response = post(webhook_app, with_ids(load_fixture("call-completed.json"), unique("call"), location))
    assert response.status_code == 422


def test_other_methods_are_405(webhook_app):
    for method in ("get", "put", "delete", "patch"):
        response = getattr(webhook_app, method)("/", headers=secret_headers())
        assert response.status_code == 405 and response.headers["Allow"] == "POST"


def test_refuses_everything_without_a_configured_secret(webhook_app, monkeypatch, db, make_integration):
    from shared import bootstrap

    monkeypatch.delenv("GHL_WEBHOOK_SECRET")
    bootstrap.reset()
    location, _ = make_integration("internal")
    call_id = unique("call")
    for headers in ({}, {"X-Webhook-Secret": ""}, secret_headers()):
        response = webhook_app.post("/", data=json.dumps(with_ids(load_fixture("call-completed.json"), call_id,
                                                                   location)), headers=headers)
        assert response.status_code == 500 and response.json["error"] == "configuration_error"
    assert events(db, call_id) == []


def test_rsa_signed_delivery(webhook_app, monkeypatch, db, make_integration):
    from shared import bootstrap

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    monkeypatch.setenv("GHL_WEBHOOK_RSA_PUBLIC_KEY", key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode())
    bootstrap.reset()
    location, _ = make_integration("internal")
    call_id = unique("call")
    body = json.dumps(with_ids(load_fixture("call-completed.json"), call_id, location)).encode()
    signature = base64.b64encode(key.sign(body, padding.PKCS1v15(), hashes.SHA256())).decode()
    assert post(webhook_app, body + b" ", **{"x-wh-signature": signature}).status_code == 401
    assert events(db, call_id) == []
    assert post(webhook_app, body, **{"x-wh-signature": signature}).status_code == 200


def test_replayed_delivery_id_is_refused(webhook_app, db, make_integration):
    location, _ = make_integration("internal")
    call_id, delivery = unique("call"), unique("delivery")
    body = with_ids(load_fixture("call-completed.json"), call_id, location)
    assert post(webhook_app, body, **{"X-Webhook-Id": delivery}).status_code == 200
    assert post(webhook_app, body, **{"X-Webhook-Id": delivery}).status_code == 401
    assert [e["outcome"] for e in events(db, call_id)] == ["inserted"]


def test_summary_line_has_no_secret_and_no_payload(webhook_app, make_integration, summaries):
    from shared.logs import JsonFormatter

    location, _ = make_integration("internal")
    post(webhook_app, with_ids(load_fixture("disposition.json"), unique("call"), location))
    lines = [JsonFormatter().format(r) for r in summaries]
    assert lines and all(TEST_WEBHOOK_SECRET not in line and "Tuesday" not in line for line in lines)
    assert all({"request_id", "call_id", "outcome", "ms"} <= set(json.loads(line)) for line in lines)


def test_values_the_database_refuses_are_400_and_kept(webhook_app, db, make_integration, summaries):
    """jsonb cannot hold \\u0000: PostgREST refuses the call, the raw body still reaches the event log."""
    location, _ = make_integration("internal")
    call_id = unique("call")
    raw = json.dumps({"callId": call_id, "locationId": location, "notes": "a\u0000b"})
    response = post(webhook_app, raw)
    assert response.status_code == 400
    [event] = events(db, call_id)
    assert event["outcome"] == "rejected" and "\\u0000" in event["raw_body"]
    assert db.execute("SELECT count(*) AS n FROM sales_calls WHERE external_call_id = %s", (call_id,)).fetchone()["n"] == 0
    assert summaries[-1].fields["db_round_trips"] == 1  # refused by the parser: no ingest attempt
