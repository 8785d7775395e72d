"""The batch import's database port: one PostgREST rpc per operation (SQL in
supabase/migrations/20261126003000_create_import_functions.sql).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.adapters.supabase_db import call_rpc


class ImportRepository:
    def __init__(self, client):
        self._client = client

    def create_batch(self, location_id: str, kinds: list[str], since: datetime | None,
                     created_by: str | None) -> dict[str, Any]:
        return call_rpc(self._client, "create_import_batch", {
            "p_location_id": location_id, "p_kinds": list(kinds),
            "p_since": since.isoformat() if since else None, "p_created_by": created_by})

    def pull_context(self, batch_id: str) -> dict[str, Any] | None:
        """The batch summary with pull_state, integration_type and the integration's api_token (None: no batch)."""
        return call_rpc(self._client, "import_pull_context", {"p_batch_id": batch_id})

    def stage_page(self, batch_id: str, kind: str, records: list[dict[str, Any]], expected_state: dict | None,
                   next_state: dict, kind_done: bool, warning: str | None = None, pages: int = 1) -> dict[str, Any]:
        """Stage one page (or `pages` GHL pages' records) and move the kind's cursor (only if it still is
        expected_state): {advanced, staged, state, batch}. `warning` is added to the batch's warnings."""
        params = {"p_batch_id": batch_id, "p_kind": kind, "p_records": records, "p_expected_state": expected_state,
                  "p_next_state": next_state, "p_kind_done": kind_done}
        if warning is not None:
            params["p_warning"] = warning
        if pages != 1:
            params["p_pages"] = pages
        return call_rpc(self._client, "stage_import_page", params)

    def process_chunk(self, batch_id: str, limit: int, create_unmatched: bool) -> dict[str, Any]:
        """Claim, match and apply up to `limit` open rows: {claimed, imported, skipped, errors, batch}."""
        return call_rpc(self._client, "process_import_chunk", {
            "p_batch_id": batch_id, "p_limit": limit, "p_create_unmatched": create_unmatched})

    def fail_batch(self, batch_id: str, reason: str) -> dict[str, Any]:
        return call_rpc(self._client, "fail_import_batch", {"p_batch_id": batch_id, "p_reason": reason})

    def summary(self, batch_id: str) -> dict[str, Any] | None:
        return call_rpc(self._client, "import_batch_summary", {"p_batch_id": batch_id})

    def open_batch_ids(self, location_id: str | None = None) -> list[str]:
        """Every open batch, or one location's (a fan-out task), oldest first."""
        if location_id is None:
            rows = call_rpc(self._client, "list_open_import_batches", {}) or []
        else:
            rows = call_rpc(self._client, "list_open_import_batches_of_location", {"p_location_id": location_id}) or []
        return [row if isinstance(row, str) else next(iter(row.values())) for row in rows]
