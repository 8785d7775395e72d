"""The integrations' database port (ghl_integrations) for onboarding: one rpc per operation (SQL in
supabase/migrations/20261204030000_add_location_onboarding.sql). Nothing here returns a token except
`token_of`, which the token's own checks need."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.adapters.supabase_db import call_rpc


class IntegrationRepository:
    def __init__(self, client):
        self._client = client

    def upsert(self, *, location_id: str, api_token: str, name: str | None, integration_type: str,
               client_id: str | None, location_name: str | None, time_zone: str | None,
               custom_field_mapping: dict[str, str], token_checked_at: datetime) -> dict[str, Any]:
        """Insert or update; {"outcome": "inserted" | "updated" | "unchanged", "integration": {...}}."""
        return call_rpc(self._client, "upsert_ghl_integration", {
            "p_location_id": location_id, "p_api_token": api_token, "p_name": name,
            "p_integration_type": integration_type, "p_client_id": client_id, "p_location_name": location_name,
            "p_time_zone": time_zone, "p_custom_field_mapping": custom_field_mapping,
            "p_token_checked_at": token_checked_at.isoformat()})

    def update(self, location_id: str, *, is_active: bool | None = None, api_token: str | None = None,
               location_name: str | None = None, time_zone: str | None = None,
               token_checked_at: datetime | None = None,
               mapping_entries: dict[str, str | None] | None = None) -> dict[str, Any] | None:
        """Change the given columns; the row (without its token), or None when the location has no integration."""
        return call_rpc(self._client, "update_ghl_integration", {
            "p_location_id": location_id, "p_is_active": is_active, "p_api_token": api_token,
            "p_location_name": location_name, "p_time_zone": time_zone,
            "p_token_checked_at": token_checked_at.isoformat() if token_checked_at else None,
            "p_mapping_entries": mapping_entries})

    def list(self) -> list[dict[str, Any]]:
        return call_rpc(self._client, "list_ghl_integrations", {}) or []

    def get(self, location_id: str) -> dict[str, Any] | None:
        """One integration with its token and mappings (the doctor's reader), or None."""
        rows = call_rpc(self._client, "doctor_locations", {"p_location_id": location_id}) or []
        return rows[0] if rows else None

    def locations_with_token(self, api_token: str, *, except_location: str | None = None) -> list[dict[str, Any]]:
        return call_rpc(self._client, "ghl_integrations_with_token",
                        {"p_api_token": api_token, "p_except": except_location}) or []
