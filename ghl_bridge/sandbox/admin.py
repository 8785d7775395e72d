"""A small client for the sandbox's /_sandbox/ admin API (for tests, benchmarks and people).

    admin = SandboxAdmin("http://127.0.0.1:54340")
    location = admin.create_location(burst_limit=20, burst_window_ms=1000,
                                     custom_fields=[{"id": "cf_title", "name": "Job title"}])
    admin.seed(location.id, contacts=100_000, calls=500)
    GhlClient(location_id=location.id, token=location.token, base_url=admin.base_url)
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import httpx


@dataclass(frozen=True)
class SandboxLocation:
    id: str
    token: str
    base_url: str


class SandboxError(RuntimeError):
    pass


class SandboxAdmin:
    def __init__(self, base_url: str, *, timeout: float = 60.0):
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url + "/_sandbox", timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "SandboxAdmin":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _call(self, method: str, path: str, json: dict | None = None, params: dict | None = None) -> dict:
        response = self._http.request(method, path, json=json, params=params)
        if response.status_code >= 400:
            raise SandboxError(f"sandbox {method} {path} answered {response.status_code}: {response.text[:500]}")
        return response.json()

    def health(self) -> dict:
        return self._call("GET", "/health")

    def create_location(self, location_id: str | None = None, *, token: str | None = None,
                        burst_limit: int | None = None, burst_window_ms: int | None = None,
                        daily_limit: int | None = None, duplicate_rule: list[str] | None = None,
                        custom_fields: list[dict] | None = None, latency_ms: float | None = None,
                        name: str | None = None, timezone: str | None = None) -> SandboxLocation:
        """Create (or reconfigure) a location; a unique id and token are made up when not given. name and
        timezone: what GET /locations/{id} answers (default "Sandbox <id>", "UTC")."""
        location_id = location_id or f"loc_{uuid.uuid4().hex[:16]}"
        settings = {"token": token or f"sandbox-token-{uuid.uuid4().hex}", "burst_limit": burst_limit,
                    "burst_window_ms": burst_window_ms, "daily_limit": daily_limit,
                    "duplicate_rule": duplicate_rule, "custom_fields": custom_fields, "name": name,
                    "timezone": timezone}
        if latency_ms is not None:
            settings["latency_ms"] = latency_ms
        answer = self._call("PUT", f"/locations/{location_id}", {k: v for k, v in settings.items() if v is not None})
        return SandboxLocation(id=answer["id"], token=answer["token"], base_url=self.base_url)

    def configure_location(self, location_id: str, **settings) -> dict:
        """Change limits, duplicate_rule, custom_fields, latency_ms, token (the old one is revoked), name or timezone
        of an existing location."""
        return self._call("PUT", f"/locations/{location_id}", settings)

    def location(self, location_id: str) -> dict:
        return self._call("GET", f"/locations/{location_id}")

    def seed(self, location_id: str, *, contacts: int = 0, calls: int = 0, voicemail_share: float = 0.1,
             contact_records: list[dict] | None = None, call_records: list[dict] | None = None) -> dict:
        """Generated contacts and calls (fast), and/or given records (contacts bypass the duplicate rule)."""
        return self._call("POST", f"/locations/{location_id}/seed", {
            "contacts": contacts, "calls": calls, "voicemail_share": voicemail_share,
            "contact_records": contact_records or [], "call_records": call_records or []})

    def contacts(self, location_id: str, *, offset: int = 0, limit: int = 100_000) -> list[dict]:
        return self._call("GET", f"/locations/{location_id}/contacts",
                          params={"offset": offset, "limit": limit})["contacts"]

    def stats(self, location_id: str | None = None) -> dict:
        """Requests per endpoint, statuses, upserts per contact, 429s sent, contract violations (with details)."""
        return self._call("GET", f"/locations/{location_id}/stats" if location_id else "/stats")

    def set_faults(self, location_id: str, **faults) -> dict:
        """error_count/error_rate/error_status, hang_count/hang_rate/hang_seconds,
        rate_limit_count/rate_limit_rate/retry_after_seconds, only_paths, total_extra (lists report that many
        more in `total` than they hold). Replaces earlier faults."""
        return self._call("PUT", f"/locations/{location_id}/faults", faults)

    def clear_faults(self, location_id: str) -> dict:
        return self._call("PUT", f"/locations/{location_id}/faults", {})

    def set_media(self, location_id: str, **settings) -> dict:
        """transcript_ready_after_requests, transcript_delay_seconds, recording_ready_after_requests,
        recording_bytes (ghl_bridge/sandbox/media.py). Unnamed settings keep their values."""
        return self._call("PUT", f"/locations/{location_id}/media", settings)

    def media(self, location_id: str) -> dict:
        return self._call("GET", f"/locations/{location_id}/media")

    def add_calls_with_media(self, location_id: str, calls: list[dict]) -> list[str]:
        """[{"message": {...}, "transcription": [...], "recording_bytes": n}] -> the messages' ids."""
        return self._call("POST", f"/locations/{location_id}/media/calls", {"calls": calls})["message_ids"]

    def recording(self, location_id: str, message_id: str) -> bytes:
        """The bytes the recording endpoint serves for this message once it is ready."""
        response = self._http.get(f"/locations/{location_id}/media/recordings/{message_id}")
        if response.status_code >= 400:
            raise SandboxError(f"sandbox recording of {message_id} answered {response.status_code}")
        return response.content

    def reset(self, location_id: str) -> dict:
        """Forget the location's contacts, calls, stats and faults (keeps its token and settings)."""
        return self._call("POST", f"/locations/{location_id}/reset")
