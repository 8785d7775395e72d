"""The prospect sync's database port: one PostgREST rpc per operation (SQL in
supabase/migrations/20261126002000_create_prospect_sync_functions.sql).

Synchronous (supabase-py's client); the async service runs these calls in a worker thread.
"""

from __future__ import annotations

from typing import Any

from shared.adapters.supabase_db import call_rpc


class SyncRepository:
    def __init__(self, client):
        self._client = client

    def list_integrations(self, location_id: str | None = None) -> list[dict[str, Any]]:
        """Active internal integrations (with api_token and custom_field_mapping), all or the one asked for."""
        return call_rpc(self._client, "list_sync_integrations", {"p_location_id": location_id}) or []

    def count_due(self, location_id: str, campaign: str | None = None) -> int:
        return int(call_rpc(self._client, "count_due_prospects",
                            {"p_location_id": location_id, "p_campaign": campaign}) or 0)

    def list_due(self, location_id: str, campaign: str | None, limit: int) -> list[dict[str, Any]]:
        """The prospects a claim would take, without claiming them (dry runs)."""
        return call_rpc(self._client, "list_due_prospects",
                        {"p_location_id": location_id, "p_campaign": campaign, "p_limit": limit}) or []

    def claim(self, location_id: str, claim_id: str, *, lease_seconds: int, limit: int,
              campaign: str | None = None) -> list[dict[str, Any]]:
        return call_rpc(self._client, "claim_due_prospects", {
            "p_location_id": location_id, "p_claim_id": claim_id, "p_lease_seconds": lease_seconds,
            "p_limit": limit, "p_campaign": campaign}) or []

    def record_results(self, claim_id: str, results: list[dict[str, Any]], *, backoff_base_seconds: int,
                       backoff_cap_seconds: int) -> int:
        """Write results of prospects still claimed by claim_id; returns how many were written."""
        return int(call_rpc(self._client, "record_prospect_sync_results", {
            "p_claim_id": claim_id, "p_results": results, "p_backoff_base_seconds": backoff_base_seconds,
            "p_backoff_cap_seconds": backoff_cap_seconds}) or 0)

    def finish_run(self, location_id: str, status: str, error: str | None) -> None:
        call_rpc(self._client, "finish_prospect_sync_run",
                 {"p_location_id": location_id, "p_status": status, "p_error": error})
