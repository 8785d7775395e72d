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
