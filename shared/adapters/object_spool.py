"""The webhook spool: authenticated raw requests kept in S3-compatible object storage while the database
cannot be reached, and replayed later through the same SQL function.

Production: Supabase Storage's S3 endpoint (or any S3-compatible store), configured by SPOOL_S3_* and the
standard AWS credential variables. Local stack and tests: moto's S3 server. boto3 is imported only when a
spool is actually used, so it costs nothing on the normal webhook path (cold start).

An object holds the body exactly as received (base64, since it need not be valid UTF-8) and when it was
received; never the secret header.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone

from shared.adapters.object_store import S3Bucket


@dataclass(frozen=True)
class SpooledRequest:
    key: str
    body: bytes
    received_at: datetime
    request_id: str


class ObjectSpool:
    def __init__(self, *, endpoint_url: str | None, bucket: str, region: str, prefix: str, client=None):
        self.bucket = bucket
        self.prefix = prefix
        self._store = S3Bucket(endpoint_url=endpoint_url, bucket=bucket, region=region, client=client)

    @property
    def client(self):
        return self._store.client

    def put(self, body: bytes, *, received_at: datetime, request_id: str) -> str:
        # Keys sort by arrival time, so a replay re-ingests in the order the requests came in.
        key = f"{self.prefix}{received_at.strftime('%Y%m%dT%H%M%S.%fZ')}-{request_id}-{uuid.uuid4().hex[:8]}.json"
        document = {"received_at": received_at.isoformat(), "request_id": request_id,
                    "body_b64": base64.b64encode(body).decode("ascii")}
        self.client.put_object(Bucket=self.bucket, Key=key, Body=json.dumps(document).encode("utf-8"),
                               ContentType="application/json")
        return key

    def keys(self) -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
            for item in page.get("Contents", []):
                yield item["Key"]

    def get(self, key: str) -> SpooledRequest:
        document = json.loads(self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read())
        received_at = datetime.fromisoformat(document["received_at"])
        if received_at.tzinfo is None:
            received_at = received_at.replace(tzinfo=timezone.utc)
        return SpooledRequest(key=key, body=base64.b64decode(document["body_b64"]), received_at=received_at,
                              request_id=document.get("request_id", ""))

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=key)


def spool_from_settings(settings) -> ObjectSpool | None:
    """The configured spool, or None when SPOOL_S3_BUCKET is not set (the webhook then answers 503 without spooling)."""
    if not settings.spool_s3_bucket:
        return None
    return ObjectSpool(endpoint_url=settings.spool_s3_endpoint_url, bucket=settings.spool_s3_bucket,
                       region=settings.spool_s3_region, prefix=settings.spool_s3_prefix)
