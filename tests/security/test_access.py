"""Nobody let in: what an unauthenticated or wrongly authenticated caller can do (nothing), checked against the
running stack; secret comparisons are constant-time; the anon key reads and writes nothing; size limits hold."""

from __future__ import annotations

import base64
import hmac
import json
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from tests.conftest import TEST_SCHEDULER_SECRET, TEST_WEBHOOK_SECRET, unique

pytestmark = pytest.mark.stack

ROOT = Path(__file__).resolve().parents[2]
WRITTEN_TABLES = ["sales_calls", "calls", "ghl_webhook_events", "ghl_import_batches", "ghl_import_staging",
                  "sales_prospects", "ghl_integrations"]


def row_counts(db) -> dict[str, int]:
    return {table: db.execute(f"SELECT count(*) AS n FROM {table}").fetchone()["n"] for table in WRITTEN_TABLES}


@pytest.fixture
def location(db) -> str:
    location_id = unique("sec")
    db.execute("INSERT INTO ghl_integrations (location_id, api_token) VALUES (%s, %s)",
               (location_id, "security-token-" + location_id))
    return location_id


def hit(location_id: str) -> bytes:
    return json.dumps({"callId": unique("call"), "locationId": location_id, "callStatus": "Answered"}).encode()


# ---- the webhook: no secret, a wrong one, a tampered signature -> nothing written -------------------------------

@pytest.mark.parametrize("headers", [
    {}, {"X-Webhook-Secret": ""}, {"X-Webhook-Secret": "wrong"}, {"X-Webhook-Secret": TEST_WEBHOOK_SECRET + "x"},
    {"X-Webhook-Secret": TEST_WEBHOOK_SECRET[:-1]}, {"X-Webhook-Secrets": TEST_WEBHOOK_SECRET},
    {"Authorization": f"Bearer {TEST_WEBHOOK_SECRET}"}, {"X-Webhook-Secret": TEST_SCHEDULER_SECRET},
], ids=["none", "empty", "wrong", "longer", "shorter", "misspelt-header", "as-bearer", "scheduler-secret"])
def test_without_the_webhook_secret_nothing_is_written(stack, db, location, headers):
    before = row_counts(db)
    response = httpx.post(stack["functions"]["ghl-call-webhook"], content=hit(location),
                          headers={"Content-Type": "application/json", **headers}, timeout=30)
    assert response.status_code == 401 and response.json()["error"] == "unauthorized"
    assert TEST_WEBHOOK_SECRET not in response.text
    assert row_counts(db) == before


@pytest.fixture
def signed_webhook(stack, monkeypatch):
    """The webhook (real framework, the test stack's database) with GHL's signature keys configured."""
    from functions_framework import create_app

    from shared import bootstrap

    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ed_key = ed25519.Ed25519PrivateKey.generate()

    def pem(key) -> str:
        return key.public_key().public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    monkeypatch.setenv("SUPABASE_URL", stack["supabase_url"])
    monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", stack["service_role_key"])
    monkeypatch.setenv("GHL_WEBHOOK_SECRET", TEST_WEBHOOK_SECRET)
    monkeypatch.setenv("GHL_WEBHOOK_RSA_PUBLIC_KEY", pem(rsa_key))
    monkeypatch.setenv("GHL_WEBHOOK_ED25519_PUBLIC_KEY", pem(ed_key))
    bootstrap.reset()
    client = create_app(target="handle", source=str(ROOT / "functions" / "ghl_call_webhook" / "main.py")).test_client()

    def sign(body: bytes) -> dict[str, str]:
        return {"x-wh-signature": base64.b64encode(rsa_key.sign(body, padding.PKCS1v15(), hashes.SHA256())).decode(),
                "x-ghl-signature": base64.b64encode(ed_key.sign(body)).decode()}

    yield client, sign
    bootstrap.reset()


@pytest.mark.parametrize("signature", ["x-wh-signature", "x-ghl-signature"])
def test_a_tampered_signature_or_body_writes_nothing(signed_webhook, db, location, signature):
    client, sign = signed_webhook
    headers = {"Content-Type": "application/json", "X-Webhook-Secret": TEST_WEBHOOK_SECRET}
    body = hit(location)
    assert client.post("/", data=body, headers={**headers, **sign(body)}).status_code == 200  # the real thing works

    before = row_counts(db)
    tampered_body = body.replace(b"Answered", b"Voicemail")
    assert client.post("/", data=tampered_body, headers={**headers, **sign(body)}).status_code == 401
    flipped = bytearray(base64.b64decode(sign(body)[signature]))
    flipped[0] ^= 1
    other = hit(location)
    signatures = {**sign(other), signature: base64.b64encode(bytes(flipped)).decode()}
    answer = client.post("/", data=other, headers={**headers, **signatures})
    assert answer.status_code == 401 and signature in answer.json["message"]
    assert client.post("/", data=other, headers={**headers, **sign(other), signature: "not base64!"}).status_code == 401
    assert row_counts(db) == before


# ---- constant-time comparison -------------------------------------------------------------------------------

@pytest.fixture
def compare_digest_calls(monkeypatch):
    """Every hmac.compare_digest call (the real one still answers)."""
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    return calls


def test_the_webhook_secret_is_compared_in_constant_time(compare_digest_calls, stack, monkeypatch):
    from shared import errors
    from shared.config import Settings
    from shared.webhook_auth import require_webhook_secret

    settings = Settings(supabase_url="http://x", supabase_service_role_key="k" * 40,
                        ghl_webhook_secret=TEST_WEBHOOK_SECRET)
    require_webhook_secret({"X-Webhook-Secret": TEST_WEBHOOK_SECRET}, settings)
    with pytest.raises(errors.Unauthorized):
        require_webhook_secret({"X-Webhook-Secret": TEST_WEBHOOK_SECRET[:-1] + "?"}, settings)
    assert compare_digest_calls == [(TEST_WEBHOOK_SECRET.encode(), TEST_WEBHOOK_SECRET.encode()),
                                    ((TEST_WEBHOOK_SECRET[:-1] + "?").encode(), TEST_WEBHOOK_SECRET.encode())]


def test_the_scheduler_credentials_are_compared_in_constant_time(compare_digest_calls, stack):
    from shared import errors
    from shared.config import Settings
    from shared.http import require_scheduler_auth

    class Request:
        def __init__(self, token):
            self.headers = {"Authorization": f"Bearer {token}"}

    settings = Settings(supabase_url="http://x", supabase_service_role_key=stack["service_role_key"],
                        scheduler_secret=TEST_SCHEDULER_SECRET)
    require_scheduler_auth(Request(TEST_SCHEDULER_SECRET), settings)
    assert (TEST_SCHEDULER_SECRET.encode(), TEST_SCHEDULER_SECRET.encode()) in compare_digest_calls
    compare_digest_calls.clear()
    with pytest.raises(errors.Unauthorized):
        require_scheduler_auth(Request("wrong"), settings)
    # a wrong token is compared with every accepted credential, each in constant time
    assert compare_digest_calls == [(b"wrong", TEST_SCHEDULER_SECRET.encode()),
                                    (b"wrong", stack["service_role_key"].encode())]


# ---- the scheduler-facing functions without their credentials ------------------------------------------------

@pytest.mark.parametrize("function, body", [("sync-prospects-to-ghl", {}), ("process-ghl-import", {"action": "process"}),
                                            ("process-ghl-import", {"action": "replay_spool"})])
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer"}, {"Authorization": "Bearer wrong"},
                                     {"Authorization": f"Basic {TEST_SCHEDULER_SECRET}"},
                                     {"Authorization": f"Bearer {TEST_WEBHOOK_SECRET}"},
                                     {"X-Webhook-Secret": TEST_SCHEDULER_SECRET}],
                         ids=["none", "empty-bearer", "wrong", "basic", "webhook-secret", "other-header"])
def test_scheduler_functions_refuse_calls_without_their_credentials(stack, db, function, body, headers):
    before = row_counts(db)
    response = httpx.post(stack["functions"][function], json=body, headers=headers, timeout=30)
    assert response.status_code == 401 and response.json()["error"] == "unauthorized"
    assert TEST_SCHEDULER_SECRET not in response.text
    assert row_counts(db) == before


def test_the_anon_key_is_not_a_scheduler_credential(stack):
    response = httpx.post(stack["functions"]["sync-prospects-to-ghl"], json={},
                          headers={"Authorization": f"Bearer {stack['anon_key']}"}, timeout=30)
    assert response.status_code == 401


# ---- size limits ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("function, limit, headers", [
    ("ghl-call-webhook", 256 * 1024, {"X-Webhook-Secret": TEST_WEBHOOK_SECRET}),
    ("sync-prospects-to-ghl", 16 * 1024, {"Authorization": f"Bearer {TEST_SCHEDULER_SECRET}"}),
    ("process-ghl-import", 16 * 1024, {"Authorization": f"Bearer {TEST_SCHEDULER_SECRET}"}),
])
def test_request_size_limits_hold_declared_or_streamed(stack, db, function, limit, headers):
    url = stack["functions"][function]
    before = row_counts(db)
    body = b'{"callId": "' + b"x" * limit + b'"}'
    declared = httpx.post(url, content=body, headers={"Content-Type": "application/json", **headers}, timeout=60)
    assert declared.status_code == 413 and str(limit) in declared.json()["message"]

    def chunks():  # no Content-Length: the function stops reading past its limit
        for _ in range(limit // 8192 + 2):
            yield b" " * 8192

    streamed = httpx.post(url, content=chunks(), headers={"Content-Type": "application/json", **headers}, timeout=60)
    assert streamed.status_code == 413
    at_limit = httpx.post(url, content=b"{" + b" " * (limit - 2) + b"}", timeout=60,
                          headers={"Content-Type": "application/json", **headers})
    assert at_limit.status_code != 413  # the limit itself is allowed (then refused for what the body says)
    if function != "ghl-call-webhook":
        assert row_counts(db) == before


# ---- the anon key reads and writes nothing ---------------------------------------------------------------------

def public_tables(db) -> list[str]:
    return [row["tablename"] for row in db.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                                                   "ORDER BY tablename")]


def test_the_anon_key_reads_no_row_of_any_table(stack, db, location):
    tables = public_tables(db)
    assert {"ghl_integrations", "sales_calls", "ghl_webhook_events"} <= set(tables)
    for table in tables:
        assert db.execute(f"SELECT count(*) AS n FROM {table}").fetchone()["n"] >= 0
        response = httpx.get(f"{stack['supabase_url']}/rest/v1/{table}?select=*&limit=5",
                             headers={"apikey": stack["anon_key"], "Authorization": f"Bearer {stack['anon_key']}"})
        assert response.status_code in (200, 401, 403), (table, response.text)
        if response.status_code == 200:
            assert response.json() == [], table  # RLS without a policy for anon: no row
    # the integration just made (with its api_token) exists, yet anon sees none
    assert db.execute("SELECT count(*) AS n FROM ghl_integrations WHERE location_id = %s", (location,)).fetchone()["n"] == 1


def test_the_anon_key_writes_nothing_to_any_table(stack, db):
    before = {table: db.execute(f"SELECT count(*) AS n FROM {table}").fetchone()["n"] for table in public_tables(db)}
    anon = {"apikey": stack["anon_key"], "Authorization": f"Bearer {stack['anon_key']}",
            "Content-Type": "application/json", "Prefer": "return=representation"}
    for table in before:
        base = f"{stack['supabase_url']}/rest/v1/{table}"
        inserted = httpx.post(base, json={}, headers=anon)
        assert inserted.status_code in (401, 403), (table, inserted.status_code, inserted.text)
        column = db.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' "
                            "AND table_name = %s AND column_name <> 'id' AND is_generated = 'NEVER' "
                            "AND is_identity = 'NO' ORDER BY ordinal_position LIMIT 1", (table,)).fetchone()["column_name"]
        updated = httpx.patch(f"{base}?id=not.is.null", json={column: None}, headers=anon)
        assert updated.status_code in (401, 403) or updated.json() == [], (table, updated.text)
        deleted = httpx.delete(f"{base}?id=not.is.null", headers=anon)
        assert deleted.status_code in (401, 403) or deleted.json() == [], (table, deleted.text)
    after = {table: db.execute(f"SELECT count(*) AS n FROM {table}").fetchone()["n"] for table in before}
    assert after == before


def test_the_anon_key_can_call_no_function_that_reads_or_writes(stack, db):
    functions = db.execute(
        "SELECT p.proname, pg_get_function_identity_arguments(p.oid) AS args, p.provolatile, "
        "has_function_privilege('anon', p.oid, 'EXECUTE') AS anon_may, p.prorettype = 'trigger'::regtype AS trigger "
        "FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public' "
        "AND p.prokind = 'f' ORDER BY 1").fetchall()
    names = {f["proname"] for f in functions}
    assert {"ingest_call_event", "record_rejected_webhook", "process_import_chunk", "stage_import_page"} <= names
    # every function that writes (VOLATILE) or hands out data is closed to anon in the database itself ...
    open_to_anon = [f"{f['proname']}({f['args']})" for f in functions if f["anon_may"] and not f["trigger"]
                    and f["provolatile"] == "v"]
    assert open_to_anon == []
    # ... and through PostgREST, whatever its volatility: no rpc answers anon with data
    anon = {"apikey": stack["anon_key"], "Authorization": f"Bearer {stack['anon_key']}"}
    for function in sorted({f["proname"] for f in functions if not f["trigger"]}):
        response = httpx.post(f"{stack['supabase_url']}/rest/v1/rpc/{function}", json={}, headers=anon)
        if response.status_code < 300:
            stable = [f for f in functions if f["proname"] == function]
            assert all(f["provolatile"] == "i" for f in stable), (function, response.text)  # pure helpers only
        else:
            assert response.status_code in (400, 401, 403, 404), (function, response.status_code, response.text)
