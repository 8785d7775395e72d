"""Call analysis's database port: one PostgREST rpc per operation (SQL in
supabase/migrations/20261204050000_add_call_analysis.sql and 20261204051000_add_doctor_analysis_check.sql).

Synchronous (supabase-py's client); the async service runs these calls in a worker thread.
"""

from __future__ import annotations

from typing import Any

from shared.adapters.supabase_db import call_rpc


class AnalysisRepository:
    def __init__(self, client):
        self._client = client

    def list_integrations(self, location_id: str | None = None) -> list[dict[str, Any]]:
        """Active integrations whose analysis is on: {location_id, name, integration_type, time_zone}."""
        return call_rpc(self._client, "list_analyze_integrations", {"p_location_id": location_id}) or []

    def location_state(self, location_id: str) -> dict[str, Any]:
        """{due: calls due now outside batches, batches: [Message Batch ids with calls waiting]}."""
        return call_rpc(self._client, "analysis_location_state", {"p_location_id": location_id}) or {}

    def claim(self, location_id: str, claim_id: str, *, lease_seconds: int, limit: int) -> list[dict[str, Any]]:
        """Due calls of both tables: {id, call_table, transcript, started_at, time_zone, attempts}."""
        return call_rpc(self._client, "claim_due_analyses", {
            "p_location_id": location_id, "p_claim_id": claim_id, "p_lease_seconds": lease_seconds,
            "p_limit": limit}) or []

    def claim_batch(self, location_id: str, batch_id: str, claim_id: str, *, lease_seconds: int) -> list[dict[str, Any]]:
        """The calls still waiting in a Message Batch: {id, call_table, transcript, attempts}."""
        return call_rpc(self._client, "claim_analysis_batch", {
            "p_location_id": location_id, "p_batch_id": batch_id, "p_claim_id": claim_id,
            "p_lease_seconds": lease_seconds}) or []

    def record_results(self, claim_id: str, results: list[dict[str, Any]], *, backoff_base_seconds: int,
                       backoff_cap_seconds: int, max_attempts: int) -> int:
        """Write results of calls still claimed by claim_id; returns how many were written."""
        return int(call_rpc(self._client, "record_call_analysis_results", {
            "p_claim_id": claim_id, "p_results": results, "p_backoff_base_seconds": backoff_base_seconds,
            "p_backoff_cap_seconds": backoff_cap_seconds, "p_max_attempts": max_attempts}) or 0)

    def requeue(self, location_id: str | None, since: str, prompt_version: str) -> int:
        """Calls started since `since` not analysed with prompt_version made due again; how many."""
        return int(call_rpc(self._client, "requeue_call_analyses", {
            "p_location_id": location_id, "p_since": since, "p_prompt_version": prompt_version}) or 0)

    def facts(self, location_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Per location: backlog, failures, tokens of the last 24 h, AI vs regex disagreements (the doctor's)."""
        if not location_ids:
            return {}
        return call_rpc(self._client, "doctor_analysis_facts", {"p_location_ids": list(location_ids)}) or {}

    def all_location_ids(self) -> list[str]:
        return [row["location_id"] for row in call_rpc(self._client, "doctor_locations", {"p_location_id": None}) or []]
