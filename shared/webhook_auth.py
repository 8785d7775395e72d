"""Is this webhook delivery really from our GHL workflows? Checked before the body is parsed.

1. `X-Webhook-Secret` must equal GHL_WEBHOOK_SECRET (constant-time). Without a configured secret the
   webhook refuses everything (500 configuration error): it never runs unauthenticated.
2. Where GHL signed the delivery and a public key is configured, the signature over the raw body must verify:
   `x-wh-signature` (RSA-SHA256, PKCS#1 v1.5, base64; key GHL_WEBHOOK_RSA_PUBLIC_KEY) and `x-ghl-signature`
   (Ed25519, base64; key GHL_WEBHOOK_ED25519_PUBLIC_KEY). A signature header without a configured key is
   not checked (workflow webhooks are unsigned; the secret is the check for them).
3. Freshness: a delivery that states when it was sent (`X-Webhook-Timestamp`/`X-GHL-Timestamp` header, or the
   body's `timestamp` in a signed marketplace delivery) must be within WEBHOOK_MAX_AGE_SECONDS; one that
   carries a delivery id (`X-Webhook-Id`/`X-GHL-Webhook-Id` header, or the signed body's `webhookId`) is
   refused when this instance already accepted that id. Other instances may accept a replay: harmless, as
   the merge is idempotent (a repeated hit answers "unchanged").

Every failure is Unauthorized (401) with a message that never contains a secret or a signature.
"""

from __future__ import annotations

import base64
import binascii
import functools
import threading
import time
from collections import OrderedDict
from datetime import datetime, timezone
from typing import Any

from shared import errors
from shared.http import secrets_match

SECRET_HEADER = "X-Webhook-Secret"
RSA_SIGNATURE_HEADER = "x-wh-signature"
ED25519_SIGNATURE_HEADER = "x-ghl-signature"
_TIMESTAMP_HEADERS = ("X-Webhook-Timestamp", "X-GHL-Timestamp")
_ID_HEADERS = ("X-Webhook-Id", "X-GHL-Webhook-Id")


def require_webhook_secret(headers, settings) -> None:
    """Step 1, on headers only (nothing of the body is read before it passes)."""
    expected = settings.ghl_webhook_secret.get_secret_value() if settings.ghl_webhook_secret else ""
    if not expected:
        raise errors.ConfigurationError(
            "GHL_WEBHOOK_SECRET is not configured: the webhook refuses every request until it is set")
    if not secrets_match(headers.get(SECRET_HEADER), expected):
        raise errors.Unauthorized(f"missing or wrong {SECRET_HEADER} header")


@functools.lru_cache(maxsize=8)
def _public_key(pem: str):
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        return load_pem_public_key(pem.replace("\\n", "\n").encode("ascii"))
    except (ValueError, TypeError, UnicodeEncodeError) as exc:
        raise errors.ConfigurationError(f"a webhook public key is not a valid PEM public key ({type(exc).__name__})")


def _signature_bytes(value: str, header: str) -> bytes:
    try:
        return base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise errors.Unauthorized(f"{header} is not valid base64") from None


def verify_signatures(headers, raw_body: bytes, settings) -> list[str]:
    """Step 2. Returns the signature headers that were verified (empty when none applied).
    `cryptography` is imported only when a signature is to be checked (workflow webhooks never need it)."""
    verified = []
    rsa_signature = headers.get(RSA_SIGNATURE_HEADER)
    if rsa_signature and settings.ghl_webhook_rsa_public_key:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding, rsa

        key = _public_key(settings.ghl_webhook_rsa_public_key)
        if not isinstance(key, rsa.RSAPublicKey):
            raise errors.ConfigurationError("GHL_WEBHOOK_RSA_PUBLIC_KEY is not an RSA public key")
        try:
            key.verify(_signature_bytes(rsa_signature, RSA_SIGNATURE_HEADER), raw_body, padding.PKCS1v15(),
                       hashes.SHA256())
        except InvalidSignature:
            raise errors.Unauthorized(f"{RSA_SIGNATURE_HEADER} does not match the body") from None
        verified.append(RSA_SIGNATURE_HEADER)
    ed_signature = headers.get(ED25519_SIGNATURE_HEADER)
    if ed_signature and settings.ghl_webhook_ed25519_public_key:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric import ed25519

        key = _public_key(settings.ghl_webhook_ed25519_public_key)
        if not isinstance(key, ed25519.Ed25519PublicKey):
            raise errors.ConfigurationError("GHL_WEBHOOK_ED25519_PUBLIC_KEY is not an Ed25519 public key")
        try:
            key.verify(_signature_bytes(ed_signature, ED25519_SIGNATURE_HEADER), raw_body)
        except InvalidSignature:
            raise errors.Unauthorized(f"{ED25519_SIGNATURE_HEADER} does not match the body") from None
        verified.append(ED25519_SIGNATURE_HEADER)
    return verified


def _parse_instant(value: Any) -> datetime | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        if isinstance(value, (int, float)) or str(value).strip().replace(".", "", 1).isdigit():
            epoch = float(value)
            return datetime.fromtimestamp(epoch / 1000 if epoch > 1e11 else epoch, tz=timezone.utc)
        parsed = datetime.fromisoformat(str(value).strip())
    except (ValueError, OverflowError, OSError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


class ReplayGuard:
    """Delivery ids accepted by this instance within the freshness window (bounded, thread-safe)."""

    def __init__(self, max_ids: int = 50_000):
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()
        self._max_ids = max_ids

    def seen(self, delivery_id: str, max_age: float, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        with self._lock:
            while self._seen and (next(iter(self._seen.values())) < now - max_age or len(self._seen) > self._max_ids):
                self._seen.popitem(last=False)
            return delivery_id in self._seen

    def remember(self, delivery_id: str, now: float | None = None) -> None:
        with self._lock:
            self._seen[delivery_id] = time.time() if now is None else now
            self._seen.move_to_end(delivery_id)


def delivery_metadata(headers, payload: dict, signed: bool) -> tuple[datetime | None, str | None, str | None]:
    """(sent at, delivery id, where the time came from). Body fields count only for signed deliveries."""
    for header in _TIMESTAMP_HEADERS:
        if headers.get(header):
            sent_at, source = _parse_instant(headers.get(header)), header
            if sent_at is None:
                raise errors.Unauthorized(f"{header} is not a timestamp")
            break
    else:
        sent_at, source = None, None
        if signed and payload.get("timestamp") is not None:
            sent_at, source = _parse_instant(payload.get("timestamp")), "timestamp"
            if sent_at is None:
                raise errors.Unauthorized("the signed body's timestamp is not a timestamp")
    delivery_id = next((headers.get(h) for h in _ID_HEADERS if headers.get(h)), None)
    if delivery_id is None and signed and isinstance(payload.get("webhookId"), str):
        delivery_id = payload["webhookId"]
    return sent_at, delivery_id, source


def check_freshness(headers, payload: dict, settings, guard: ReplayGuard, signed: bool,
                    now: datetime | None = None) -> str | None:
    """Step 3. Returns the delivery id to remember once the delivery is accepted (or None)."""
    now = now or datetime.now(timezone.utc)
    max_age = settings.webhook_max_age_seconds
    sent_at, delivery_id, source = delivery_metadata(headers, payload, signed)
    if sent_at is not None and abs((now - sent_at).total_seconds()) > max_age:
        raise errors.Unauthorized(f"stale delivery: {source} is more than {max_age} s from now")
    if delivery_id is not None and guard.seen(delivery_id, max_age, now.timestamp()):
        raise errors.Unauthorized("replayed delivery: this webhook id was already accepted")
    return delivery_id
