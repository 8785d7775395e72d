"""S3-compatible object storage: the one place a boto3 S3 client is made (the webhook spool and call recordings).

Production: Supabase Storage's S3 endpoint or any S3; local stack and tests: moto's S3 server. Credentials come
from the standard AWS variables. boto3 is imported on first use only, so a path that never touches storage (the
webhook's normal path) does not pay for it at cold start.
"""

from __future__ import annotations

import threading
from typing import IO, Any


def s3_client(endpoint_url: str | None, region: str, *, read_timeout: float = 10.0):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3", endpoint_url=endpoint_url, region_name=region,
        config=Config(connect_timeout=3, read_timeout=read_timeout, retries={"max_attempts": 3, "mode": "standard"}))


def is_missing(exc: BaseException) -> bool:
    """botocore's answer for an object (or bucket) that is not there."""
    response = getattr(exc, "response", None)
    return isinstance(response, dict) and response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound")


class S3Bucket:
    """One bucket of an S3-compatible store, its client made lazily and reused."""

    def __init__(self, *, endpoint_url: str | None, bucket: str, region: str, client=None,
                 read_timeout: float = 10.0):
        self.bucket = bucket
        self._endpoint_url = endpoint_url
        self._region = region
        self._read_timeout = read_timeout
        self._client = client
        self._lock = threading.Lock()

    @property
    def client(self):
        # One client, made once even when several upload threads ask at the same moment (a boto3 client
        # costs ~15 MB and ~1 s to build; the client itself is thread-safe).
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = s3_client(self._endpoint_url, self._region, read_timeout=self._read_timeout)
        return self._client

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            if is_missing(exc):
                return False
            raise
        return True

    def upload(self, key: str, body: IO[bytes], *, size: int, content_type: str,
               part_size: int = 8 * 1024 * 1024) -> None:
        """Write a seekable file-like object of `size` bytes under key: one PUT up to part_size, else a
        multipart upload (parts of part_size, one at a time, so memory stays at one part). Either way the
        object appears whole or not at all."""
        if size <= part_size:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentLength=size,
                                   ContentType=content_type)
            return
        from boto3.s3.transfer import TransferConfig

        config = TransferConfig(multipart_threshold=part_size, multipart_chunksize=part_size, use_threads=False)
        self.client.upload_fileobj(body, self.bucket, key, ExtraArgs={"ContentType": content_type}, Config=config)

    def get_bytes(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def head(self, key: str) -> dict[str, Any]:
        return self.client.head_object(Bucket=self.bucket, Key=key)


def recordings_bucket_from_settings(settings) -> S3Bucket | None:
    """The call recordings' bucket, or None when RECORDINGS_ENABLED is false. Same store as the spool unless
    RECORDINGS_S3_ENDPOINT_URL / RECORDINGS_S3_REGION say otherwise."""
    if not settings.recordings_enabled:
        return None
    return S3Bucket(endpoint_url=settings.recordings_s3_endpoint_url or settings.spool_s3_endpoint_url,
                    bucket=settings.recordings_s3_bucket,
                    region=settings.recordings_s3_region or settings.spool_s3_region, read_timeout=60.0)
