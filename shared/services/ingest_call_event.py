"""Use case: one authenticated webhook body -> the event log + the merged call row, in one round trip.

The database port is `rpc(function, params) -> data` (shared.adapters.supabase_db.call_rpc bound to a
client). Accepted bodies cost exactly one call (`ingest_call_event`); a rejected body costs one call too
(`record_rejected_webhook`, the raw body kept), so nothing received is lost.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared import errors
from shared.domain.strict_json import UnstorableJson, storable_text
from shared.domain.webhook_payload import parse_call_payload
from shared.http import parse_json_object
from shared.logs import get_logger

log = get_logger("services.ingest_call_event")

Rpc = Callable[[str, dict[str, Any]], Any]


@dataclass
class IngestResult:
    outcome: str
    call_id: str | None
    row_id: str | None
    table: str | None
    already_recorded: bool = False  # a replayed spool object an earlier replay had recorded (nothing written)

    def response_body(self) -> dict:
        return {"outcome": self.outcome, "call_id": self.call_id, "id": self.row_id}


class CountingRpc:
    """The rpc port, counting its calls (database round trips) into the request's summary line."""

    def __init__(self, rpc: Rpc, summary: dict):
        self._rpc = rpc
        self._summary = summary
        summary["db_round_trips"] = 0

    @property
    def calls(self) -> int:
        return self._summary["db_round_trips"]

    def __call__(self, function: str, params: dict[str, Any]) -> Any:
        self._summary["db_round_trips"] += 1
        return self._rpc(function, params)


class RejectionNotRecorded(errors.DatabaseUnavailable):
    """A refused body could not be written to the event log because the database is unavailable.

    `rejection` is why the body was refused. The webhook spools such a request like any other it could not
    record (the replay records the rejection); a replay keeps the spooled object for its next run."""

    def __init__(self, cause: errors.BridgeError, rejection: errors.BridgeError):
        super().__init__(cause.message)
        self.rejection = rejection


def _storable_text(raw_body: bytes) -> str:
    # Postgres text holds neither NUL nor invalid UTF-8; everything else is kept as received.
    return raw_body.decode("utf-8", errors="replace").replace("\x00", "\\u0000")


def _column_text(value: str | None, limit: int = 200) -> str | None:
    """An id or message for a text column of the event log: no NUL, no lone surrogate, bounded length, so the
    rejection's own insert cannot be refused for what it writes."""
    if value is None:
        return None
    return storable_text(value)[:limit] or None


def _exact_bytes(raw_body: bytes, text: str) -> str | None:
    """The body as a bytea literal when `text` does not hold it verbatim (invalid UTF-8, NUL), else None."""
    return None if text.encode("utf-8") == raw_body else "\\x" + raw_body.hex()


def _replay_params(received_at: datetime | None, spool_key: str | None) -> dict[str, Any]:
    # Only a replay sends these: the webhook's own calls stay exactly as they were.
    if spool_key is None and received_at is None:
        return {}
    return {"p_received_at": received_at.isoformat() if received_at else None, "p_spool_key": spool_key}


def _reject(rpc: Rpc, raw_body: bytes, error: errors.BridgeError, payload: dict | None = None,
            call_id: str | None = None, location_id: str | None = None, *,
            received_at: datetime | None = None, spool_key: str | None = None) -> None:
    """Keep a refused body in the event log. If the database is unavailable, RejectionNotRecorded (so the
    request is spooled, not lost); if the database refuses the record itself, the caller still learns what was
    wrong with its body (retrying would not fix it) and the failure is logged without the body."""
    text = _storable_text(raw_body)
    params = {"p_raw_body": text, "p_error": _column_text(error.message, 2000), "p_payload": payload,
              "p_location_id": _column_text(location_id), "p_call_id": _column_text(call_id),
              **_replay_params(received_at, spool_key)}
    exact = _exact_bytes(raw_body, text)
    if exact is not None:
        params["p_raw_body_bytes"] = exact
    try:
        rpc("record_rejected_webhook", params)
    except errors.TransientError as log_error:
        raise RejectionNotRecorded(log_error, error) from log_error
    except errors.BridgeError as log_error:
        log.error("could not record a rejected webhook", extra={"fields": {
            "error": log_error.code, "reason": log_error.message, "body_bytes": len(raw_body),
            "rejected_because": error.message}})


def _guess(payload: dict, *keys: str) -> str | None:
    for key in keys:
        value = payload.get(key)
        if isinstance(value, str) and value:
            return value[:200]
    return None


def ingest_webhook_body(raw_body: bytes, *, rpc: Rpc, default_region: str = "US",
                        check_delivery: Callable[[dict], None] | None = None,
                        received_at: datetime | None = None, spool_key: str | None = None) -> IngestResult:
    """Parse, log and merge one webhook body. Raises BadRequest (400) or UnknownLocation (422) after logging.

    check_delivery(payload) runs on the parsed body before anything is written (freshness/replay checks);
    what it raises (401) is not logged, like any failed authentication.
    A database that cannot be reached raises DatabaseUnavailable (RejectionNotRecorded for a refused body).
    The replay of a spooled request passes received_at (kept as the event's time) and spool_key (an object
    already recorded is not recorded again).
    """
    replay = {"received_at": received_at, "spool_key": spool_key}
    try:
        payload = parse_json_object(raw_body)
    except UnstorableJson as exc:
        # JSON, but with a NUL or lone surrogate: the payload cannot be stored, the ids it names still can
        value = exc.value if isinstance(exc.value, dict) else {}
        _reject(rpc, raw_body, exc, None, call_id=_guess(value, "callId", "call_id", "messageId"),
                location_id=_guess(value, "locationId", "location_id"), **replay)
        raise
    except errors.BadRequest as exc:
        _reject(rpc, raw_body, exc, **replay)
        raise
    if check_delivery is not None:
        check_delivery(payload)
    try:
        record = parse_call_payload(payload, default_region)
    except errors.BadRequest as exc:
        _reject(rpc, raw_body, exc, payload, call_id=_guess(payload, "callId", "call_id", "messageId"),
                location_id=_guess(payload, "locationId", "location_id"), **replay)
        raise

    try:
        result = rpc("ingest_call_event", {"p_call": record.to_sql_payload(), **_replay_params(**replay)})
    except errors.BadRequest as exc:
        # The database refused the values (e.g. a \u0000 inside a string, which jsonb cannot hold): nothing was
        # written, so the delivery is logged as rejected with its raw body.
        _reject(rpc, raw_body, exc, None, record.external_call_id, record.location_id, **replay)
        raise
    outcome = result.get("outcome")
    if outcome == "unknown_location":
        raise errors.UnknownLocation(
            result.get("error") or "no active GHL integration for this location")
    return IngestResult(outcome=outcome, call_id=record.external_call_id, row_id=result.get("id"),
                        table=result.get("table"), already_recorded=bool(result.get("already_recorded")))
