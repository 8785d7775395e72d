"""Typed shapes of the GHL API v2 requests and responses the project uses (pydantic v2, pure).

Every model accepts extra fields (GHL adds fields without notice) and keeps the dict it was built
from in `.raw`. Field names are snake_case in Python and camelCase on the wire.

Call data comes in two shapes: real responses carry `meta.call.duration` / `meta.call.status`,
GHL's OpenAPI documents `meta.callDuration` / `meta.callStatus`; `CallMessage` reads both.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

CALL_MESSAGE_TYPE = "TYPE_CALL"


class GhlModel(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True, alias_generator=to_camel)

    raw: dict[str, Any] = Field(default_factory=dict, exclude=True, repr=False, alias="__raw__")

    @classmethod
    def from_api(cls, data: dict[str, Any]):
        model = cls.model_validate(data)
        model.raw = data
        return model


# ---- contacts ------------------------------------------------------------------------------------


class CustomFieldValue(BaseModel):
    """A custom field on a contact: reads return {id, value}; the spec's write shape uses field_value."""

    model_config = ConfigDict(extra="allow")

    id: str
    value: Any = Field(default=None, validation_alias=AliasChoices("value", "field_value"))


class Contact(GhlModel):
    id: str
    location_id: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    name: str | None = None
    email: str | None = None
    phone: str | None = None
    company_name: str | None = None
    source: str | None = None
    tags: list[str] = Field(default_factory=list)
    custom_fields: list[CustomFieldValue] = Field(default_factory=list)
    date_added: datetime | None = None
    date_updated: datetime | None = None
    # contacts search only: the sort values of this record, the cursor for the page after it
    search_after: list[Any] | None = None

    def custom_field(self, field_id: str) -> Any:
        """The value of one custom field (None when the contact has none)."""
        for item in self.custom_fields:
            if item.id == field_id:
                return item.value
        return None


class UpsertContactResult(GhlModel):
    new: bool
    contact: Contact
    trace_id: str | None = None

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> "UpsertContactResult":
        result = cls(new=bool(data.get("new")), contact=Contact.from_api(data.get("contact") or {}),
                     trace_id=data.get("traceId"))
        result.raw = data
        return result


class ContactSearchPage(BaseModel):
    contacts: list[Contact]
    total: int
    # Pass as `search_after` for the next page; None when this page was the last one.
    next_search_after: list[Any] | None = None


class CustomField(GhlModel):
    id: str
    name: str | None = None
    field_key: str | None = None
    data_type: str | None = None
    model: str | None = None
    picklist_options: list[Any] = Field(default_factory=list)


# ---- calls ---------------------------------------------------------------------------------------


def _parse_seconds(value: Any) -> int | None:
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        return int(round(float(value)))
    except (TypeError, ValueError):
        return None


class CallMessage(GhlModel):
    id: str
    message_type: str | None = None
    contact_id: str | None = None
    location_id: str | None = None
    conversation_id: str | None = None
    direction: str | None = None
    status: str | None = None  # the message status
    date_added: datetime | None = None
    date_updated: datetime | None = None
    alt_id: str | None = None  # the carrier's call id
    user_id: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict)

    @property
    def call_status(self) -> str | None:
        """meta.call.status (real responses), else meta.callStatus (the spec), else the message status."""
        call = self.meta.get("call") if isinstance(self.meta.get("call"), dict) else {}
        return call.get("status") or self.meta.get("callStatus") or self.status

    @property
    def duration_seconds(self) -> int | None:
        """meta.call.duration, else meta.callDuration (a string in the spec); None when not connected."""
        call = self.meta.get("call") if isinstance(self.meta.get("call"), dict) else {}
        seconds = _parse_seconds(call.get("duration"))
        return seconds if seconds is not None else _parse_seconds(self.meta.get("callDuration"))

    @property
    def is_call(self) -> bool:
        return self.message_type == CALL_MESSAGE_TYPE


class CallMessagesPage(BaseModel):
    messages: list[CallMessage]  # TYPE_CALL only
    next_cursor: str | None = None  # None at the end
    total: int = 0
    skipped_non_calls: int = 0  # e.g. TYPE_CAMPAIGN_VOICEMAIL drops that channel=Call also returns


class TranscriptSentence(GhlModel):
    media_channel: int | None = None
    sentence_index: int | None = None
    start_time: float | None = None  # milliseconds
    end_time: float | None = None
    transcript: str = ""
    confidence: float | None = None


def ghl_datetime(value: datetime) -> str:
    """GHL's date format: ISO 8601 in UTC with milliseconds and a Z."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
