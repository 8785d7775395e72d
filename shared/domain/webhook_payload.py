"""GHL call webhook bodies -> `CallRecord` (pure).

GHL workflow webhooks are configured by users, so one call arrives in several shapes: camelCase or
snake_case keys (`callId` / `call_id`), values nested under `customData`, GHL's standard contact block
(`contact_id`, `phone`, `email`, `location: {id, name}`), numbers sent as strings, timestamps with offsets,
and the marketplace `OutboundMessage` event (`messageId`, `callDuration`, `dateAdded`). Keys are compared
ignoring case, '_' and '-'; a value under customData wins over the same key at the top level (the user put
it there on purpose). The call id is `callId`, else `messageId`, wherever it is.

A value of the wrong type is a BadRequest naming the field as it was sent.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from typing import Any

from shared import errors
from shared.domain.calls import CallRecord
from shared.domain.phones import normalize_phone

# Logical field -> accepted keys (normalised: lowercase, no '_' or '-'), first found wins.
_ALIASES: dict[str, tuple[str, ...]] = {
    "call_id": ("callid",),
    "message_id": ("messageid",),
    "location_id": ("locationid",),
    "ghl_contact_id": ("contactid",),
    "direction": ("direction", "calldirection"),
    "from_number": ("from", "fromnumber", "callfrom"),
    "to_number": ("to", "tonumber", "callto"),
    "call_status": ("callstatus", "status"),
    "duration": ("duration", "callduration", "durationseconds"),
    "started_at": ("callstarttime", "starttime", "startedat", "calldate", "dateadded"),
    "notes": ("notes", "note", "callnotes"),
    "transcript": ("transcription", "transcript"),
    "disposition": ("disposition", "calldisposition"),
    "recording_url": ("recordingurl", "recording", "recordinglink"),
    "contact_phone": ("phone", "contactphone"),
    "contact_email": ("email", "contactemail"),
}
_CUSTOM_DATA_KEYS = ("customdata",)
_DURATION_CLOCK = re.compile(r"^(?:(\d+):)?(\d{1,2}):(\d{2})$")  # "3:04" or "1:03:04"


def _key(name: str) -> str:
    return name.replace("_", "").replace("-", "").lower()


class _Lookup:
    """Finds a logical field in customData first, then at the top level; remembers the key as sent."""

    def __init__(self, payload: dict[str, Any]):
        custom = None
        for name, value in payload.items():
            if _key(name) in _CUSTOM_DATA_KEYS and value is not None:
                if not isinstance(value, dict):
                    raise errors.BadRequest(f"field '{name}' must be an object, not {_type_name(value)}")
                custom = value
        self.layers = [layer for layer in (custom, payload) if layer]
        self.indexes = [{_key(k): k for k in layer} for layer in self.layers]

    def find(self, field: str) -> tuple[str, Any] | None:
        """(the key as sent, its value) of the first non-null, non-blank value for `field`, or None."""
        for alias in _ALIASES[field]:
            for layer, index in zip(self.layers, self.indexes):
                sent = index.get(alias)
                if sent is None:
                    continue
                value = layer[sent]
                if value is None or (isinstance(value, str) and not value.strip()):
                    continue
                return sent, value
        return None

    def plain(self, name: str) -> tuple[str, Any] | None:
        """A key whose value is a plain string (e.g. "location": "loc_1" instead of {id: ...})."""
        for layer, index in zip(self.layers, self.indexes):
            sent = index.get(name)
            if sent is not None and isinstance(layer[sent], str) and layer[sent].strip():
                return sent, layer[sent]
        return None

    def nested(self, block: str, inner: str) -> tuple[str, Any] | None:
        """A value inside a block such as location: {id} or contact: {id, phone, email}."""
        for layer, index in zip(self.layers, self.indexes):
            sent = index.get(block)
            if sent is None or not isinstance(layer[sent], dict):
                continue
            for k, v in layer[sent].items():
                if _key(k) == inner and v is not None and not (isinstance(v, str) and not v.strip()):
                    return f"{sent}.{k}", v
        return None


def _type_name(value: Any) -> str:
    return {dict: "object", list: "array", bool: "boolean", str: "string", int: "number",
            float: "number"}.get(type(value), type(value).__name__)


def _text(found: tuple[str, Any] | None) -> str | None:
    """Strings as sent (trimmed); numbers accepted as their text (ids sent as numbers)."""
    if found is None:
        return None
    name, value = found
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise errors.BadRequest(f"field '{name}' must be a string, not {_type_name(value)}")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise errors.BadRequest(f"field '{name}' must be a string, not {value}")
        value = int(value) if value.is_integer() else value
    return str(value).strip() or None


def _duration_seconds(found: tuple[str, Any] | None) -> int | None:
    """Integer seconds from 184, 184.4, "184", "184.6", "3:04", "1:03:04"."""
    if found is None:
        return None
    name, value = found
    seconds: float
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise errors.BadRequest(f"field '{name}' must be a number of seconds, not {_type_name(value)}")
    if isinstance(value, str):
        text = value.strip()
        clock = _DURATION_CLOCK.match(text)
        if clock:
            hours, minutes, secs = clock.groups()
            seconds = int(hours or 0) * 3600 + int(minutes) * 60 + int(secs)
        else:
            try:
                seconds = float(text)
            except ValueError:
                raise errors.BadRequest(f"field '{name}' must be a number of seconds, not {value!r}") from None
    else:
        seconds = value
    if not math.isfinite(seconds) or seconds < 0 or seconds > 2**31 - 1:
        raise errors.BadRequest(f"field '{name}' must be a non-negative number of seconds, not {value!r}")
    return int(round(seconds))


def _timestamp(found: tuple[str, Any] | None) -> datetime | None:
    """ISO 8601 (with or without offset; none means UTC) or epoch seconds/milliseconds."""
    if found is None:
        return None
    name, value = found
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise errors.BadRequest(f"field '{name}' must be an ISO 8601 timestamp, not {_type_name(value)}")
    try:
        if isinstance(value, str) and not re.fullmatch(r"\d+(\.\d+)?", value.strip()):
            parsed = datetime.fromisoformat(value.strip())
        else:
            epoch = float(value)
            parsed = datetime.fromtimestamp(epoch / 1000 if epoch > 1e11 else epoch, tz=timezone.utc)
    except (ValueError, OverflowError, OSError):
        raise errors.BadRequest(f"field '{name}' must be an ISO 8601 timestamp, not {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _phone(found: tuple[str, Any] | None, region: str) -> str | None:
    """E.164 when it reads as a phone number, else the text as sent (caller ids like 'anonymous' stay)."""
    text = _text(found)
    return normalize_phone(text, region) or text if text else None


def parse_call_payload(payload: dict[str, Any], default_region: str = "US") -> CallRecord:
    """One webhook body -> the normalised call it describes. BadRequest names what is wrong."""
    if not isinstance(payload, dict):
        raise errors.BadRequest(f"body must be a JSON object, not {_type_name(payload)}")
    look = _Lookup(payload)
    call_id = _text(look.find("call_id")) or _text(look.find("message_id"))
    if not call_id:
        raise errors.BadRequest("no call id: send callId (or messageId), at the top level or under customData")
    if len(call_id) > 200:
        raise errors.BadRequest("field 'callId' is longer than 200 characters")

    location = look.find("location_id") or look.nested("location", "id") or look.plain("location")
    contact = look.find("ghl_contact_id") or look.nested("contact", "id")
    contact_phone = look.find("contact_phone") or look.nested("contact", "phone")
    contact_email = look.find("contact_email") or look.nested("contact", "email")
    direction = _text(look.find("direction"))

    return CallRecord.build(
        external_call_id=call_id,
        location_id=_text(location),
        ghl_contact_id=_text(contact),
        direction=direction.lower() if direction else None,
        from_number=_phone(look.find("from_number"), default_region),
        to_number=_phone(look.find("to_number"), default_region),
        call_status=_text(look.find("call_status")),
        duration_seconds=_duration_seconds(look.find("duration")),
        started_at=_timestamp(look.find("started_at")),
        disposition=_text(look.find("disposition")),
        notes=_text(look.find("notes")),
        transcript=_text(look.find("transcript")),
        recording_url=_text(look.find("recording_url")),
        contact_phone=_phone(contact_phone, default_region),
        contact_email=_text(contact_email),
        raw=payload,
    )
