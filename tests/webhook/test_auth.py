"""Webhook authentication (pure): shared secret, RSA/Ed25519 signatures over the raw body, freshness."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from shared import errors
from shared.config import Settings
from shared.webhook_auth import (
    ReplayGuard, check_freshness, require_webhook_secret, verify_signatures,
)

BODY = b'{"callId": "c1", "timestamp": "2026-02-12T15:04:05Z", "webhookId": "wh_1"}'
NOW = datetime(2026, 2, 12, 15, 5, 0, tzinfo=timezone.utc)


def pem(public_key) -> str:
    return public_key.public_bytes(serialization.Encoding.PEM,
                                   serialization.PublicFormat.SubjectPublicKeyInfo).decode()


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ed_key():
    return ed25519.Ed25519PrivateKey.generate()


def settings(**values) -> Settings:
    return Settings(supabase_url="http://x", supabase_service_role_key="k" * 40, **values)


def rsa_sign(key, body: bytes) -> str:
    return base64.b64encode(key.sign(body, padding.PKCS1v15(), hashes.SHA256())).decode()


def ed_sign(key, body: bytes) -> str:
    return base64.b64encode(key.sign(body)).decode()


def test_right_secret_passes():
    require_webhook_secret({"X-Webhook-Secret": "s" * 20}, settings(ghl_webhook_secret="s" * 20))


@pytest.mark.parametrize("headers", [{}, {"X-Webhook-Secret": ""}, {"X-Webhook-Secret": "s" * 19},
                                     {"X-Webhook-Secret": "S" * 20}, {"Authorization": "Bearer " + "s" * 20}])
def test_missing_or_wrong_secret_is_401_without_the_secret(headers):
    with pytest.raises(errors.Unauthorized) as raised:
        require_webhook_secret(headers, settings(ghl_webhook_secret="s" * 20))
    assert "s" * 20 not in str(raised.value.to_body())


@pytest.mark.parametrize("secret", [None, ""])
def test_no_configured_secret_refuses_everything(secret):
    with pytest.raises(errors.ConfigurationError, match="GHL_WEBHOOK_SECRET"):
        require_webhook_secret({"X-Webhook-Secret": ""}, settings(ghl_webhook_secret=secret))


def test_rsa_signature(rsa_key):
    config = settings(ghl_webhook_rsa_public_key=pem(rsa_key.public_key()))
    assert verify_signatures({"x-wh-signature": rsa_sign(rsa_key, BODY)}, BODY, config) == ["x-wh-signature"]
    with pytest.raises(errors.Unauthorized, match="x-wh-signature"):
        verify_signatures({"x-wh-signature": rsa_sign(rsa_key, BODY)}, BODY + b" ", config)
    with pytest.raises(errors.Unauthorized, match="base64"):
        verify_signatures({"x-wh-signature": "%%%"}, BODY, config)


def test_ed25519_signature(ed_key):
    config = settings(ghl_webhook_ed25519_public_key=pem(ed_key.public_key()))
    assert verify_signatures({"x-ghl-signature": ed_sign(ed_key, BODY)}, BODY, config) == ["x-ghl-signature"]
    other = ed25519.Ed25519PrivateKey.generate()
    with pytest.raises(errors.Unauthorized, match="x-ghl-signature"):
        verify_signatures({"x-ghl-signature": ed_sign(other, BODY)}, BODY, config)


def test_both_signatures_checked_when_both_present(rsa_key, ed_key):
    config = settings(ghl_webhook_rsa_public_key=pem(rsa_key.public_key()),
                      ghl_webhook_ed25519_public_key=pem(ed_key.public_key()))
    headers = {"x-wh-signature": rsa_sign(rsa_key, BODY), "x-ghl-signature": ed_sign(ed_key, BODY)}
    assert verify_signatures(headers, BODY, config) == ["x-wh-signature", "x-ghl-signature"]
    headers["x-ghl-signature"] = ed_sign(ed_key, b"other")
    with pytest.raises(errors.Unauthorized):
        verify_signatures(headers, BODY, config)


def test_signature_without_configured_key_is_not_checked(rsa_key):
    assert verify_signatures({"x-wh-signature": "garbage"}, BODY, settings()) == []


def test_key_of_the_wrong_kind_is_a_configuration_error(ed_key):
    config = settings(ghl_webhook_rsa_public_key=pem(ed_key.public_key()))
    with pytest.raises(errors.ConfigurationError):
        verify_signatures({"x-wh-signature": "AAAA"}, BODY, config)


def test_pem_with_escaped_newlines_is_accepted(rsa_key):
    config = settings(ghl_webhook_rsa_public_key=pem(rsa_key.public_key()).replace("\n", "\\n"))
    assert verify_signatures({"x-wh-signature": rsa_sign(rsa_key, BODY)}, BODY, config)


def test_fresh_signed_delivery_passes_once_then_is_a_replay():
    guard, config = ReplayGuard(), settings()
    payload = {"timestamp": "2026-02-12T15:04:05Z", "webhookId": "wh_1"}
    delivery_id = check_freshness({}, payload, config, guard, signed=True, now=NOW)
    assert delivery_id == "wh_1"
    guard.remember(delivery_id, now=NOW.timestamp())
    with pytest.raises(errors.Unauthorized, match="replayed"):
        check_freshness({}, payload, config, guard, signed=True, now=NOW)


def test_stale_signed_delivery_is_refused():
    with pytest.raises(errors.Unauthorized, match="stale"):
        check_freshness({}, {"timestamp": "2026-02-12T14:00:00Z"}, settings(), ReplayGuard(), signed=True, now=NOW)


def test_unsigned_body_fields_are_call_data_not_delivery_metadata():
    old = {"timestamp": "2020-01-01T00:00:00Z", "webhookId": "wh_1"}
    assert check_freshness({}, old, settings(), ReplayGuard(), signed=False, now=NOW) is None


def test_timestamp_and_id_headers_apply_to_any_delivery():
    guard, config = ReplayGuard(), settings()
    stale = (NOW - timedelta(minutes=10)).isoformat()
    with pytest.raises(errors.Unauthorized, match="X-Webhook-Timestamp"):
        check_freshness({"X-Webhook-Timestamp": stale}, {}, config, guard, signed=False, now=NOW)
    epoch_ms = str(int(NOW.timestamp() * 1000))
    assert check_freshness({"X-Webhook-Timestamp": epoch_ms, "X-Webhook-Id": "d1"}, {}, config, guard,
                           signed=False, now=NOW) == "d1"
    with pytest.raises(errors.Unauthorized, match="not a timestamp"):
        check_freshness({"X-Webhook-Timestamp": "soon"}, {}, config, guard, signed=False, now=NOW)


def test_replay_guard_forgets_ids_older_than_the_window():
    guard = ReplayGuard()
    guard.remember("a", now=1000.0)
    assert guard.seen("a", max_age=300, now=1200.0)
    assert not guard.seen("a", max_age=300, now=1400.0)
