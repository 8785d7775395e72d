"""The doctor's database port: one PostgREST rpc per check group (SQL in
supabase/migrations/20261202021000_create_doctor_functions.sql), each for every location asked about at once.
"""

from __future__ import annotations

from typing import Any

from shared.adapters.supabase_db import call_rpc


class DoctorRepository:
    def __init__(self, client):
        self._client = client
        self.round_trips = 0  # rpc calls made (the report shows them)

    def _rpc(self, function: str, params: dict[str, Any]) -> Any:
        self.round_trips += 1
        return call_rpc(self._client, function, params)

    def locations(self, location_id: str | None = None) -> list[dict[str, Any]]:
        """Integrations (active or not) with api_token and both mappings: all, or the one asked for."""
        return self._rpc("doctor_locations", {"p_location_id": location_id}) or []

    def group_facts(self, function: str, location_ids: list[str]) -> dict[str, dict[str, Any]]:
        """A check group's facts, {location_id: facts}, from its doctor_*_facts(p_location_ids) function."""
        if not location_ids:
            return {}
        return self._rpc(function, {"p_location_ids": list(location_ids)}) or {}

    def unattributed_webhook_facts(self) -> dict[str, Any]:
        return self._rpc("doctor_unattributed_webhook_facts", {}) or {}
