"""The Supabase (PostgREST) adapter: building the client once, calling SQL functions, mapping errors.

Everything atomic or set-based is a SQL function in supabase/migrations, called once through `rpc`.
PostgREST/Postgres errors become our error tree here, at the boundary (`raise ... from exc`).
"""

from __future__ import annotations

from typing import Any

import httpx

from shared import errors

# SQLSTATE classes that mean "the input was wrong" (data exceptions, integrity violations, raise_exception).
_BAD_INPUT_SQLSTATE_PREFIXES = ("22", "23", "P0001")
# PostgREST codes for "cannot reach the database" (PGRST000-PGRST003) are transient.
_UNAVAILABLE_CODES = {"PGRST000", "PGRST001", "PGRST002", "PGRST003"}


def create_service_client(url: str, service_role_key: str, timeout: float = 10.0):
    """supabase-py's PostgREST client, as `supabase.create_client(url, key).postgrest` builds it, with our own
    httpx client (pooled connections, explicit timeouts). Thread-safe: one per instance serves every request.

    Everything here talks to Postgres through PostgREST only (rpc, table), so the rest of the Supabase client
    (auth, realtime, storage, functions: about 200 ms of imports per cold start) is never built. The client is
    `postgrest.SyncPostgrestClient`, supabase-py's own (the package supabase-py pins to its release and builds
    `Client.postgrest` from), made through its public constructor with the same URL, headers and schema;
    tests/integration/test_supabase_adapter.py checks they stay the same as supabase-py's."""
    from postgrest import SyncPostgrestClient

    http = httpx.Client(timeout=httpx.Timeout(timeout, connect=min(timeout, 3.0)),
                        limits=httpx.Limits(max_connections=64, max_keepalive_connections=32))
    return SyncPostgrestClient(f"{url.rstrip('/')}/rest/v1", schema="public", http_client=http,
                               headers={"apiKey": service_role_key, "Authorization": f"Bearer {service_role_key}"})


def map_database_error(exc: BaseException) -> errors.BridgeError:
    from postgrest.exceptions import APIError

    if isinstance(exc, httpx.TransportError):
        return errors.DatabaseUnavailable(f"database API unreachable ({type(exc).__name__})")
    if isinstance(exc, APIError):
        code = exc.code or ""
        if code in _UNAVAILABLE_CODES or code.startswith("08") or code in ("57P01", "57P03", "53300"):
            return errors.DatabaseUnavailable(f"database unavailable ({code})")
        if code.startswith(_BAD_INPUT_SQLSTATE_PREFIXES):
            return errors.BadRequest(exc.message or "rejected by the database",
                                     details={k: v for k, v in {"code": code, "hint": exc.hint,
                                                                "details": exc.details}.items() if v})
        if not code or code in ("502", "503", "504"):
            # A 5xx from the gateway with no PostgREST body (postgrest-py then puts the HTTP status in `code`):
            # PostgREST is down behind it.
            return errors.DatabaseUnavailable("database API answered without a PostgREST error body"
                                              + (f" (HTTP {code})" if code else ""))
        return errors.BridgeError(f"database error {code}: {exc.message}")
    return errors.BridgeError(f"database call failed ({type(exc).__name__})")


def call_rpc(client, function: str, params: dict[str, Any]) -> Any:
    """Call one SQL function (one round trip) and return its data; errors mapped to our tree."""
    from postgrest.exceptions import APIError

    try:
        return client.rpc(function, params).execute().data
    except (APIError, httpx.HTTPError) as exc:
        raise map_database_error(exc) from exc
