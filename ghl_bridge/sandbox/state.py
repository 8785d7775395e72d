"""The sandbox's state: locations with their tokens, limits, contacts, custom fields, calls, faults, stats.

Everything lives in memory of one process and is touched only from its event loop (no locks).
"""

from __future__ import annotations

import base64
import bisect
import json
import random
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import phonenumbers

DUPLICATE_FIELDS = ("email", "phone")
# Fields an upsert writes as given (GHL's UpsertContactDto, minus the special ones handled below).
PLAIN_CONTACT_FIELDS = (
    "firstName", "lastName", "name", "gender", "address1", "city", "state", "postalCode", "website", "timezone",
    "dnd", "dndSettings", "inboundDndSettings", "source", "dateOfBirth", "country", "companyName", "assignedTo",
)
MAX_PAGE_RECORDS = 10_000  # `page` numbers stop here; searchAfter goes on


class SandboxRequestError(Exception):
    """A request GHL would refuse for its content (not its shape): answered with `status` and `message`."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def now_ms() -> int:
    return int(time.time() * 1000)


def iso_ms(ms: int) -> str:
    moment = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def parse_date_ms(value: Any) -> int:
    """An ISO 8601 date (with or without Z) or epoch milliseconds."""
    if isinstance(value, (int, float)):
        return int(value)
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise SandboxRequestError(400, f"invalid date: {text!r}") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)


def new_id(length: int = 20) -> str:
    return uuid.uuid4().hex[:length]


def to_e164(raw: str, region: str = "US") -> str:
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        raise SandboxRequestError(422, f"phone must be a valid phone number: {exc}") from exc
    if not phonenumbers.is_possible_number(number):
        raise SandboxRequestError(422, "phone must be a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def encode_cursor(payload: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode()


def decode_cursor(cursor: str) -> dict:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        payload = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(payload, dict):
            raise ValueError("not an object")
        return payload
    except (ValueError, TypeError) as exc:
        raise SandboxRequestError(400, "invalid cursor") from exc


# ---- rate limiting -------------------------------------------------------------------------------


@dataclass
class RateLimitVerdict:
    allowed: bool
    headers: dict[str, str]
    retry_after_seconds: float | None = None


@dataclass
class LocationLimits:
    burst_limit: int = 100
    burst_window_ms: int = 10_000
    daily_limit: int = 200_000


class LocationRateLimit:
    """GHL's per-location limits as a sliding window log of admitted requests plus a daily count."""

    def __init__(self, limits: LocationLimits):
        self.limits = limits
        self.admitted: deque[float] = deque()
        self.daily_used = 0

    def _prune(self, now: float) -> None:
        horizon = now - self.limits.burst_window_ms / 1000
        while self.admitted and self.admitted[0] <= horizon:
            self.admitted.popleft()

    def headers(self, now: float) -> dict[str, str]:
        self._prune(now)
        return {
            "X-RateLimit-Limit-Daily": str(self.limits.daily_limit),
            "X-RateLimit-Daily-Remaining": str(max(0, self.limits.daily_limit - self.daily_used)),
            "X-RateLimit-Interval-Milliseconds": str(self.limits.burst_window_ms),
            "X-RateLimit-Max": str(self.limits.burst_limit),
            "X-RateLimit-Remaining": str(max(0, self.limits.burst_limit - len(self.admitted))),
        }

    def admit(self, now: float) -> RateLimitVerdict:
        self._prune(now)
        if self.daily_used >= self.limits.daily_limit or len(self.admitted) >= self.limits.burst_limit:
            return RateLimitVerdict(False, self.headers(now))
        self.admitted.append(now)
        self.daily_used += 1
        return RateLimitVerdict(True, self.headers(now))


# ---- faults --------------------------------------------------------------------------------------


@dataclass
class Faults:
    """Injected misbehaviour. *_count: the next N requests; *_rate: a share of requests (0..1)."""

    error_count: int = 0
    error_rate: float = 0.0
    error_status: int = 503
    hang_count: int = 0
    hang_rate: float = 0.0
    hang_seconds: float = 30.0
    rate_limit_count: int = 0  # a 429 storm: answer 429 to the next N requests whatever the budget
    rate_limit_rate: float = 0.0
    retry_after_seconds: float | None = None  # sent with injected 429s when set
    only_paths: list[str] = field(default_factory=list)  # path prefixes the faults apply to (empty: all)
    # contacts search and calls export report this many more in `total` than match (a list that ends short,
    # as when records are deleted mid-pull or GHL's index lags)
    total_extra: int = 0

    def applies_to(self, path: str) -> bool:
        return not self.only_paths or any(path.startswith(prefix) for prefix in self.only_paths)

    def take(self, kind: str, rng: random.Random) -> bool:
        count_name, rate_name = f"{kind}_count", f"{kind}_rate"
        if getattr(self, count_name) > 0:
            setattr(self, count_name, getattr(self, count_name) - 1)
            return True
        rate = getattr(self, rate_name)
        return rate > 0 and rng.random() < rate


# ---- stats ---------------------------------------------------------------------------------------


@dataclass
class Stats:
    requests: Counter = field(default_factory=Counter)  # per operation ("POST /contacts/upsert")
    statuses: Counter = field(default_factory=Counter)  # per HTTP status
    upserts_per_contact: Counter = field(default_factory=Counter)
    rate_limited_sent: int = 0  # 429s answered (budget and injected)
    injected: Counter = field(default_factory=Counter)  # faults injected, per kind
    ignored_custom_field_ids: Counter = field(default_factory=Counter)
    dropped_duplicate_fields: list[dict] = field(default_factory=list)
    contract_violations: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "requests": dict(self.requests),
            "requests_total": sum(self.requests.values()),
            "statuses": {str(k): v for k, v in self.statuses.items()},
            "upserts_per_contact": dict(self.upserts_per_contact),
            "rate_limited_sent": self.rate_limited_sent,
            "injected": dict(self.injected),
            "ignored_custom_field_ids": dict(self.ignored_custom_field_ids),
            "dropped_duplicate_fields": self.dropped_duplicate_fields[-100:],
            "contract_violations": len(self.contract_violations),
            "contract_violation_details": self.contract_violations[-50:],
        }


# ---- a location ----------------------------------------------------------------------------------


def _sort_key(contact: dict) -> tuple[int, str]:
    return (contact["_dateAddedMs"], contact["id"])


class Location:
    def __init__(self, location_id: str, token: str, limits: LocationLimits, *,
                 duplicate_rule: list[str] | None = None, custom_fields: list[dict] | None = None,
                 latency_ms: float | None = None, phone_region: str = "US"):
        self.id = location_id
        self.token = token
        # what GET /locations/{id} answers (settable like the rest: name, timezone)
        self.name = f"Sandbox {location_id}"
        self.timezone = "UTC"
        self.limits = limits
        self.rate_limit = LocationRateLimit(limits)
        self.duplicate_rule = list(duplicate_rule if duplicate_rule is not None else DUPLICATE_FIELDS)
        self.custom_fields: list[dict] = []
        self.set_custom_fields(custom_fields or [])
        self.latency_ms = latency_ms
        self.phone_region = phone_region
        self.faults = Faults()
        self.stats = Stats()
        self.rng = random.Random(location_id)
        self.contacts: dict[str, dict] = {}
        self.by_email: dict[str, str] = {}
        self.by_phone: dict[str, str] = {}
        self.order: list[tuple[int, str]] = []  # (dateAdded ms, id), sorted: the search order
        self.messages: dict[str, dict] = {}
        self.message_order: list[tuple[int, str]] = []  # (dateAdded ms, id), sorted
        self.recordings: dict[str, bytes] = {}
        self.transcriptions: dict[str, list[dict]] = {}
        self._last_ms = 0

    # ---- settings ----

    def set_custom_fields(self, fields: list[dict]) -> None:
        normalized = []
        for position, item in enumerate(fields):
            field_id = item.get("id") or new_id()
            name = item.get("name") or field_id
            normalized.append({
                "id": field_id, "name": name,
                "fieldKey": item.get("fieldKey") or item.get("field_key") or f"contact.{name.lower().replace(' ', '_')}",
                "dataType": item.get("dataType") or item.get("data_type") or "TEXT",
                "position": position, "model": "contact", "locationId": self.id,
            })
        self.custom_fields = normalized

    def configure(self, settings: dict) -> None:
        for name in ("burst_limit", "burst_window_ms", "daily_limit"):
            if settings.get(name) is not None:
                setattr(self.limits, name, int(settings[name]))
        if settings.get("duplicate_rule") is not None:
            rule = list(settings["duplicate_rule"])
            unknown = [item for item in rule if item not in DUPLICATE_FIELDS]
            if unknown:
                raise SandboxRequestError(400, f"duplicate_rule may name only email and phone, not {unknown}")
            self.duplicate_rule = rule
        if settings.get("custom_fields") is not None:
            self.set_custom_fields(settings["custom_fields"])
        if "latency_ms" in settings:
            self.latency_ms = settings["latency_ms"]
        if settings.get("token"):
            self.token = settings["token"]
        if settings.get("name"):
            self.name = str(settings["name"])
        if settings.get("timezone"):
            self.timezone = str(settings["timezone"])

    def summary(self) -> dict:
        return {"id": self.id, "name": self.name, "timezone": self.timezone, "burst_limit": self.limits.burst_limit, "burst_window_ms": self.limits.burst_window_ms,
                "daily_limit": self.limits.daily_limit, "daily_used": self.rate_limit.daily_used,
                "duplicate_rule": self.duplicate_rule, "custom_fields": self.custom_fields,
                "latency_ms": self.latency_ms, "contacts": len(self.contacts), "messages": len(self.messages)}

    def _next_ms(self) -> int:
        """Strictly increasing creation times, so the search order is stable."""
        self._last_ms = max(now_ms(), self._last_ms + 1)
        return self._last_ms

    # ---- contacts ----

    def _index(self, contact: dict) -> None:
        if contact.get("email"):
            self.by_email.setdefault(contact["email"].lower(), contact["id"])
        if contact.get("phone"):
            self.by_phone.setdefault(contact["phone"], contact["id"])

    def _unindex(self, contact: dict) -> None:
        email = (contact.get("email") or "").lower()
        if email and self.by_email.get(email) == contact["id"]:
            del self.by_email[email]
        if contact.get("phone") and self.by_phone.get(contact["phone"]) == contact["id"]:
            del self.by_phone[contact["phone"]]

    def _custom_field_items(self, items: list[dict]) -> dict[str, Any]:
        known = {item["id"] for item in self.custom_fields}
        values = {}
        for item in items:
            field_id = item.get("id")
            if field_id not in known:
                self.stats.ignored_custom_field_ids[str(field_id)] += 1  # GHL ignores it silently
                continue
            value = item["value"] if "value" in item else item.get("field_value")
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                value = str(value)  # reads return strings ({id, value: string} in GHL's schema)
            values[field_id] = value
        return values

    def upsert_contact(self, body: dict) -> tuple[bool, dict]:
        email = body.get("email") or None
        phone = to_e164(body["phone"], self.phone_region) if body.get("phone") else None
        keys = {"email": email.lower() if email else None, "phone": phone}
        indexes = {"email": self.by_email, "phone": self.by_phone}
        target_id = None
        matched_by = None
        for rule_field in self.duplicate_rule:
            if keys[rule_field] and keys[rule_field] in indexes[rule_field]:
                target_id, matched_by = indexes[rule_field][keys[rule_field]], rule_field
                break
        dropped = []
        if target_id is not None:
            # A lower-priority field that already belongs to another contact is silently dropped.
            for rule_field in self.duplicate_rule:
                owner = indexes[rule_field].get(keys[rule_field]) if keys[rule_field] else None
                if rule_field != matched_by and owner is not None and owner != target_id:
                    dropped.append(rule_field)
        is_new = target_id is None
        if is_new:
            created = self._next_ms()
            contact = {"id": new_id(), "locationId": self.id, "_dateAddedMs": created,
                       "dateAdded": iso_ms(created), "tags": [], "_customFields": {}, "type": "lead"}
        else:
            contact = self.contacts[target_id]
            self._unindex(contact)
        for name in PLAIN_CONTACT_FIELDS:
            if name in body and body[name] is not None:
                contact[name] = body[name]
        if email and "email" not in dropped:
            contact["email"] = email
        if phone and "phone" not in dropped:
            contact["phone"] = phone
        if "tags" in body and body["tags"] is not None:
            contact["tags"] = list(body["tags"])  # tags replace all tags
        if body.get("customFields"):
            contact["_customFields"].update(self._custom_field_items(body["customFields"]))
        contact["dateUpdated"] = iso_ms(now_ms())
        if dropped:
            self.stats.dropped_duplicate_fields.append({"contact_id": contact["id"], "dropped": dropped})
        self.contacts[contact["id"]] = contact
        self._index(contact)
        if is_new:
            bisect.insort(self.order, _sort_key(contact))
        self.stats.upserts_per_contact[contact["id"]] += 1
        return is_new, contact

    def render_contact(self, contact: dict, *, with_search_after: bool = False) -> dict:
        """The read shape: no None values (the schema's strings are not nullable), customFields as {id, value}."""
        shown = {k: v for k, v in contact.items() if not k.startswith("_") and v is not None}
        if contact.get("email"):
            shown["emailLowerCase"] = contact["email"].lower()
        shown["customFields"] = [{"id": k, "value": v} for k, v in contact.get("_customFields", {}).items()]
        if with_search_after:
            shown["searchAfter"] = [contact["_dateAddedMs"], contact["id"]]
        return shown

    def seed_contacts(self, count: int, *, start_ms: int | None = None, with_custom_fields: bool = True) -> int:
        """N contacts with unique emails and phones, created 1 ms apart before now (fast: no parsing)."""
        base = start_ms if start_ms is not None else now_ms() - count - 86_400_000
        prefix = new_id(6)
        area_code = 200 + int(prefix, 16) % 800
        field_ids = [item["id"] for item in self.custom_fields] if with_custom_fields else []
        new_keys = []
        for i in range(count):
            created = base + i
            contact_id = f"{prefix}{i:08d}"
            contact = {
                "id": contact_id, "locationId": self.id, "_dateAddedMs": created, "dateAdded": iso_ms(created),
                "dateUpdated": iso_ms(created), "firstName": f"Seed{i}", "lastName": f"Contact{prefix}",
                "email": f"seed{i}.{prefix}@example.com",
                "phone": f"+1{area_code}{i % 10_000_000:07d}",
                "tags": ["seeded"], "source": "sandbox seed", "type": "lead",
                "_customFields": {field_id: f"value {i}" for field_id in field_ids[:2]},
            }
            self.contacts[contact_id] = contact
            self._index(contact)
            new_keys.append((created, contact_id))
        self.order = sorted(self.order + new_keys) if self.order else sorted(new_keys)
        self._last_ms = max(self._last_ms, base + count)
        return count

    def add_contact(self, record: dict) -> dict:
        """One contact as given (admin seeding, bypasses the duplicate rule)."""
        created = parse_date_ms(record["dateAdded"]) if record.get("dateAdded") else self._next_ms()
        contact = {k: v for k, v in record.items() if k != "customFields"}
        contact.setdefault("id", new_id())
        contact.update({"locationId": self.id, "_dateAddedMs": created, "dateAdded": iso_ms(created),
                        "_customFields": {i["id"]: i.get("value", i.get("field_value"))
                                          for i in record.get("customFields") or []}})
        contact.setdefault("dateUpdated", contact["dateAdded"])
        contact.setdefault("tags", [])
        if contact.get("phone"):
            contact["phone"] = to_e164(contact["phone"], self.phone_region)
        self.contacts[contact["id"]] = contact
        self._index(contact)
        bisect.insort(self.order, _sort_key(contact))
        return contact

    def search_contacts(self, body: dict) -> dict:
        page_limit = body.get("pageLimit", 20)
        if not isinstance(page_limit, int) or not 1 <= page_limit <= 500:
            raise SandboxRequestError(400, "pageLimit must be an integer between 1 and 500")
        page = body.get("page")
        search_after = body.get("searchAfter")
        if page is not None and search_after is not None:
            raise SandboxRequestError(400, "page and searchAfter cannot be used together")
        matches = self._filtered(body.get("filters") or [])
        if search_after is not None:
            if not (isinstance(search_after, list) and len(search_after) == 2):
                raise SandboxRequestError(400, "searchAfter must be the searchAfter value of the last record")
            start = bisect.bisect_right(matches, (int(search_after[0]), str(search_after[1])))
        else:
            page = page or 1
            if not isinstance(page, int) or page < 1:
                raise SandboxRequestError(400, "page must be a positive integer")
            start = (page - 1) * page_limit
            if start + page_limit > MAX_PAGE_RECORDS:
                raise SandboxRequestError(
                    400, f"page numbers are limited to the first {MAX_PAGE_RECORDS} records: use searchAfter")
        keys = matches[start:start + page_limit]
        contacts = [self.render_contact(self.contacts[key[1]], with_search_after=True) for key in keys]
        return {"contacts": contacts, "total": len(matches) + self.faults.total_extra}

    def _filtered(self, filters: list) -> list[tuple[int, str]]:
        if not filters:
            return self.order
        checks = [self._filter_check(item) for item in filters]
        return [key for key in self.order if all(check(self.contacts[key[1]]) for check in checks)]

    def _filter_check(self, item: dict):
        if not isinstance(item, dict):
            raise SandboxRequestError(400, "each filter must be an object")
        if "group" in item:
            checks = [self._filter_check(sub) for sub in item.get("filters") or []]
            if str(item["group"]).upper() == "OR":
                return lambda c: any(check(c) for check in checks)
            return lambda c: all(check(c) for check in checks)
        name, operator, value = item.get("field"), item.get("operator"), item.get("value")
        if name in ("dateAdded", "dateUpdated") and operator == "range" and isinstance(value, dict):
            bounds = {k: parse_date_ms(v) for k, v in value.items()}

            def in_range(contact: dict) -> bool:
                moment = contact["_dateAddedMs"] if name == "dateAdded" else parse_date_ms(contact["dateUpdated"])
                return all({"gt": moment > b, "gte": moment >= b, "lt": moment < b, "lte": moment <= b}.get(k, True)
                           for k, b in bounds.items())
            return in_range
        if name in ("email", "phone", "id", "firstName", "lastName", "companyName", "source") and operator in (
                "eq", "not_eq"):
            wanted = str(value).lower() if name == "email" else str(value)

            def equals(contact: dict) -> bool:
                have = contact.get(name)
                have = have.lower() if name == "email" and have else have
                return (have == wanted) == (operator == "eq")
            return equals
        if name == "tags" and operator in ("eq", "contains"):
            return lambda c: value in (c.get("tags") or []) if not isinstance(value, list) else all(
                v in (c.get("tags") or []) for v in value)
        if operator in ("exists", "not_exists") and name:
            return lambda c: (c.get(name) not in (None, "", [])) == (operator == "exists")
        raise SandboxRequestError(400, f"unsupported filter: field {name!r} with operator {operator!r}")

    # ---- calls ----

    def add_message(self, message: dict, *, recording: bytes | None = None,
                    transcription: list[dict] | None = None) -> dict:
        message = dict(message)
        message.setdefault("id", new_id())
        message.setdefault("locationId", self.id)
        message.setdefault("type", 1)
        message.setdefault("messageType", "TYPE_CALL")
        message.setdefault("contactId", new_id())
        message.setdefault("conversationId", new_id())
        message.setdefault("direction", "outbound")
        message.setdefault("contentType", "text/plain")
        created = parse_date_ms(message["dateAdded"]) if message.get("dateAdded") else self._next_ms()
        message["dateAdded"] = iso_ms(created)
        message.setdefault("dateUpdated", message["dateAdded"])
        message["_dateAddedMs"] = created
        message["_dateUpdatedMs"] = parse_date_ms(message["dateUpdated"])
        self.messages[message["id"]] = message
        bisect.insort(self.message_order, (created, message["id"]))
        if recording is not None:
            self.recordings[message["id"]] = recording
        if transcription is not None:
            self.transcriptions[message["id"]] = transcription
        return message

    def seed_calls(self, count: int, *, voicemail_share: float = 0.1, start_ms: int | None = None) -> dict:
        """M call messages over the past days: both call-data shapes, some ringless-voicemail drops."""
        base = start_ms if start_ms is not None else now_ms() - count * 1000 - 86_400_000
        rng = random.Random(f"{self.id}:{count}:{base}")
        contact_ids = [key[1] for key in self.order[:1000]] or [new_id() for _ in range(50)]
        outcomes = ["completed", "answered", "no-answer", "busy", "failed", "voicemail", "canceled"]
        # message status from the spec's enum (the call outcome lives in meta)
        message_status = {"completed": "delivered", "answered": "delivered", "voicemail": "delivered",
                          "no-answer": "undelivered", "busy": "undelivered", "canceled": "undelivered",
                          "failed": "failed"}
        calls = voicemails = 0
        prefix = new_id(6)
        new_order = []
        for i in range(count):
            created = base + i * 1000
            message_id = f"m{prefix}{i:08d}"
            message = {"id": message_id, "locationId": self.id, "contactId": rng.choice(contact_ids),
                       "conversationId": f"c{prefix}{i % 5000:05d}", "dateAdded": iso_ms(created),
                       "dateUpdated": iso_ms(created + 60_000), "direction": rng.choice(["outbound", "inbound"]),
                       "contentType": "text/plain", "_dateAddedMs": created, "_dateUpdatedMs": created + 60_000}
            if rng.random() < voicemail_share:
                message.update({"type": 33, "messageType": "TYPE_CAMPAIGN_VOICEMAIL", "status": "delivered",
                                "direction": "outbound"})
                voicemails += 1
            else:
                outcome = rng.choice(outcomes)
                connected = outcome in ("completed", "answered")
                duration = rng.randint(5, 900) if connected else None
                message.update({"type": 1, "messageType": "TYPE_CALL", "status": message_status[outcome],
                                "altId": f"CA{prefix}{i:010d}"})
                if i % 2 == 0:  # what real responses carry
                    call = {"status": outcome}
                    if duration is not None:
                        call["duration"] = duration
                    message["meta"] = {"call": call}
                else:  # what the spec documents
                    meta = {"callStatus": outcome}
                    if duration is not None:
                        meta["callDuration"] = str(duration)
                    message["meta"] = meta
                if connected:
                    self.recordings[message_id] = tiny_wav(duration or 1)
                    self.transcriptions[message_id] = [
                        {"mediaChannel": 1, "sentenceIndex": 1, "startTime": 0, "endTime": 1500,
                         "transcript": "Hello, this call may be recorded.", "confidence": 0.93},
                        {"mediaChannel": 2, "sentenceIndex": 2, "startTime": 1600, "endTime": 3000,
                         "transcript": "Hi, thanks for calling back.", "confidence": 0.88}]
                calls += 1
            self.messages[message_id] = message
            new_order.append((created, message_id))
        self.message_order = sorted(self.message_order + new_order)
        return {"calls": calls, "voicemails": voicemails}

    def export_messages(self, query: dict[str, str]) -> dict:
        limit = int(float(query.get("limit", 100)))
        sort_by = query.get("sortBy", "createdAt")
        descending = query.get("sortOrder", "desc") == "desc"
        channel = query.get("channel")
        start = parse_date_ms(query["startDate"]) if query.get("startDate") else None
        end = parse_date_ms(query["endDate"]) if query.get("endDate") else None
        time_field = "_dateAddedMs" if sort_by == "createdAt" else "_dateUpdatedMs"

        def wanted(message: dict) -> bool:
            if channel == "Call" and message["messageType"] not in ("TYPE_CALL", "TYPE_CAMPAIGN_VOICEMAIL"):
                return False
            if query.get("contactId") and message["contactId"] != query["contactId"]:
                return False
            if query.get("conversationId") and message["conversationId"] != query["conversationId"]:
                return False
            moment = message["_dateAddedMs"]
            return (start is None or moment >= start) and (end is None or moment <= end)

        keys = sorted((self.messages[mid][time_field], mid) for _, mid in self.message_order
                      if wanted(self.messages[mid]))
        position = 0
        if query.get("cursor"):
            state = decode_cursor(query["cursor"])
            last = (int(state.get("lastSort", 0)), str(state.get("lastId", "")))
            # the records after `last` in the requested order
            position = len(keys) - bisect.bisect_left(keys, last) if descending else bisect.bisect_right(keys, last)
        if descending:
            keys.reverse()
        page = keys[position:position + limit]
        next_cursor = None
        if position + limit < len(keys) and page:
            next_cursor = encode_cursor({"lastSort": page[-1][0], "lastId": page[-1][1]})
        messages = [{k: v for k, v in self.messages[mid].items() if not k.startswith("_")} for _, mid in page]
        return {"messages": messages, "nextCursor": next_cursor, "total": len(keys) + self.faults.total_extra}

    # ---- reset ----

    def reset(self) -> None:
        name, zone = self.name, self.timezone
        self.__init__(self.id, self.token, self.limits, duplicate_rule=self.duplicate_rule,
                      custom_fields=self.custom_fields, latency_ms=self.latency_ms, phone_region=self.phone_region)
        self.name, self.timezone = name, zone


def tiny_wav(seconds: int) -> bytes:
    """A valid, silent 8 kHz mono WAV header with a few samples (enough to be a real file)."""
    samples = b"\x00\x00" * 80
    header = b"RIFF" + (36 + len(samples)).to_bytes(4, "little") + b"WAVEfmt " + (16).to_bytes(4, "little")
    header += (1).to_bytes(2, "little") + (1).to_bytes(2, "little") + (8000).to_bytes(4, "little")
    header += (16000).to_bytes(4, "little") + (2).to_bytes(2, "little") + (16).to_bytes(2, "little")
    return header + b"data" + len(samples).to_bytes(4, "little") + samples


class SandboxState:
    def __init__(self, default_limits: LocationLimits, default_latency_ms: float = 0.0):
        self.default_limits = default_limits
        self.default_latency_ms = default_latency_ms
        self.locations: dict[str, Location] = {}
        self.by_token: dict[str, str] = {}
        self.stats = Stats()  # everything, including requests no location could be found for

    def upsert_location(self, location_id: str, settings: dict) -> Location:
        location = self.locations.get(location_id)
        if location is None:
            limits = LocationLimits(self.default_limits.burst_limit, self.default_limits.burst_window_ms,
                                    self.default_limits.daily_limit)
            token = settings.get("token") or f"sandbox-{uuid.uuid4().hex}"
            location = Location(location_id, token, limits)
            self.locations[location_id] = location
        old_token = location.token
        location.configure(settings)
        if self.by_token.get(old_token) == location_id:
            del self.by_token[old_token]
        self.by_token[location.token] = location_id
        return location

    def location_for_token(self, token: str | None) -> Location | None:
        location_id = self.by_token.get(token or "")
        return self.locations.get(location_id) if location_id else None

    def latency_seconds(self, location: Location | None) -> float:
        latency = location.latency_ms if location and location.latency_ms is not None else self.default_latency_ms
        return max(0.0, float(latency)) / 1000
