"""The spool adapter against moto's real S3 server (the one the stack runs)."""

from __future__ import annotations

import os
import uuid
from datetime import datetime, timezone

import pytest

from shared.adapters.object_spool import ObjectSpool


@pytest.fixture
def spool(stack, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "local")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "local")
    return ObjectSpool(endpoint_url=stack["s3_endpoint_url"], bucket="ghl-webhook-spool", region="us-east-1",
                       prefix=f"test-{uuid.uuid4().hex[:8]}/")


def test_put_list_get_delete_keeps_bytes_exactly(spool):
    first = datetime(2026, 2, 12, 15, 4, 5, tzinfo=timezone.utc)
    raw = b'{"callId": "x", "notes": "\xff not utf-8"}'
    key1 = spool.put(raw, received_at=first, request_id="r1")
    key2 = spool.put(b"{}", received_at=first.replace(second=6), request_id="r2")
    assert list(spool.keys()) == [key1, key2]  # arrival order
    got = spool.get(key1)
    assert got.body == raw and got.received_at == first and got.request_id == "r1"
    spool.delete(key1)
    assert list(spool.keys()) == [key2]
