"""The batch import's pure parts: the request body, and GHL records turned into staging rows.

A staging row is {"external_id", "raw_data"} (raw_data = the record exactly as GHL sent it) and, for a call,
"call_payload" (the `public.upsert_call` payload, normalised here with the webhook's own code so both paths
merge the same values) or "prepare_error" (why it could not be normalised: processing makes the row an error
with that message, the rest of the batch goes on).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from pydantic import ValidationError

from shared import errors
from shared.domain.calls import CallRecord
from shared.domain.phones import normalize_phone

KINDS = ("contacts", "calls")  # also the pull order: contacts are staged first, so calls find their contact


@dataclass(frozen=True)
class PullRequest:
    location_id: str
    kinds: tuple[str, ...]
    since: datetime | None
    created_by: str | None


@dataclass(frozen=True)
class ProcessRequest:
    batch_id: str | None
    location_id: str | None = None  # a location task of the fan-out: that location's open batches
    dispatch: bool = False  # the scheduler's run with fan-out: one task per location with an open batch


_PULL_FIELDS = {"action", "location_id", "kinds", "since", "created_by"}
_PROCESS_FIELDS = {"action", "batch_id", "location_id", "dispatch"}


def _uuid(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise errors.BadRequest(f"{name} must be a UUID string, not {type(value).__name__}")
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise errors.BadRequest(f"{name} must be a UUID, not {value[:60]!r}") from None


def _since(value: Any) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise errors.BadRequest("since must be an ISO 8601 date-time string, e.g. 2026-01-31T00:00:00Z")
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise errors.BadRequest(f"since is not an ISO 8601 date-time: {value[:60]!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def parse_import_request(body: dict[str, Any]) -> PullRequest | ProcessRequest:
    """The validated body of a process-ghl-import call; BadRequest naming the problem otherwise."""
    action = body.get("action")
    if action not in ("pull", "process"):
        raise errors.BadRequest(f"action must be \"pull\", \"process\" or \"replay_spool\", not {action!r}"[:200])
    allowed = _PULL_FIELDS if action == "pull" else _PROCESS_FIELDS
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise errors.BadRequest(f"unknown field(s) for action {action}: {', '.join(unknown)}; "
                                f"allowed: {', '.join(sorted(allowed))}")
    if action == "process":
        batch_id, location_id, dispatch = body.get("batch_id"), body.get("location_id"), body.get("dispatch", False)
        if not isinstance(dispatch, bool):
            raise errors.BadRequest("dispatch must be true or false")
        if location_id is not None and (not isinstance(location_id, str) or not location_id.strip()):
            raise errors.BadRequest("location_id must be a non-empty string")
        if sum(bool(x) for x in (batch_id is not None, location_id is not None, dispatch)) > 1:
            raise errors.BadRequest("process takes one of batch_id, location_id and dispatch")
        return ProcessRequest(batch_id=None if batch_id is None else _uuid(batch_id, "batch_id"),
                              location_id=location_id and location_id.strip(), dispatch=dispatch)

    location_id = body.get("location_id")
    if not isinstance(location_id, str) or not location_id.strip():
        raise errors.BadRequest("location_id is required: the GHL location id to import from")
    kinds = body.get("kinds", list(KINDS))
    if not isinstance(kinds, list) or not kinds or not all(isinstance(k, str) for k in kinds):
        raise errors.BadRequest("kinds must be a non-empty list of \"contacts\" and/or \"calls\"")
    wrong = sorted(set(kinds) - set(KINDS))
    if wrong:
        raise errors.BadRequest(f"unknown kind(s) {', '.join(wrong)}; kinds are contacts and calls")
    created_by = body.get("created_by")
    return PullRequest(location_id=location_id.strip(), kinds=tuple(k for k in KINDS if k in kinds),
                       since=_since(body.get("since")),
                       created_by=None if created_by is None else _uuid(created_by, "created_by"))


def contact_filters(since: datetime | None) -> list[dict] | None:
    """Contacts search filters for a pull since a moment (changed since: dateUpdated)."""
    if since is None:
        return None
    from shared.domain.ghl_models import ghl_datetime

    return [{"field": "dateUpdated", "operator": "range", "value": {"gte": ghl_datetime(since)}}]


def staged_contact(contact) -> dict[str, Any]:
    """A contacts-search record as a staging row (shared.domain.ghl_models.Contact)."""
    return {"external_id": contact.id, "raw_data": contact.raw}


def staged_call(message, default_region: str = "US") -> dict[str, Any]:
    """A TYPE_CALL export message (shared.domain.ghl_models.CallMessage) as a staging row."""
    row: dict[str, Any] = {"external_id": message.id, "raw_data": message.raw}
    call = message.meta.get("call") if isinstance(message.meta.get("call"), dict) else {}
    try:
        record = CallRecord.build(
            external_call_id=message.id,
            location_id=message.location_id,
            ghl_contact_id=message.contact_id,
            direction=message.direction,
            from_number=normalize_phone(call.get("from"), default_region) if call.get("from") else None,
            to_number=normalize_phone(call.get("to"), default_region) if call.get("to") else None,
            call_status=message.call_status,
            duration_seconds=message.duration_seconds,
            started_at=message.date_added,
            raw=message.raw,
            source="import",
        )
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'record'}: {e['msg']}" for e in exc.errors())
        row["prepare_error"] = f"call record {message.id} cannot be normalised: {problems}"[:1000]
        return row
    payload = record.to_sql_payload()
    payload.pop("raw", None)  # raw_data holds it; processing adds it back (one copy per row on the wire)
    row["call_payload"] = payload
    return row
