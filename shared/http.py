"""What every function handler shares: method and size checks, auth for scheduler calls, error mapping.

A handler is `@function_handler(methods=("POST",), name=..., summary_message=...)` around
`def handle(request, request_id, summary) -> (body, status)`; errors raised inside become JSON answers
with the status `errors.http_status` gives, an unexpected exception becomes a 500 that says nothing of
its cause (logged with a request id), and every request ends in one JSON summary line.
"""

from __future__ import annotations

import base64
import functools
import hmac
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Callable

from shared import errors
from shared.domain.strict_json import loads_strict
from shared.logs import configure_logging, get_logger

log = get_logger("http")


def json_response(body: dict, status: int = 200, headers: dict | None = None):
    from flask import Response

    return Response(json.dumps(body, default=str), status=status, mimetype="application/json",
                    headers=headers or {})


def read_body(request, max_bytes: int) -> bytes:
    """The raw body, refusing more than max_bytes without reading it all (413)."""
    length = request.content_length
    if length is not None and length > max_bytes:
        raise errors.PayloadTooLarge(f"body of {length} bytes is over the limit of {max_bytes} bytes")
    data = request.stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise errors.PayloadTooLarge(f"body is over the limit of {max_bytes} bytes")
    return data


MAX_JSON_DEPTH = 100  # objects/arrays within each other; deeper bodies are refused (no real payload comes near)


def _nesting_depth(value, limit: int) -> int:
    """How deeply objects and arrays nest (iteratively: no recursion limit), stopping once past `limit`."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            if deepest > limit:
                break
            pending.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def parse_json_object(raw: bytes) -> dict:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise errors.BadRequest(f"body is not valid UTF-8 (byte {exc.start})") from None
    if not text.strip():
        raise errors.BadRequest("body is empty; a JSON object is required")
    try:
        value = loads_strict(text)  # strict JSON the database can hold: refuses NaN, 1e400, \u0000, ...
    except json.JSONDecodeError as exc:
        raise errors.BadRequest(f"body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise errors.BadRequest("body is not valid JSON: nested too deeply") from None
    if not isinstance(value, dict):
        raise errors.BadRequest(f"body must be a JSON object, not {type(value).__name__}")
    if _nesting_depth(value, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise errors.BadRequest(f"body is nested too deeply: more than {MAX_JSON_DEPTH} levels of objects and arrays")
    return value


def secrets_match(given: str | None, expected: str) -> bool:
    """Constant-time comparison, so the time taken says nothing about how much of a secret matched."""
    if given is None:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def bearer_token(request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def require_scheduler_auth(request, settings, function_name: str | None = None) -> None:
    """Scheduler-facing functions: `Authorization: Bearer <SCHEDULER_SECRET>` or the service-role key; or,
    deployed private (TRUSTED_INVOKER_EMAIL set), the OIDC token Google's front end has already checked."""
    token = bearer_token(request)
    accepted = [s.get_secret_value() for s in (settings.scheduler_secret, settings.supabase_service_role_key) if s]
    if any(secrets_match(token, secret) for secret in accepted):
        return
    if settings.trusted_invoker_email and token and _platform_verified_invoker(token, settings, function_name):
        return
    raise errors.Unauthorized("missing or wrong credentials: send Authorization: Bearer <SCHEDULER_SECRET>")


def _platform_verified_invoker(token: str, settings, function_name: str | None) -> bool:
    """The OIDC token of the trusted invoker for this function, as Cloud Run passes it on.

    A private function (deployed --no-allow-unauthenticated) is reached only after Google's front end has
    verified the token's signature and expiry, that its audience is the function and that its account holds
    the invoker role; Cloud Run then passes the token on with its signature removed, so the signature cannot
    be checked again here. What is checked is the claims: the account is TRUSTED_INVOKER_EMAIL (verified) and
    the audience is this function's URL, so a token of another account with the invoker role, or for another
    service, is refused. Safe only on a private function: deploy.sh sets TRUSTED_INVOKER_EMAIL only together
    with --no-allow-unauthenticated (docs/deploy.md "Private batch functions")."""
    parts = token.split(".")
    if len(parts) != 3:
        return False
    try:
        payload = parts[1] + "=" * (-len(parts[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(payload.encode("ascii")))
    except (ValueError, UnicodeError):
        return False
    if not isinstance(claims, dict):
        return False
    email, verified, audience, expires = (claims.get("email"), claims.get("email_verified"), claims.get("aud"),
                                          claims.get("exp"))
    if not (isinstance(email, str) and secrets_match(email, settings.trusted_invoker_email) and verified is True):
        return False
    if not isinstance(expires, (int, float)) or expires < time.time() - 60:
        return False
    base = (settings.functions_base_url or "").rstrip("/")
    if base and function_name:
        return audience == f"{base}/{function_name}"
    return isinstance(audience, str) and bool(base) and audience.startswith(base + "/")


# A caller's X-Request-Id is echoed (and logged) only when it looks like an id: a 4,000-character one overflowed
# the gateway's buffer for the function's response headers (a 502 after the call was written).
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def request_id_for(request) -> str:
    """The caller's X-Request-Id when it is a sane id (<= 128 of A-Z a-z 0-9 . _ : -), else a fresh one."""
    given = request.headers.get("X-Request-Id")
    return given if given and _SANE_REQUEST_ID.fullmatch(given) else uuid.uuid4().hex


def function_handler(*, methods: tuple[str, ...], name: str, summary_message: str = "request handled",
                     logger: logging.Logger | None = None) -> Callable:
    """Wrap a handler `fn(request, request_id, summary) -> (body, status)`: method check, error mapping, and
    ONE JSON summary line per request (`summary_message`, on the function's logger).

    The handler adds what it knows to `summary` (a dict) as it goes; the wrapper adds `status`, `ms` and, for
    a refused request, `error` and `reason`. Level: INFO for 2xx, WARNING for 4xx, ERROR for 5xx. A summary
    never holds a secret or a payload: handlers put ids, counts and outcomes in it, nothing else."""
    summary_log = logger or log

    def decorate(fn: Callable) -> Callable:
        # JSON logs from the first request on, even one refused before the settings are read (a 405).
        configure_logging(os.environ.get("LOG_LEVEL", "INFO"))

        @functools.wraps(fn)
        def wrapper(request):
            request_id = request_id_for(request)
            started = time.perf_counter()
            summary: dict = {"function": name, "request_id": request_id}
            retry_after = None
            try:
                if request.method not in methods:
                    raise errors.MethodNotAllowed(
                        f"method {request.method} is not allowed; use {', '.join(methods)}")
                body, status = fn(request, request_id, summary)
            except errors.BridgeError as exc:
                body, status = exc.to_body(), errors.http_status(exc)
                retry_after = getattr(exc, "retry_after_seconds", None)
                summary.update(error=exc.code, reason=exc.message)
            except Exception:  # noqa: BLE001 - the caller gets no stack trace, the log does
                summary_log.exception("unexpected error", extra={"fields": {"function": name,
                                                                             "request_id": request_id}})
                body, status = {"error": "internal_error",
                                "message": f"unexpected error; reference {request_id}"}, 500
                summary["error"] = "internal_error"
            headers = {"X-Request-Id": request_id}
            if retry_after and status >= 500:
                headers["Retry-After"] = str(int(retry_after))
            if status == 405:
                headers["Allow"] = ", ".join(methods)
            summary.update(status=status, ms=round((time.perf_counter() - started) * 1000, 2))
            level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
            summary_log.log(level, summary_message, extra={"fields": summary})
            return json_response(body, status, headers)

        return wrapper

    return decorate
