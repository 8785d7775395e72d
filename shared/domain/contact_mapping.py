"""A portal prospect as the body of GHL's `POST /contacts/upsert` (UpsertContactDto). Pure code.

Body rules (the replaced system's, kept; see docs/sync.md):
- firstName, lastName, companyName always (None when empty, so a cleared name is cleared in GHL too);
  email and phone only when present, so a missing value never erases one of GHL's match keys;
  phone in E.164 (GHL stores E.164); tags when the prospect has any (GHL replaces all tags with them);
  `source: "Portal Sync"`; locationId.
- customFields from the integration's custom_field_mapping: prospect field name -> GHL custom field id.
  Each item is `{"id": <field id>, <value key>: <value>}`. The value key is configurable
  (Settings.sync_custom_field_value_key, default "value") because the sources disagree: GHL's OpenAPI
  spec documents `field_value`, integrations that work in production send `value`, and reads return
  `value`. The contract test reads the contact back to check what the target keeps.
- Upsert matches on email / phone (the location's duplicate rule): a prospect with neither cannot be
  matched, and pushing it would create a new contact on every push, so it is skipped (with a reason).

A mapping is checked once per run against the location's custom fields (`resolve_custom_field_mapping`):
entries naming an unknown field id (or an unknown prospect field) are reported once and left out of
every body, the rest still apply.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.domain.phones import normalize_phone

CONTACT_SOURCE = "Portal Sync"

# Prospect columns a mapping may name (key in custom_field_mapping -> column of sales_prospects).
# job_title is the portal's older name for contact_title.
MAPPABLE_PROSPECT_FIELDS: dict[str, str] = {
    "company_name": "company_name",
    "contact_title": "contact_title",
    "job_title": "contact_title",
    "linkedin_url": "linkedin_url",
    "market_name": "market_name",
    "source": "source",
    "campaign": "campaign",
    "first_name": "first_name",
    "last_name": "last_name",
    "email": "email",
    "phone": "phone",
}

VALUE_KEYS = ("value", "field_value")


@dataclass(frozen=True)
class CustomFieldMapping:
    """A mapping checked against a location: the entries that apply, and what was wrong with the rest."""

    entries: tuple[tuple[str, str], ...] = ()  # (prospect column, GHL custom field id)
    problems: tuple[str, ...] = ()

    @property
    def problem_text(self) -> str | None:
        if not self.problems:
            return None
        return "custom_field_mapping: " + "; ".join(self.problems)


@dataclass(frozen=True)
class ContactPlan:
    """What to do with one prospect: push `body`, or skip it for `skip_reason`."""

    prospect_id: str
    body: dict[str, Any] | None
    skip_reason: str | None = None
    notes: tuple[str, ...] = field(default=())  # things dropped from the body (e.g. an unreadable phone)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def resolve_custom_field_mapping(raw_mapping: Any,
                                 location_fields: Iterable[tuple[str, str | None]] | None) -> CustomFieldMapping:
    """Check a custom_field_mapping against the location's custom fields [(id, fieldKey), ...].

    A value may be the field's id or, for convenience, its fieldKey ("contact.linkedin_url" or
    "linkedin_url"); it resolves to the id. `location_fields=None` means the fields could not be
    listed: the mapping is then taken as written (structure still checked).
    """
    if raw_mapping is None or raw_mapping == {}:
        return CustomFieldMapping()
    if not isinstance(raw_mapping, Mapping):
        return CustomFieldMapping(problems=(f"must be a JSON object, not {type(raw_mapping).__name__}",))

    by_id: dict[str, str] | None = None
    by_key: dict[str, str] = {}
    if location_fields is not None:
        by_id = {}
        for field_id, field_key in location_fields:
            by_id[field_id] = field_id
            if field_key:
                by_key[field_key] = field_id
                by_key.setdefault(field_key.removeprefix("contact."), field_id)

    entries: list[tuple[str, str]] = []
    problems: list[str] = []
    for name in sorted(raw_mapping):
        value = raw_mapping[name]
        column = MAPPABLE_PROSPECT_FIELDS.get(name)
        if column is None:
            problems.append(f"{name!r} is not a prospect field (known: {', '.join(sorted(MAPPABLE_PROSPECT_FIELDS))})")
            continue
        field_id = _text(value) if isinstance(value, str) else None
        if field_id is None:
            problems.append(f"{name!r} must map to a GHL custom field id (a non-empty string)")
            continue
        if by_id is not None:
            resolved = by_id.get(field_id) or by_key.get(field_id)
            if resolved is None:
                problems.append(f"{name!r} -> {field_id!r}: the location has no such custom field")
                continue
            field_id = resolved
        entries.append((column, field_id))
    return CustomFieldMapping(entries=tuple(entries), problems=tuple(problems))


def _tags(raw: Any) -> list[str]:
    if not raw:
        return []
    seen: dict[str, None] = {}
    for tag in raw if isinstance(raw, (list, tuple)) else [raw]:
        text = _text(tag)
        if text:
            seen.setdefault(text, None)
    return list(seen)


def plan_contact_upsert(prospect: Mapping[str, Any], *, location_id: str, mapping: CustomFieldMapping,
                        value_key: str = "value", default_region: str = "US") -> ContactPlan:
    """The upsert body for one prospect row (a dict of sales_prospects columns), or why it is skipped."""
    if value_key not in VALUE_KEYS:
        raise ValueError(f"custom field value key must be one of {', '.join(VALUE_KEYS)}, not {value_key!r}")
    prospect_id = str(prospect.get("id"))
    notes: list[str] = []

    email = _text(prospect.get("email"))
    raw_phone = _text(prospect.get("phone"))
    phone = normalize_phone(raw_phone, default_region) if raw_phone else None
    if raw_phone and not phone:
        notes.append("phone is not a readable phone number; sent without it")
    if not email and not phone:
        reason = ("no email and no readable phone: GHL's upsert matches on those, so pushing would create "
                  "a new contact every time")
        return ContactPlan(prospect_id=prospect_id, body=None, skip_reason=reason, notes=tuple(notes))

    body: dict[str, Any] = {
        "locationId": location_id,
        "firstName": _text(prospect.get("first_name")),
        "lastName": _text(prospect.get("last_name")),
        "companyName": _text(prospect.get("company_name")),
        "source": CONTACT_SOURCE,
    }
    if email:
        body["email"] = email
    if phone:
        body["phone"] = phone
    tags = _tags(prospect.get("tags"))
    if tags:
        body["tags"] = tags
    custom_fields = []
    for column, field_id in mapping.entries:
        value = _text(prospect.get(column))
        if value is not None:
            custom_fields.append({"id": field_id, value_key: value})
    if custom_fields:
        body["customFields"] = custom_fields
    return ContactPlan(prospect_id=prospect_id, body=body, notes=tuple(notes))


# ---- proposing a mapping for a new location -------------------------------------------------------------------------

# Prospect fields worth a GHL custom field: the rest (names, email, phone, company) are standard contact fields that
# every upsert body already carries, so a custom field is proposed for them only when the location has one by name.
CUSTOM_FIELD_CANDIDATES = ("contact_title", "linkedin_url", "market_name", "source", "campaign")


def field_name_key(name: Any) -> str:
    """How names are compared: lowercase, without spaces and punctuation ("LinkedIn URL" == "linkedin_url")."""
    return "".join(ch for ch in str(name or "").lower() if ch.isalnum())


@dataclass(frozen=True)
class MappingProposal:
    mapping: dict[str, str]  # prospect field -> GHL custom field id
    matched: tuple[tuple[str, str, str], ...]  # (prospect field, GHL field id, GHL field name)
    unmatched_prospect_fields: tuple[str, ...]  # candidates the location has no field for
    unmatched_ghl_fields: tuple[tuple[str, str], ...]  # (id, name) of the location's fields nothing maps to


def propose_custom_field_mapping(fields: Iterable[tuple[str, str | None, str | None]]) -> MappingProposal:
    """Match the portal's prospect fields to a location's custom fields [(id, name, fieldKey), ...] by name or by
    fieldKey (without its "contact." prefix), case, spaces and punctuation ignored. `job_title` (the portal's
    older name) counts for contact_title. A field matched by two prospect names is used once (first wins)."""
    fields = list(fields)
    by_key: dict[str, tuple[str, str]] = {}
    for field_id, name, field_key in fields:
        for label in (name, (field_key or "").removeprefix("contact.")):
            key = field_name_key(label)
            if key:
                by_key.setdefault(key, (field_id, name or field_key or field_id))
    mapping: dict[str, str] = {}
    matched: list[tuple[str, str, str]] = []
    used: set[str] = set()
    for prospect_field, column in MAPPABLE_PROSPECT_FIELDS.items():
        target = column  # job_title proposes for contact_title
        if target in mapping:
            continue
        found = by_key.get(field_name_key(prospect_field))
        if found and found[0] not in used:
            mapping[target] = found[0]
            matched.append((target, found[0], found[1]))
            used.add(found[0])
    unmatched = tuple(f for f in CUSTOM_FIELD_CANDIDATES if f not in mapping)
    spare = tuple((field_id, name or field_key or field_id) for field_id, name, field_key in fields
                  if field_id not in used)
    return MappingProposal(mapping=mapping, matched=tuple(matched), unmatched_prospect_fields=unmatched,
                           unmatched_ghl_fields=spare)
