"""The composition root: builds real dependencies lazily, once per warm instance, every one overridable.

Functions call `get_settings()` / `get_database()`; tests call `override(...)` or pass ports directly to
services.
"""

from __future__ import annotations

import threading
from typing import Any

from shared.config import Settings
from shared.logs import configure_logging, register_secret

_lock = threading.RLock()  # re-entrant: one dependency's builder may ask for another
_instances: dict[str, Any] = {}


def _once(key: str, build):
    if key not in _instances:
        with _lock:
            if key not in _instances:
                _instances[key] = build()
    return _instances[key]


def get_settings() -> Settings:
    def build() -> Settings:
        settings = Settings()
        configure_logging(settings.log_level)
        for secret in settings.secret_values():
            register_secret(secret)
        return settings

    return _once("settings", build)


def get_database():
    def build():
        from shared.adapters.supabase_db import create_service_client

        settings = get_settings()
        return create_service_client(settings.supabase_url, settings.supabase_service_role_key.get_secret_value(),
                                     timeout=settings.database_timeout_seconds)

    return _once("database", build)


def get_spool():
    """The webhook spool (shared.adapters.object_spool.ObjectSpool), or None when SPOOL_S3_BUCKET is not set.
    Its boto3 client is made on first use, so only a request that spools pays for it."""

    def build():
        from shared.adapters.object_spool import spool_from_settings

        return spool_from_settings(get_settings())

    return _once("spool", build)


def get_recordings():
    """The call recordings' bucket (shared.adapters.object_store.S3Bucket), or None when RECORDINGS_ENABLED is
    false. Its boto3 client is made on first use (the enrich action only)."""

    def build():
        from shared.adapters.object_store import recordings_bucket_from_settings

        return recordings_bucket_from_settings(get_settings())

    return _once("recordings", build)


def override(**instances: Any) -> None:
    """Replace dependencies (settings=..., database=..., spool=..., recordings=...) for tests."""
    with _lock:
        _instances.update(instances)


def reset() -> None:
    with _lock:
        _instances.clear()
