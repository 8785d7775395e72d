"""Call enrichment's database port: one PostgREST rpc per operation (SQL in
supabase/migrations/20261202010000_add_call_enrichment.sql).

Synchronous (supabase-py's client); the async service runs these calls in a worker thread.
"""

from __future__ import annotations

from typing import Any

from shared.adapters.supabase_db import call_rpc


class EnrichRepository:
    def __init__(self, client):
        self._client = client

    def list_integrations(self, location_id: str | None = None) -> list[dict[str, Any]]:
        """Active integrations, internal and client (with api_token), all or the one asked for."""
        return call_rpc(self._client, "list_enrich_integrations", {"p_location_id": location_id}) or []

    def claim(self, location_id: str, claim_id: str, *, lease_seconds: int, limit: int,
              recordings_enabled: bool) -> list[dict[str, Any]]:
        """Due calls of both tables: {id, call_table, external_call_id, need_transcript, need_recording, attempts}."""
        return call_rpc(self._client, "claim_due_calls", {
            "p_location_id": location_id, "p_claim_id": claim_id, "p_lease_seconds": lease_seconds,
            "p_limit": limit, "p_recordings_enabled": recordings_enabled}) or []

    def record_results(self, claim_id: str, results: list[dict[str, Any]], *, recordings_enabled: bool,
                       horizon_seconds: int, backoff_base_seconds: int, backoff_cap_seconds: int) -> int:
        """Write results of calls still claimed by claim_id; returns how many were written."""
        return int(call_rpc(self._client, "record_call_enrichment_results", {
            "p_claim_id": claim_id, "p_results": results, "p_recordings_enabled": recordings_enabled,
            "p_horizon_seconds": horizon_seconds, "p_backoff_base_seconds": backoff_base_seconds,
            "p_backoff_cap_seconds": backoff_cap_seconds}) or 0)

    def summary(self, location_id: str | None = None) -> dict[str, Any]:
        """{pending, due_now, claimed, done, unavailable, oldest_pending_since}."""
        return call_rpc(self._client, "enrichment_summary", {"p_location_id": location_id}) or {}
