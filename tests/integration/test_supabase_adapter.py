"""The Supabase adapter against the real gateway + PostgREST: one rpc, errors mapped to our tree."""

from __future__ import annotations

import pytest

from shared import errors
from shared.adapters.supabase_db import call_rpc, create_service_client


@pytest.fixture(scope="module")
def client(stack):
    return create_service_client(stack["supabase_url"], stack["service_role_key"])


def test_rpc_returns_the_function_result(client):
    assert call_rpc(client, "normalize_phone_e164", {"raw": "(555) 010-2233"}) == "+15550102233"


def test_unknown_function_is_an_error_not_a_silent_none(client):
    with pytest.raises(errors.BridgeError) as raised:
        call_rpc(client, "no_such_function", {})
    assert "PGRST202" in raised.value.message


def test_unreachable_database_api_is_transient():
    dead = create_service_client("http://127.0.0.1:9", "x" * 40, timeout=1.0)
    with pytest.raises(errors.DatabaseUnavailable):
        call_rpc(dead, "normalize_phone_e164", {"raw": "1"})


def test_the_client_is_supabase_pys_own_postgrest_client_configured_as_create_client_does():
    """create_service_client builds only supabase-py's PostgREST client (no auth/realtime/storage imports on a
    cold start); it must stay what `supabase.create_client(...).postgrest` is, with the same URL, keys, schema."""
    from postgrest import SyncPostgrestClient
    from supabase import ClientOptions, create_client

    ours = create_service_client("https://ref.supabase.co", "k" * 40, timeout=4.0)
    theirs = create_client("https://ref.supabase.co", "k" * 40,
                           options=ClientOptions(auto_refresh_token=False, persist_session=False)).postgrest
    assert type(ours) is type(theirs) is SyncPostgrestClient
    assert str(ours.base_url) == str(theirs.base_url) == "https://ref.supabase.co/rest/v1"
    for header in ("apiKey", "Authorization"):
        assert ours.headers[header] == theirs.headers[header]
    assert ours.headers["Accept-Profile"] == theirs.headers["Accept-Profile"] == "public"
    assert ours.session.timeout.read == 4.0  # our own httpx client: explicit timeouts, pooled connections
