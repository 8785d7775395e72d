"""The GHL API v2 client: one per location, async, on aiohttp, rate limited by the location's own budget.

    async with GhlClient(location_id=..., token=..., base_url=settings.ghl_api_base_url) as ghl:
        result = await ghl.upsert_contact({"email": "a@b.com", "firstName": "Ada"})
        async for page in ghl.iter_call_message_pages(limit=500):
            ...

Every request goes through the location's `LocationRateLimiter` (see rate_limiting.py): up to
`max_in_flight` requests run at once, as many start per interval as GHL's headers allow.

Retry rules, in order:
  429                        wait (Retry-After, else until the window frees) and retry; never dropped
                             (after `max_rate_limit_waits` waits in a row: GhlTransientError)
  5xx, 408, timeout,         capped, jittered exponential backoff (the sleep is injectable), at most
  connection error           `max_attempts` attempts, then GhlTransientError
  other 4xx (400/401/403/    GhlPermanentError with GHL's message, never retried
  404/422 ...)
The daily budget: BudgetExhausted before sending once only `daily_reserve` requests would be left.

The token goes into the Authorization header only: never into a log line or an error message
(errors carry the method, the path and the status, never request headers).
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

import aiohttp
from yarl import URL

from shared.adapters.rate_limiting import LocationRateLimiter, limiter_for
from shared.domain.ghl_models import (
    CallMessage, CallMessagesPage, Contact, ContactSearchPage, CustomField, TranscriptSentence,
    UpsertContactResult, ghl_datetime,
)
from shared.domain.strict_json import loads_storable
from shared.errors import BudgetExhausted, GhlPermanentError, GhlTransientError
from shared.logs import get_logger

__all__ = [
    "GhlClient", "GhlPermanentError", "GhlTransientError", "BudgetExhausted", "ClientStats", "RecordingStream",
    "VERSION_CONTACTS", "VERSION_CONVERSATIONS",
]

log = get_logger("adapters.ghl_client")

# GHL's `Version` header differs per endpoint family.
VERSION_CONTACTS = "2021-07-28"  # contacts, custom fields, locations
VERSION_CONVERSATIONS = "2021-04-15"  # conversations, messages, recordings, transcriptions

MAX_SEARCH_PAGE = 500
EXPORT_LIMIT_RANGE = (10, 500)
_MESSAGE_LIMIT = 500  # characters of GHL's error message kept in an exception


@dataclass
class RecordingStream:
    content_type: str
    content_length: int | None
    chunks: AsyncIterator[bytes]


@dataclass
class ClientStats:
    requests: int = 0  # requests sent, retries included
    rate_limited: int = 0  # 429 answers received
    retried_errors: int = 0  # 5xx / timeouts / connection errors that were retried
    failed: int = 0  # requests given up (GhlTransientError raised)


@dataclass
class GhlAnswer:
    """One HTTP answer, read whole (or, streamed, with its body still to read from `stream`)."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes = b""
    reason_phrase: str = ""
    stream: Any = None  # the open aiohttp response of a streamed success

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


# aiohttp's errors for "no (whole) answer": timeouts, refused/reset connections, a body cut short.
_TRANSPORT_ERRORS = (asyncio.TimeoutError, aiohttp.ClientError)


def _ghl_message(response: GhlAnswer) -> str:
    """GHL's error message (`message` is a string or, for validation errors, a list of strings)."""
    try:
        body = loads_storable(response.content)
    except ValueError:
        return (response.text or response.reason_phrase or "")[:_MESSAGE_LIMIT]
    if isinstance(body, dict):
        message = body.get("message") or body.get("error") or body.get("msg") or ""
        if isinstance(message, list):
            message = "; ".join(str(item) for item in message)
        return str(message)[:_MESSAGE_LIMIT]
    return str(body)[:_MESSAGE_LIMIT]


def _decoded(response: GhlAnswer, method: str, path: str) -> Any:
    """An answer's JSON, storable as the database needs it (strict_json.loads_storable: GHL's text may hold a NUL)."""
    try:
        return loads_storable(response.content)
    except ValueError as exc:
        raise GhlTransientError(f"GHL {method} {path} answered {response.status_code} with a body that is "
                                "not JSON") from exc


def _json_body(value: Any) -> bytes:
    """A request body as httpx's `json=` wrote it (compact, UTF-8, no NaN)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


class GhlClient:
    def __init__(self, *, location_id: str, token: str, base_url: str, limiter: LocationRateLimiter | None = None,
                 http: aiohttp.ClientSession | None = None, daily_reserve: int = 1000, max_in_flight: int = 16,
                 timeout: float = 30.0, sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
                 max_attempts: int = 5, backoff_base_seconds: float = 0.5, backoff_cap_seconds: float = 8.0,
                 max_rate_limit_waits: int = 50):
        if not location_id:
            raise ValueError("GhlClient needs a location_id")
        if not token:
            raise ValueError(f"GhlClient for location {location_id} has no API token")
        self.location_id = location_id
        self.base_url = base_url.rstrip("/")
        self.limiter = limiter or limiter_for(location_id)
        self.daily_reserve = daily_reserve
        self.max_attempts = max_attempts
        self.backoff_base_seconds = backoff_base_seconds
        self.backoff_cap_seconds = backoff_cap_seconds
        self.max_rate_limit_waits = max_rate_limit_waits
        self.stats = ClientStats()
        self._token = token
        self._sleep = sleep
        self._max_in_flight = max_in_flight
        self._in_flight = asyncio.Semaphore(max_in_flight)
        # Per read, connect and pool wait, as httpx's timeout=: a slow recording download is not cut short.
        self._timeout = aiohttp.ClientTimeout(total=None, connect=timeout, sock_connect=timeout, sock_read=timeout)
        self._owns_http = http is None
        self._http = http  # made on first use: an aiohttp session belongs to the running event loop

    def __repr__(self) -> str:  # never shows the token
        return f"GhlClient(location_id={self.location_id!r}, base_url={self.base_url!r})"

    async def __aenter__(self) -> "GhlClient":
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_http and self._http is not None:
            await self._http.close()
            self._http = None

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = shared_http_session(limit=self._max_in_flight, timeout=self._timeout)
        return self._http

    async def _send(self, method: str, url: str, *, headers: dict[str, str], body: bytes | None,
                    params: dict[str, Any] | None, stream: bool) -> GhlAnswer:
        """One HTTP exchange (no retry). A streamed success comes back unread, its body in `.stream`."""
        response = await self._session().request(method, URL(url, encoded=True), data=body, params=params,
                                                 headers=headers, allow_redirects=False, timeout=self._timeout)
        try:
            answer = GhlAnswer(status_code=response.status, headers=response.headers,
                               reason_phrase=response.reason or "")
            if stream and response.status < 400:
                answer.stream = response
                response = None
            else:
                answer.content = await response.read()
            return answer
        finally:
            if response is not None:
                response.release()

    # ---- the one request path ----------------------------------------------------------------------

    def _backoff_seconds(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2^(attempt-1))]."""
        return random.uniform(0, min(self.backoff_cap_seconds, self.backoff_base_seconds * 2 ** (attempt - 1)))

    async def _request(self, method: str, path: str, *, version: str, json: Any = None,
                       params: dict[str, Any] | None = None, accept: str = "application/json",
                       answers: frozenset[int] = frozenset(), stream: bool = False) -> GhlAnswer:
        """Send one logical request, retrying as the module docstring says. `answers`: statuses returned as is.
        `stream`: a success's body is left unread (the caller iterates it and closes the response); an error's
        body is read, as always."""
        headers = {"Authorization": f"Bearer {self._token}", "Version": version, "Accept": accept}
        body = None
        if json is not None:
            body = _json_body(json)
            headers["Content-Type"] = "application/json"
        url = self.base_url + path
        failures = 0
        rate_limit_waits = 0
        while True:
            error: str
            cause: BaseException | None = None
            async with self._in_flight:
                permit = await self.limiter.acquire(daily_reserve=self.daily_reserve)
                self.stats.requests += 1
                try:
                    # an error's body is read whole, as always (small; GHL's message is in it)
                    response = await self._send(method, url, headers=headers, body=body, params=params, stream=stream)
                except _TRANSPORT_ERRORS as exc:
                    self.limiter.observe_failure(permit)
                    response = None
                    cause = exc
                    error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                except BaseException:  # cancelled, or a bug: the permit must still be closed
                    self.limiter.observe_failure(permit)
                    raise
                else:
                    self.limiter.observe(permit, response.headers, response.status_code)
            if response is not None:
                status = response.status_code
                if status < 400 or status in answers:
                    return response
                if status == 429:
                    self.stats.rate_limited += 1
                    rate_limit_waits += 1
                    if rate_limit_waits > self.max_rate_limit_waits:
                        self.stats.failed += 1
                        raise GhlTransientError(
                            f"GHL {method} {path} still answered 429 after {rate_limit_waits} waits",
                            details={"status_code": 429, "location_id": self.location_id})
                    log.info("GHL rate limited; waiting for the window", extra={"fields": {
                        "location_id": self.location_id, "method": method, "path": path, "waits": rate_limit_waits}})
                    continue  # the limiter now counts the window as full (or blocked for Retry-After)
                if status < 500 and status != 408:
                    raise GhlPermanentError(status, _ghl_message(response),
                                            details={"method": method, "path": path, "location_id": self.location_id})
                error = f"HTTP {status}: {_ghl_message(response)}"
            failures += 1
            if failures >= self.max_attempts:
                self.stats.failed += 1
                raise GhlTransientError(
                    f"GHL {method} {path} failed {failures} times; last: {error}",
                    details={"location_id": self.location_id, "attempts": failures}) from cause
            self.stats.retried_errors += 1
            delay = self._backoff_seconds(failures)
            log.warning("GHL request failed; retrying", extra={"fields": {
                "location_id": self.location_id, "method": method, "path": path, "error": error,
                "attempt": failures, "retry_in_seconds": round(delay, 3)}})
            await self._sleep(delay)

    async def _json(self, method: str, path: str, **kwargs) -> Any:
        return _decoded(await self._request(method, path, **kwargs), method, path)

    # ---- contacts ----------------------------------------------------------------------------------

    async def upsert_contact(self, body: dict) -> UpsertContactResult:
        """POST /contacts/upsert: create or update by the location's duplicate rule (email and/or phone).

        Retrying this POST after a timeout or a 5xx is safe: upsert is idempotent by GHL's duplicate
        rule (the second call finds the contact the first one created and updates it to the same values).
        """
        location = body.get("locationId")
        if location not in (None, self.location_id):
            raise ValueError(f"upsert body names location {location!r}, this client is for {self.location_id!r}")
        payload = {**body, "locationId": self.location_id}
        data = await self._json("POST", "/contacts/upsert", version=VERSION_CONTACTS, json=payload)
        return UpsertContactResult.from_api(data)

    async def get_contact(self, contact_id: str) -> Contact:
        data = await self._json("GET", f"/contacts/{quote(contact_id, safe='')}", version=VERSION_CONTACTS)
        return Contact.from_api(data.get("contact") or {})

    async def search_contacts(self, *, page_limit: int = MAX_SEARCH_PAGE, search_after: list | None = None,
                              filters: list | None = None) -> ContactSearchPage:
        """POST /contacts/search, paged with the `searchAfter` cursor (page numbers stop at 10,000 records)."""
        if not 1 <= page_limit <= MAX_SEARCH_PAGE:
            raise ValueError(f"page_limit must be between 1 and {MAX_SEARCH_PAGE}, not {page_limit}")
        body: dict[str, Any] = {"locationId": self.location_id, "pageLimit": page_limit}
        if search_after:
            body["searchAfter"] = search_after
        if filters:
            body["filters"] = filters
        data = await self._json("POST", "/contacts/search", version=VERSION_CONTACTS, json=body)
        contacts = [Contact.from_api(item) for item in data.get("contacts") or []]
        last_cursor = contacts[-1].search_after if contacts else None
        # A short page is the last one; a full page's last record carries the cursor of the next.
        next_search_after = last_cursor if len(contacts) >= page_limit and last_cursor else None
        return ContactSearchPage(contacts=contacts, total=int(data.get("total") or 0),
                                 next_search_after=next_search_after)

    async def iter_contact_pages(self, *, page_limit: int = MAX_SEARCH_PAGE, search_after: list | None = None,
                                 filters: list | None = None) -> AsyncIterator[ContactSearchPage]:
        """Every page of a contacts search, from `search_after` (None: the start) to the end."""
        cursor = search_after
        while True:
            page = await self.search_contacts(page_limit=page_limit, search_after=cursor, filters=filters)
            if page.contacts:
                yield page
            if page.next_search_after is None:
                return
            cursor = page.next_search_after

    async def list_custom_fields(self, *, model: str | None = None) -> list[CustomField]:
        """GET /locations/{locationId}/customFields (model: contact | opportunity | all; None: GHL's default)."""
        params = {"model": model} if model else None
        data = await self._json("GET", f"/locations/{quote(self.location_id, safe='')}/customFields",
                                version=VERSION_CONTACTS, params=params)
        return [CustomField.from_api(item) for item in data.get("customFields") or []]

    # ---- the location -------------------------------------------------------------------------------

    async def get_location(self) -> dict[str, Any]:
        """GET /locations/{locationId}: the sub-account itself ({id, name, timezone, ...}). One request that
        shows the token works for this location (401/403 otherwise); the answer's headers carry the budget."""
        data = await self._json("GET", f"/locations/{quote(self.location_id, safe='')}", version=VERSION_CONTACTS)
        location = data.get("location") if isinstance(data, dict) else None
        return location if isinstance(location, dict) else {}

    # ---- calls -------------------------------------------------------------------------------------

    async def export_call_messages(self, *, cursor: str | None = None, limit: int = 500,
                                   start_date: datetime | None = None, end_date: datetime | None = None,
                                   sort_by: str = "createdAt", sort_order: str = "asc") -> CallMessagesPage:
        """GET /conversations/messages/export?channel=Call: one page; keeps TYPE_CALL messages only."""
        low, high = EXPORT_LIMIT_RANGE
        if not low <= limit <= high:
            raise ValueError(f"limit must be between {low} and {high}, not {limit}")
        params: dict[str, Any] = {"locationId": self.location_id, "channel": "Call", "limit": limit,
                                  "sortBy": sort_by, "sortOrder": sort_order}
        if cursor:
            params["cursor"] = cursor
        if start_date:
            params["startDate"] = ghl_datetime(start_date)
        if end_date:
            params["endDate"] = ghl_datetime(end_date)
        data = await self._json("GET", "/conversations/messages/export", version=VERSION_CONVERSATIONS,
                                params=params)
        messages = [CallMessage.from_api(item) for item in data.get("messages") or []]
        calls = [message for message in messages if message.is_call]
        return CallMessagesPage(messages=calls, next_cursor=data.get("nextCursor") or None,
                                total=int(data.get("total") or 0), skipped_non_calls=len(messages) - len(calls))

    async def iter_call_message_pages(self, *, cursor: str | None = None, limit: int = 500,
                                      start_date: datetime | None = None, end_date: datetime | None = None,
                                      sort_by: str = "createdAt",
                                      sort_order: str = "asc") -> AsyncIterator[CallMessagesPage]:
        """Every page of the call export from `cursor` (None: the start) until nextCursor is null."""
        while True:
            page = await self.export_call_messages(cursor=cursor, limit=limit, start_date=start_date,
                                                   end_date=end_date, sort_by=sort_by, sort_order=sort_order)
            yield page
            if page.next_cursor is None or page.next_cursor == cursor:
                return
            cursor = page.next_cursor

    async def get_call_recording(self, message_id: str) -> bytes | None:
        """The call's audio (audio/x-wav), or None when GHL says there is none (422)."""
        path = (f"/conversations/messages/{quote(message_id, safe='')}/locations/"
                f"{quote(self.location_id, safe='')}/recording")
        response = await self._request("GET", path, version=VERSION_CONVERSATIONS, accept="audio/*, application/json",
                                       answers=frozenset({422}))
        if response.status_code == 422:
            return None
        return response.content

    @asynccontextmanager
    async def stream_call_recording(self, message_id: str,
                                    chunk_size: int = 64 * 1024) -> AsyncIterator["RecordingStream | None"]:
        """The call's audio as a stream (never whole in memory), or None when GHL has none (422):

            async with ghl.stream_call_recording(message_id) as recording:
                if recording is not None:
                    async for chunk in recording.chunks: ...
        """
        path = (f"/conversations/messages/{quote(message_id, safe='')}/locations/"
                f"{quote(self.location_id, safe='')}/recording")
        response = await self._request("GET", path, version=VERSION_CONVERSATIONS, accept="audio/*, application/json",
                                       answers=frozenset({422}), stream=True)
        try:
            if response.status_code == 422 or response.stream is None:
                yield None
            else:
                length = response.headers.get("content-length")
                yield RecordingStream(content_type=response.headers.get("content-type") or "audio/x-wav",
                                      content_length=int(length) if length and length.isdigit() else None,
                                      chunks=_chunks(response.stream, chunk_size))
        finally:
            if response.stream is not None:
                response.stream.release()  # back to the pool when read to its end, else closed

    async def get_call_transcription(self, message_id: str) -> list[TranscriptSentence]:
        """The call's transcript as sentences (an empty list when there is none)."""
        path = (f"/conversations/locations/{quote(self.location_id, safe='')}/messages/"
                f"{quote(message_id, safe='')}/transcription")
        response = await self._request("GET", path, version=VERSION_CONVERSATIONS, answers=frozenset({422}))
        if response.status_code == 422:
            return []
        data = _decoded(response, "GET", path)
        items = data if isinstance(data, list) else [data] if isinstance(data, dict) and data else []
        return [TranscriptSentence.from_api(item) for item in items]


def shared_http_session(*, limit: int = 100, timeout: aiohttp.ClientTimeout | None = None) -> aiohttp.ClientSession:
    """A connection pool for GhlClients (http=): one per location, or one for many (doctor, onboarding; each client
    still applies its own timeouts). Call inside the running event loop. trust_env off: with it aiohttp reads the
    proxy variables and ~/.netrc on every request (GHL is reached directly; no proxy is configured anywhere this runs)."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=limit), timeout=timeout, trust_env=False)


async def _chunks(response: aiohttp.ClientResponse, chunk_size: int) -> AsyncIterator[bytes]:
    """A streamed body; a cut connection or a stalled read is a GhlTransientError (try again later)."""
    try:
        async for chunk in response.content.iter_chunked(chunk_size):
            yield chunk
    except _TRANSPORT_ERRORS as exc:
        raise GhlTransientError(f"recording download interrupted ({type(exc).__name__})") from exc
