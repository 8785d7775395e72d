"""The GHL sandbox as an ASGI app (Starlette): GHL's endpoints the project uses, plus /_sandbox/ admin.

Every GHL request goes through one pipeline (`_serve_ghl`):
  count -> authenticate (Bearer token of a location, else 401) -> rate limit (429 beyond the
  location's burst or daily budget, X-RateLimit-* headers on every answer) -> injected faults
  (429 storm, 5xx) -> latency -> validate the request against GHL's OpenAPI files (422 in GHL's
  shape when it does not match, counted) -> handler -> validate the response (counted when it
  does not match) -> injected hang (the work is done, the answer comes too late).
All waiting is asynchronous, so a slow or hanging request never holds up another.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ghl_bridge.sandbox import contract
from ghl_bridge.sandbox.media import LocationMedia, wav_of_size
from ghl_bridge.sandbox.state import Faults, Location, LocationLimits, SandboxRequestError, SandboxState, new_id

JSON = "application/json"


class Answer:
    def __init__(self, status: int, body: Any, content_type: str = JSON, headers: dict | None = None):
        self.status = status
        self.body = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.content_type = content_type
        self.headers = headers or {}


def _error(status: int, message: str | list[str], error: str | None = None) -> Answer:
    body: dict[str, Any] = {"statusCode": status, "message": message}
    if error:
        body["error"] = error
    return Answer(status, body)


def _unauthorized(message: str) -> Answer:
    return _error(401, message, "Unauthorized")


Handler = Callable[[Location, Request, dict[str, Any]], Awaitable[Answer]]


class GhlSandbox:
    def __init__(self, *, burst_limit: int = 100, burst_window_ms: int = 10_000, daily_limit: int = 200_000,
                 latency_ms: float = 0.0):
        self.state = SandboxState(LocationLimits(burst_limit, burst_window_ms, daily_limit), latency_ms)
        self.media: dict[str, LocationMedia] = {}  # location id -> when its calls' media are ready (media.py)
        routes = [
            Route("/contacts/upsert", self._ghl("POST /contacts/upsert", self.upsert_contact), methods=["POST"]),
            Route("/contacts/search", self._ghl("POST /contacts/search", self.search_contacts), methods=["POST"]),
            Route("/contacts/{contact_id}", self._ghl("GET /contacts/{contactId}", self.get_contact),
                  methods=["GET"]),
            Route("/locations/{location_id}", self._ghl("GET /locations/{locationId}", self.get_location),
                  methods=["GET"]),
            Route("/locations/{location_id}/customFields",
                  self._ghl("GET /locations/{locationId}/customFields", self.list_custom_fields), methods=["GET"]),
            Route("/conversations/messages/export",
                  self._ghl("GET /conversations/messages/export", self.export_messages), methods=["GET"]),
            Route("/conversations/messages/{message_id}/locations/{location_id}/recording",
                  self._ghl("GET /conversations/messages/{messageId}/locations/{locationId}/recording",
                            self.get_recording), methods=["GET"]),
            Route("/conversations/locations/{location_id}/messages/{message_id}/transcription",
                  self._ghl("GET /conversations/locations/{locationId}/messages/{messageId}/transcription",
                            self.get_transcription), methods=["GET"]),
            Route("/_sandbox/health", self.admin_health, methods=["GET"]),
            Route("/_sandbox/stats", self.admin_global_stats, methods=["GET"]),
            Route("/_sandbox/locations/{location_id}", self.admin_location, methods=["PUT", "GET"]),
            Route("/_sandbox/locations/{location_id}/seed", self.admin_seed, methods=["POST"]),
            Route("/_sandbox/locations/{location_id}/contacts", self.admin_contacts, methods=["GET"]),
            Route("/_sandbox/locations/{location_id}/stats", self.admin_stats, methods=["GET"]),
            Route("/_sandbox/locations/{location_id}/faults", self.admin_faults, methods=["PUT"]),
            Route("/_sandbox/locations/{location_id}/reset", self.admin_reset, methods=["POST"]),
            Route("/_sandbox/locations/{location_id}/media", self.admin_media, methods=["PUT", "GET"]),
            Route("/_sandbox/locations/{location_id}/media/calls", self.admin_media_calls, methods=["POST"]),
            Route("/_sandbox/locations/{location_id}/media/recordings/{message_id}", self.admin_media_recording,
                  methods=["GET"]),
        ]
        self.app = Starlette(routes=routes)

    # ---- the GHL pipeline ----------------------------------------------------------------------------

    def _ghl(self, operation: str, handler: Handler):
        async def endpoint(request: Request) -> Response:
            answer, location = await self._serve_ghl(operation, handler, request)
            headers = location.rate_limit.headers(time.monotonic()) if location is not None else {}
            headers.update(answer.headers)
            return Response(answer.body, status_code=answer.status, media_type=answer.content_type, headers=headers)
        return endpoint

    def _record(self, location: Location | None, operation: str, status: int | None = None) -> None:
        for stats in filter(None, (self.state.stats, location.stats if location else None)):
            if status is None:
                stats.requests[operation] += 1
            else:
                stats.statuses[status] += 1

    def _violation(self, location: Location | None, kind: str, operation: str, errors: list[str]) -> None:
        entry = {"kind": kind, "operation": operation, "errors": errors[:10], "at": time.time()}
        for stats in filter(None, (self.state.stats, location.stats if location else None)):
            stats.contract_violations.append(entry)

    async def _serve_ghl(self, operation: str, handler: Handler, request: Request) -> tuple[Answer, Location | None]:
        authorization = request.headers.get("authorization", "")
        token = authorization[7:].strip() if authorization.lower().startswith("bearer ") else None
        location = self.state.location_for_token(token)
        self._record(location, operation)
        answer = await self._pipeline(operation, handler, request, location, token)
        self._record(location, operation, answer.status)
        return answer, location

    async def _pipeline(self, operation: str, handler: Handler, request: Request, location: Location | None,
                        token: str | None) -> Answer:
        if location is None:
            return _unauthorized("Invalid JWT" if token else "Missing Authorization header: Bearer token")
        # Latency first: the server counts a request when it arrives, the answer takes as long again.
        await asyncio.sleep(self.state.latency_seconds(location))
        now = time.monotonic()
        faults = location.faults
        path = request.url.path
        if faults.applies_to(path) and faults.take("rate_limit", location.rng):
            location.stats.injected["rate_limit"] += 1
            return self._too_many(location, faults.retry_after_seconds, remaining_zero=True)
        verdict = location.rate_limit.admit(now)
        if not verdict.allowed:
            return self._too_many(location, None)
        if faults.applies_to(path) and faults.take("error", location.rng):
            location.stats.injected["error"] += 1
            return _error(faults.error_status, "Internal Server Error (injected by the sandbox)")

        body = await request.body()
        checked = contract.CheckedRequest(
            family=contract.family_of(path) or "contacts", method=request.method.lower(), path=path,
            query=dict(request.query_params), headers=dict(request.headers), body=body,
            content_type=request.headers.get("content-type", JSON))
        errors = contract.request_errors(checked)
        if errors:
            self._violation(location, "request", operation, errors)
            return _error(422, errors[:5], "Unprocessable Entity")
        payload: dict[str, Any] = {}
        if body:
            try:
                payload = json.loads(body)
            except ValueError:
                return _error(400, "Body is not valid JSON", "Bad Request")
        named = payload.get("locationId") if isinstance(payload, dict) else None
        named = named or request.path_params.get("location_id") or request.query_params.get("locationId")
        if named and named != location.id:
            return _unauthorized("The token does not have access to this location.")
        try:
            answer = await handler(location, request, payload if isinstance(payload, dict) else {})
        except SandboxRequestError as exc:
            answer = _error(exc.status, exc.message if exc.status != 422 else [exc.message],
                            "Unprocessable Entity" if exc.status == 422 else "Bad Request")
        problems = contract.response_errors(checked, answer.status, answer.body, answer.content_type)
        if problems:
            self._violation(location, "response", operation, problems)
        if faults.applies_to(path) and faults.take("hang", location.rng):
            location.stats.injected["hang"] += 1
            await asyncio.sleep(faults.hang_seconds)  # the work is done; the answer comes too late
        return answer

    def _too_many(self, location: Location, retry_after: float | None, remaining_zero: bool = False) -> Answer:
        location.stats.rate_limited_sent += 1
        self.state.stats.rate_limited_sent += 1
        answer = _error(429, "Too Many Requests", "Too Many Requests")
        if retry_after is not None:
            answer.headers["Retry-After"] = f"{retry_after:g}"
        if remaining_zero:  # a storm: as if another consumer had spent the window
            answer.headers["X-RateLimit-Remaining"] = "0"
        return answer

    # ---- GHL handlers ----------------------------------------------------------------------------------

    async def upsert_contact(self, location: Location, request: Request, body: dict) -> Answer:
        is_new, contact = location.upsert_contact(body)
        return Answer(200, {"new": is_new, "contact": location.render_contact(contact), "traceId": new_id(24)})

    async def get_contact(self, location: Location, request: Request, body: dict) -> Answer:
        contact = location.contacts.get(request.path_params["contact_id"])
        if contact is None:
            return _error(400, "Contact not found", "Bad Request")
        return Answer(200, {"contact": location.render_contact(contact)})

    async def search_contacts(self, location: Location, request: Request, body: dict) -> Answer:
        if not body.get("locationId"):
            raise SandboxRequestError(400, "locationId is required")
        return Answer(200, location.search_contacts(body))

    async def get_location(self, location: Location, request: Request, body: dict) -> Answer:
        # the pipeline already refused a token of another location (401)
        return Answer(200, {"location": {"id": location.id, "name": location.name,
                                         "timezone": location.timezone, "country": "US"}})

    async def list_custom_fields(self, location: Location, request: Request, body: dict) -> Answer:
        model = request.query_params.get("model")
        fields = [f for f in location.custom_fields if model in (None, "all") or f["model"] == model]
        return Answer(200, {"customFields": fields})

    async def export_messages(self, location: Location, request: Request, body: dict) -> Answer:
        return Answer(200, location.export_messages(dict(request.query_params)))

    def _media(self, location: Location) -> LocationMedia:
        return self.media.setdefault(location.id, LocationMedia())

    async def get_recording(self, location: Location, request: Request, body: dict) -> Answer:
        message_id = request.path_params["message_id"]
        recording = location.recordings.get(message_id)
        media = self._media(location)
        if recording is None or not media.recording_ready(message_id):
            return _error(422, ["No recording found for this message"], "Unprocessable Entity")
        return Answer(200, media.audio(message_id, recording), "audio/x-wav",
                      {"Content-Disposition": "attachment; filename=audio.wav"})

    async def get_transcription(self, location: Location, request: Request, body: dict) -> Answer:
        message_id = request.path_params["message_id"]
        if message_id not in location.messages:
            return _error(400, "Message not found", "Bad Request")
        media = self._media(location)
        media.arrived.setdefault(message_id, time.monotonic())
        if not media.transcript_ready(message_id):
            return Answer(200, [])  # what GHL answers while it has not transcribed the call yet
        return Answer(200, location.transcriptions.get(message_id, []))

    # ---- admin -------------------------------------------------------------------------------------------

    def _location(self, request: Request) -> Location:
        location = self.state.locations.get(request.path_params["location_id"])
        if location is None:
            raise SandboxRequestError(404, f"no sandbox location {request.path_params['location_id']!r}")
        return location

    @staticmethod
    async def _json_body(request: Request) -> dict:
        body = await request.body()
        if not body:
            return {}
        data = json.loads(body)
        if not isinstance(data, dict):
            raise SandboxRequestError(400, "the body must be a JSON object")
        return data

    @staticmethod
    def _admin(coroutine):
        async def wrapped(self, request: Request) -> Response:
            try:
                return JSONResponse(await coroutine(self, request))
            except SandboxRequestError as exc:
                return JSONResponse({"error": exc.message}, status_code=exc.status)
            except (ValueError, TypeError, KeyError) as exc:
                return JSONResponse({"error": f"{type(exc).__name__}: {exc}"}, status_code=400)
        return wrapped

    @_admin
    async def admin_health(self, request: Request) -> dict:
        return {"ok": True, "service": "ghl-sandbox", "locations": len(self.state.locations),
                "known_doc_bugs": list(contract.KNOWN_DOC_BUGS)}

    @_admin
    async def admin_global_stats(self, request: Request) -> dict:
        return self.state.stats.as_dict()

    @_admin
    async def admin_location(self, request: Request) -> dict:
        if request.method == "GET":
            location = self._location(request)
        else:
            location = self.state.upsert_location(request.path_params["location_id"], await self._json_body(request))
        return {**location.summary(), "token": location.token}

    @_admin
    async def admin_seed(self, request: Request) -> dict:
        location = self._location(request)
        body = await self._json_body(request)
        started = time.perf_counter()
        seeded = {"contacts": location.seed_contacts(int(body.get("contacts", 0)),
                                                     with_custom_fields=body.get("with_custom_fields", True))}
        seeded.update(location.seed_calls(int(body.get("calls", 0)),
                                          voicemail_share=float(body.get("voicemail_share", 0.1))))
        added = [location.add_contact(record)["id"] for record in body.get("contact_records") or []]
        messages = [location.add_message(record.get("message", record),
                                         recording=record["recording"].encode() if record.get("recording") else None,
                                         transcription=record.get("transcription"))["id"]
                    for record in body.get("call_records") or []]
        return {**seeded, "contact_ids": added, "message_ids": messages,
                "seconds": round(time.perf_counter() - started, 3), "total_contacts": len(location.contacts),
                "total_messages": len(location.messages)}

    @_admin
    async def admin_contacts(self, request: Request) -> dict:
        location = self._location(request)
        offset = int(request.query_params.get("offset", 0))
        limit = int(request.query_params.get("limit", 1000))
        keys = location.order[offset:offset + limit]
        return {"contacts": [location.render_contact(location.contacts[key[1]]) for key in keys],
                "total": len(location.contacts)}

    @_admin
    async def admin_stats(self, request: Request) -> dict:
        location = self._location(request)
        return {**location.stats.as_dict(), "location": location.summary(),
                "rate_limit": location.rate_limit.headers(time.monotonic())}

    @_admin
    async def admin_faults(self, request: Request) -> dict:
        location = self._location(request)
        body = await self._json_body(request)
        known = set(Faults.__dataclass_fields__)
        unknown = sorted(set(body) - known)
        if unknown:
            raise SandboxRequestError(400, f"unknown fault settings {unknown}; known: {sorted(known)}")
        location.faults = Faults(**body)
        return {"faults": body}

    @_admin
    async def admin_reset(self, request: Request) -> dict:
        location = self._location(request)
        location.reset()
        self.media.pop(location.id, None)
        return {"reset": location.id}

    @_admin
    async def admin_media(self, request: Request) -> dict:
        """GET: the location's media settings and request counts; PUT: change settings (media.py)."""
        media = self._media(self._location(request))
        if request.method == "GET":
            return media.as_dict()
        return media.configure(await self._json_body(request))

    @_admin
    async def admin_media_calls(self, request: Request) -> dict:
        """Add call messages with media: {"calls": [{"message": {...}, "transcription": [...],
        "recording_bytes": n}]}; a message's id may be given (a webhook's callId). The transcript delay of
        each counts from now."""
        location = self._location(request)
        media = self._media(location)
        ids = []
        for record in (await self._json_body(request)).get("calls") or []:
            message = dict(record.get("message") or {})
            message.setdefault("id", new_id())
            size = record.get("recording_bytes")
            added = location.add_message(message, transcription=record.get("transcription"),
                                         recording=wav_of_size(int(size), message["id"]) if size else None)
            media.arrived[added["id"]] = time.monotonic()
            ids.append(added["id"])
        return {"message_ids": ids}

    async def admin_media_recording(self, request: Request) -> Response:
        """The exact bytes the recording endpoint serves for a message once ready (for byte-for-byte checks)."""
        location = self.state.locations.get(request.path_params["location_id"])
        message_id = request.path_params["message_id"]
        stored = location.recordings.get(message_id) if location else None
        if stored is None:
            return JSONResponse({"error": "no such recording"}, status_code=404)
        return Response(self._media(location).audio(message_id, stored), media_type="audio/x-wav")


def create_app(**settings) -> Starlette:
    return GhlSandbox(**settings).app
