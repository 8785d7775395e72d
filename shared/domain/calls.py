"""Call statuses, dispositions and the normalised call record (pure; no I/O).

Status: lowercase, trimmed, runs of spaces/underscores/hyphens collapsed to one hyphen, so GHL's
"No answer" / "no_answer" and the messages export's "no-answer" are one value: `no-answer` (the
Twilio/GHL-export spelling). "answered" and "completed" mean someone picked up (connected). Transient
statuses (ringing, ...) never replace a final one in the database merge.

Disposition: mapped case-insensitively (and ignoring spaces and punctuation) onto the nine canonical
values; an unknown value maps to None. The value as sent is kept as `disposition_label`: the database maps
it by the location's own `ghl_integrations.disposition_mapping` first, then by the same built-in synonyms
(`public.map_disposition_label`; a test compares them), and stores it on the row. When none was sent (or it
is unknown), one is inferred from status, notes and transcript (`infer_disposition`, GHL-FACTS' rules) and
marked 'inferred', so a chosen one replaces it later. The SQL function `public.infer_call_disposition`
applies the same rules to the merged row (a test checks both agree), so the inferred value does not depend on
the order of the two hits. A third source, 'ai', is written only by the call analysis (docs/analysis.md): it
replaces an inferred disposition and is kept by later hits; a chosen one beats it.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

CANONICAL_DISPOSITIONS: tuple[str, ...] = (
    "No Answer", "Voicemail", "Gatekeeper", "Incorrect Number", "Not Interested",
    "Callback Requested", "Future Potential", "Meeting Booked", "Do Not Contact",
)
CONNECTED_STATUSES = frozenset({"answered", "completed"})
# Not final yet: a later hit with a final status replaces these, never the other way round. Keep in step with
# public.is_transient_call_status (SQL); tests/webhook compares them.
TRANSIENT_STATUSES = frozenset({"ringing", "pending", "queued", "initiated", "in-progress", "dialing", "scheduled"})

_SEPARATORS = re.compile(r"[\s_\-]+")


def normalize_call_status(raw: Any) -> str | None:
    """'  No answer ' / 'NO_ANSWER' / 'no-answer' -> 'no-answer'; None or blank -> None."""
    if raw is None:
        return None
    text = _SEPARATORS.sub("-", str(raw).strip().lower()).strip("-")
    return text or None


def is_connected(status: str | None) -> bool | None:
    """True for answered/completed, False for another final status, None when unknown or transient."""
    status = normalize_call_status(status)
    if status is None or status in TRANSIENT_STATUSES:
        return None
    return status in CONNECTED_STATUSES


# Whitespace and punctuation (ASCII and typographic quotes/dashes): the same class as
# public.disposition_label_key (SQL).
_LABEL_NOISE = re.compile(r"[\s!-/:-@\[-`{-~\u2018\u2019\u201c\u201d\u2013\u2014]+")


def _disposition_key(text: str) -> str:
    return _LABEL_NOISE.sub("", text.lower())


_ALIASES = {
    "noanswer": "No Answer", "na": "No Answer", "missed": "No Answer", "busy": "No Answer",
    "voicemail": "Voicemail", "vm": "Voicemail", "leftvoicemail": "Voicemail", "leftmessage": "Voicemail",
    "callback": "Callback Requested", "callbackrequested": "Callback Requested",
    "wrongnumber": "Incorrect Number", "dnc": "Do Not Contact", "donotcall": "Do Not Contact",
    "meetingscheduled": "Meeting Booked", "appointmentbooked": "Meeting Booked",
}
_DISPOSITIONS_BY_KEY = {**_ALIASES, **{_disposition_key(d): d for d in CANONICAL_DISPOSITIONS}}


def canonical_disposition(raw: Any) -> str | None:
    """'callback requested' / 'CALLBACK_REQUESTED' -> 'Callback Requested'; unknown or blank -> None."""
    if raw is None:
        return None
    return _DISPOSITIONS_BY_KEY.get(_disposition_key(str(raw)))


# GHL-FACTS' inference rules, in order. The same patterns are in public.infer_call_disposition (SQL).
_STATUS_DISPOSITIONS = {
    "no-answer": "No Answer", "missed": "No Answer", "busy": "No Answer",
    "voicemail": "Voicemail", "failed": "Incorrect Number",
}
_KEYWORD_RULES: tuple[tuple[re.Pattern, str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), disposition) for pattern, disposition in (
        (r"gatekeeper|assistant|receptionist", "Gatekeeper"),
        (r"wrong number|disconnected|not in service", "Incorrect Number"),
        (r"not interested|no thanks|don['’]?t call", "Not Interested"),
        (r"call (?:me |us )?back|callback|try again|call (?:me )?later", "Callback Requested"),
        (r"meeting|schedule|book", "Meeting Booked"),
    )
)


def infer_disposition(status: str | None, notes: str | None, transcript: str | None) -> str | None:
    """The disposition the replaced system inferred when none was chosen, or None."""
    status = normalize_call_status(status)
    if status in _STATUS_DISPOSITIONS:
        return _STATUS_DISPOSITIONS[status]
    if status in CONNECTED_STATUSES:
        text = " ".join(part for part in (notes, transcript) if part)
        for pattern, disposition in _KEYWORD_RULES:
            if pattern.search(text):
                return disposition
    return None


class CallRecord(BaseModel):
    """One hit's view of a call, normalised. Fields a hit did not carry are None (the merge keeps old values)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    external_call_id: str = Field(min_length=1)
    location_id: str | None = None
    ghl_contact_id: str | None = None
    direction: str | None = None
    from_number: str | None = None
    to_number: str | None = None
    call_status: str | None = None
    connected: bool | None = None
    duration_seconds: int | None = Field(None, ge=0)
    started_at: datetime | None = None
    disposition: str | None = None
    disposition_source: Literal["chosen", "inferred"] | None = None
    disposition_label: str | None = None  # the disposition as sent (the database maps it per location)
    notes: str | None = None
    transcript: str | None = None
    recording_url: str | None = None
    contact_phone: str | None = None
    contact_email: str | None = None
    raw: dict[str, Any] = Field(default_factory=dict)
    source: Literal["webhook", "import"] = "webhook"

    @classmethod
    def build(cls, **fields: Any) -> "CallRecord":
        """Normalise status/disposition and derive connected + an inferred disposition where none was sent."""
        status = normalize_call_status(fields.get("call_status"))
        fields["call_status"] = status
        if fields.get("connected") is None:
            fields["connected"] = is_connected(status)
        sent = fields.get("disposition")
        if fields.get("disposition_label") is None and sent is not None:
            fields["disposition_label"] = str(sent).strip()[:200] or None
        chosen = canonical_disposition(sent)
        if chosen is not None:
            fields["disposition"], fields["disposition_source"] = chosen, "chosen"
        else:
            inferred = infer_disposition(status, fields.get("notes"), fields.get("transcript"))
            fields["disposition"] = inferred
            fields["disposition_source"] = "inferred" if inferred else None
        return cls(**fields)

    def to_sql_payload(self) -> dict[str, Any]:
        """The jsonb `public.upsert_call(p_call)` takes: None values left out (missing never erases)."""
        payload = self.model_dump(mode="json", exclude_none=True)
        payload["raw"] = self.raw
        return payload
