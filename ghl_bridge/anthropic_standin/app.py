"""The Anthropic API stand-in as an ASGI app (Starlette): the Messages and Message Batches endpoints, /_admin/.

Every API request goes through one pipeline (`_serve`):
  latency (admin) -> request-id -> authenticate (`x-api-key` or `Authorization: Bearer`, a key of
  ANTHROPIC_STANDIN_API_KEYS, else 401) -> `anthropic-version` present as YYYY-MM-DD (else 400) -> the handler.
POST /v1/messages then: body checked (checks.py: 400, or 404 for an unknown model) -> an injected fault, if one is
queued (429 with retry-after, 529) -> the key's rate limits on a sliding 60 s window (requests, input tokens,
output tokens: 429 with retry-after = seconds until the window frees enough) -> the deterministic answer
(model.py; an injected "invalid", "schema_violation" or "refusal" changes it) -> counted in the window.
Every API answer carries `request-id` and, once the key is known, anthropic-ratelimit-{requests,input-tokens,
output-tokens}-{limit,remaining,reset} (reset: RFC 3339, when the window is empty again).

Rate limits: output tokens are counted when an answer is made (the window holds what was produced); a request is
refused while the window's output tokens are at the limit. Batch endpoints are not counted in these windows (the
real API limits batches separately) but carry the headers.

Batches: created `in_progress`; a batch ends at the first access (GET, list, results, cancel) at least
`batch_delay` seconds after creation (default 0: the first GET after creation ends it), or when the admin ends it.
Ending answers every request like POST /v1/messages (same checks: an invalid request is an `errored` result with
invalid_request_error; no faults, no rate limits; usage.service_tier "batch"), unless an outcome was set for its
custom_id (admin): "expired", "errored" (api_error), "canceled", or "invalid"/"schema_violation"/"refusal" (a
succeeded result with that answer); an outcome applies once, to the next batch that ends with that custom_id. A
canceled batch (`canceling`) ends at the next access with every request `canceled`. Results: JSONL at
`results_url` (this server's /v1/messages/batches/{id}/results), in request order.

Faults (admin, a queue consumed by POST /v1/messages answers in order): "429" (rate_limit_error, retry-after S,
default 1), "529" (overloaded_error), "invalid" (text that is not JSON), "schema_violation" (JSON that violates
the schema: the first required property missing), "refusal" (stop_reason "refusal", stop_details of type
refusal, a short non-JSON text). Latency (ms) delays every API answer.

The server never logs or stores an API key: the request log (admin) holds time, method, path, model, status,
request id, tokens, custom ids, and per transcript a sha256 and its first 40 characters.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import re
import secrets
import string
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ghl_bridge.anthropic_standin import checks, model

WINDOW_SECONDS = 60.0
DEFAULT_LIMITS = {"requests_per_minute": 4_000, "input_tokens_per_minute": 2_000_000,
                  "output_tokens_per_minute": 400_000}
FAULT_KINDS = ("429", "529", "invalid", "schema_violation", "refusal")
BATCH_OUTCOMES = ("expired", "errored", "canceled", "invalid", "schema_violation", "refusal")
CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}$")
MAX_BATCH_REQUESTS = 100_000
REQUEST_LOG_SIZE = 100_000


def new_id(prefix: str, length: int = 24) -> str:
    alphabet = string.ascii_letters + string.digits
    return prefix + "".join(secrets.choice(alphabet) for _ in range(length))


def rfc3339(moment: float) -> str:
    return datetime.fromtimestamp(moment, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


class ApiError(Exception):
    def __init__(self, status: int, error_type: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.error_type, self.message = status, error_type, message
        self.headers = headers or {}


@dataclass
class Window:
    """One key's answers of the last 60 s: (time, input tokens, output tokens)."""
    entries: deque = field(default_factory=deque)

    def trim(self, now: float) -> None:
        while self.entries and self.entries[0][0] <= now - WINDOW_SECONDS:
            self.entries.popleft()

    def used(self, index: int) -> int:
        return len(self.entries) if index == 0 else sum(entry[index] for entry in self.entries)

    def wait_until_fits(self, now: float, index: int, limit: int, extra: int) -> float:
        """Seconds until the window has room (requests: fewer than the limit; tokens: used + extra within it and
        not already at the limit) as the oldest entries leave it."""
        def fits(total: int) -> bool:
            return total < limit and (index == 0 or total + extra <= limit)

        total = self.used(index)
        if fits(total):
            return 0.0
        for entry in self.entries:
            total -= 1 if index == 0 else entry[index]
            if fits(total):
                return entry[0] + WINDOW_SECONDS - now
        return WINDOW_SECONDS


@dataclass
class Batch:
    id: str
    created_at: float
    requests: list[dict]
    status: str = "in_progress"
    ended_at: float | None = None
    cancel_initiated_at: float | None = None
    end_requested: bool = False
    results: list[dict] | None = None


class AnthropicStandin:
    def __init__(self, *, api_keys: set[str] | None = None, latency_ms: float = 0.0, batch_delay_seconds: float = 0.0,
                 limits: dict[str, int] | None = None):
        self.api_keys = set(api_keys or ())
        self.initial = {"latency_ms": latency_ms, "batch_delay_seconds": batch_delay_seconds,
                        "limits": {**DEFAULT_LIMITS, **(limits or {})}}
        self.reset()
        api = [
            Route("/v1/messages", self._api(self.create_message), methods=["POST"]),
            Route("/v1/messages/batches", self._api(self.create_batch), methods=["POST"]),
            Route("/v1/messages/batches", self._api(self.list_batches), methods=["GET"]),
            Route("/v1/messages/batches/{batch_id}", self._api(self.retrieve_batch), methods=["GET"]),
            Route("/v1/messages/batches/{batch_id}", self._api(self.delete_batch), methods=["DELETE"]),
            Route("/v1/messages/batches/{batch_id}/results", self._api(self.batch_results), methods=["GET"]),
            Route("/v1/messages/batches/{batch_id}/cancel", self._api(self.cancel_batch), methods=["POST"]),
        ]
        admin = [
            Route("/_admin/health", self.admin_health, methods=["GET"]),
            Route("/_admin/reset", self.admin_reset, methods=["POST"]),
            Route("/_admin/settings", self.admin_settings, methods=["GET"]),
            Route("/_admin/limits", self.admin_limits, methods=["PUT"]),
            Route("/_admin/latency", self.admin_latency, methods=["PUT"]),
            Route("/_admin/faults", self.admin_faults, methods=["POST", "DELETE"]),
            Route("/_admin/requests", self.admin_requests, methods=["GET"]),
            Route("/_admin/batch_delay", self.admin_batch_delay, methods=["PUT"]),
            Route("/_admin/batches/{batch_id}/end", self.admin_end_batch, methods=["POST"]),
            Route("/_admin/batch_outcomes/{custom_id}", self.admin_batch_outcome, methods=["PUT"]),
        ]
        self.app = Starlette(routes=api + admin)

    def reset(self) -> None:
        self.latency_ms = self.initial["latency_ms"]
        self.batch_delay = self.initial["batch_delay_seconds"]
        self.limits = dict(self.initial["limits"])
        self.faults: deque[dict] = deque()
        self.windows: dict[str, Window] = {}
        self.batches: dict[str, Batch] = {}
        self.outcomes: dict[str, str] = {}
        self.log: deque[dict] = deque(maxlen=REQUEST_LOG_SIZE)

    # ---- the pipeline --------------------------------------------------------------------------------

    def _api(self, handler):
        async def endpoint(request: Request) -> Response:
            if self.latency_ms:
                await asyncio.sleep(self.latency_ms / 1000)
            request_id = new_id("req_")
            entry: dict[str, Any] = {"time": rfc3339(time.time()), "method": request.method,
                                     "path": request.url.path, "request_id": request_id}
            key = None
            try:
                key, entry["auth"] = self._authenticate(request)
                version = request.headers.get("anthropic-version")
                if not version:
                    raise ApiError(400, "invalid_request_error", "anthropic-version: header is required")
                if not VERSION.match(version):
                    raise ApiError(400, "invalid_request_error", "anthropic-version: must be a date like 2023-06-01")
                entry["anthropic_version"] = version
                status, body, headers = await handler(request, key, entry)
            except ApiError as error:
                status, headers = error.status, dict(error.headers)
                body = {"type": "error", "error": {"type": error.error_type, "message": error.message},
                        "request_id": request_id}
            if key is not None:
                headers = {**self._rate_headers(key, time.time()), **headers}
            headers["request-id"] = request_id
            entry["status"] = status
            self.log.append(entry)
            if isinstance(body, bytes):
                return Response(body, status_code=status, headers=headers, media_type="application/x-jsonl")
            return JSONResponse(body, status_code=status, headers=headers)
        return endpoint

    def _authenticate(self, request: Request) -> tuple[str, str]:
        header = request.headers.get("x-api-key")
        how = "x-api-key"
        if header is None:
            authorization = request.headers.get("authorization", "")
            if authorization.lower().startswith("bearer "):
                header, how = authorization[7:].strip(), "bearer"
        if not header:
            raise ApiError(401, "authentication_error", "x-api-key header is required")
        if not any(secrets.compare_digest(header.encode(), known.encode()) for known in self.api_keys):
            raise ApiError(401, "authentication_error", "invalid x-api-key")
        return header, how

    def _rate_headers(self, key: str, now: float) -> dict[str, str]:
        window = self.windows.setdefault(key, Window())
        window.trim(now)
        empty_at = rfc3339((window.entries[-1][0] if window.entries else now) + (WINDOW_SECONDS if window.entries else 0))
        headers = {}
        for index, (name, limit_name) in enumerate((("requests", "requests_per_minute"),
                                                    ("input-tokens", "input_tokens_per_minute"),
                                                    ("output-tokens", "output_tokens_per_minute"))):
            limit = self.limits[limit_name]
            headers[f"anthropic-ratelimit-{name}-limit"] = str(limit)
            headers[f"anthropic-ratelimit-{name}-remaining"] = str(max(0, limit - window.used(index)))
            headers[f"anthropic-ratelimit-{name}-reset"] = empty_at
        return headers

    async def _json(self, request: Request) -> Any:
        raw = await request.body()
        try:
            return json.loads(raw)
        except ValueError:
            raise ApiError(400, "invalid_request_error", "The request body is not valid JSON") from None

    # ---- POST /v1/messages ----------------------------------------------------------------------------

    async def create_message(self, request: Request, key: str, entry: dict):
        params = await self._json(request)
        if isinstance(params, dict):
            entry["model"] = params.get("model") if isinstance(params.get("model"), str) else None
            entry.update(_transcript_fingerprint(params))
        problem = checks.check_message_params(params)
        if problem:
            raise ApiError(problem.status, problem.error_type, problem.message)
        fault = self.faults.popleft() if self.faults else None
        if fault:
            entry["fault"] = fault["kind"]
        if fault and fault["kind"] == "429":
            retry_after = fault.get("retry_after") or 1
            raise ApiError(429, "rate_limit_error", "Number of requests has exceeded your rate limit (injected by the "
                           "stand-in)", {"retry-after": str(math.ceil(retry_after))})
        if fault and fault["kind"] == "529":
            raise ApiError(529, "overloaded_error", "Overloaded")
        tokens_in = checks.input_tokens(params)
        now = time.time()
        self._admit(key, now, tokens_in)
        message = respond(params, kind=fault["kind"] if fault else None, service_tier="standard")
        self.windows[key].entries.append((now, tokens_in, message["usage"]["output_tokens"]))
        entry.update(input_tokens=tokens_in, output_tokens=message["usage"]["output_tokens"],
                     stop_reason=message["stop_reason"])
        return 200, message, {}

    def _admit(self, key: str, now: float, tokens_in: int) -> None:
        window = self.windows.setdefault(key, Window())
        window.trim(now)
        for index, name, extra, what in ((0, "requests_per_minute", 1, "requests"),
                                         (1, "input_tokens_per_minute", tokens_in, "input tokens"),
                                         (2, "output_tokens_per_minute", 0, "output tokens")):
            limit = self.limits[name]
            wait = window.wait_until_fits(now, index, limit, extra)
            if extra > limit and index == 1:
                wait = WINDOW_SECONDS
            if wait > 0:
                raise ApiError(429, "rate_limit_error",
                               f"This request would exceed your organization's rate limit of {limit} {what} per "
                               f"minute. Please slow down.", {"retry-after": str(max(1, math.ceil(wait)))})

    # ---- batches ------------------------------------------------------------------------------------------

    async def create_batch(self, request: Request, key: str, entry: dict):
        body = await self._json(request)
        requests = body.get("requests") if isinstance(body, dict) else None
        if isinstance(body, dict):
            extra = sorted(set(body) - {"requests"})
            if extra:
                raise ApiError(400, "invalid_request_error", f"{extra[0]}: Extra inputs are not permitted")
        if not isinstance(requests, list) or not requests:
            raise ApiError(400, "invalid_request_error", "requests: at least one request is required")
        if len(requests) > MAX_BATCH_REQUESTS:
            raise ApiError(400, "invalid_request_error", f"requests: at most {MAX_BATCH_REQUESTS} requests per batch")
        seen: set[str] = set()
        for index, item in enumerate(requests):
            if not isinstance(item, dict) or not isinstance(item.get("params"), dict):
                raise ApiError(400, "invalid_request_error", f"requests.{index}.params: Field required")
            custom_id = item.get("custom_id")
            if not isinstance(custom_id, str) or not CUSTOM_ID.match(custom_id):
                raise ApiError(400, "invalid_request_error",
                               f"requests.{index}.custom_id: must be 1-64 characters of letters, digits, _ and -")
            if custom_id in seen:
                raise ApiError(400, "invalid_request_error", f"requests.{index}.custom_id: duplicate '{custom_id}'")
            seen.add(custom_id)
        batch = Batch(id=new_id("msgbatch_"), created_at=time.time(),
                      requests=[{"custom_id": r["custom_id"], "params": r["params"]} for r in requests])
        self.batches[batch.id] = batch
        entry.update(batch_id=batch.id, custom_ids=[r["custom_id"] for r in requests],
                     transcripts={r["custom_id"]: _transcript_fingerprint(r["params"]) for r in requests})
        return 200, self._render(batch, request), {}

    def _batch(self, batch_id: str) -> Batch:
        batch = self.batches.get(batch_id)
        if batch is None:
            raise ApiError(404, "not_found_error", f"message batch {batch_id} not found")
        self._advance(batch)
        return batch

    def _advance(self, batch: Batch) -> None:
        """End the batch when its time has come (see the module docstring)."""
        if batch.status == "ended":
            return
        if batch.status == "canceling":
            batch.results = [{"custom_id": r["custom_id"], "result": {"type": "canceled"}} for r in batch.requests]
        elif batch.end_requested or time.time() >= batch.created_at + self.batch_delay:
            batch.results = [self._batch_result(r) for r in batch.requests]
        else:
            return
        batch.status, batch.ended_at = "ended", time.time()

    def _batch_result(self, item: dict) -> dict:
        custom_id, params = item["custom_id"], item["params"]
        outcome = self.outcomes.pop(custom_id, None)
        if outcome in {"expired", "canceled"}:
            return {"custom_id": custom_id, "result": {"type": outcome}}
        if outcome == "errored":
            return {"custom_id": custom_id, "result": {"type": "errored", "error": {
                "type": "error", "error": {"type": "api_error", "message": "Internal server error (injected by the "
                                                                           "stand-in)"},
                "request_id": new_id("req_")}}}
        problem = checks.check_message_params(params)
        if problem is None and params.get("stream"):
            problem = checks.invalid("stream: not supported in a batch")
        if problem:
            return {"custom_id": custom_id, "result": {"type": "errored", "error": {
                "type": "error", "error": {"type": problem.error_type, "message": problem.message},
                "request_id": new_id("req_")}}}
        return {"custom_id": custom_id, "result": {"type": "succeeded",
                                                   "message": respond(params, kind=outcome, service_tier="batch")}}

    def _render(self, batch: Batch, request: Request) -> dict:
        counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        if batch.results is None:
            counts["processing"] = len(batch.requests)
        else:
            for line in batch.results:
                counts[line["result"]["type"]] += 1
        base = str(request.base_url).rstrip("/")
        return {
            "id": batch.id, "type": "message_batch", "processing_status": batch.status, "request_counts": counts,
            "created_at": rfc3339(batch.created_at), "expires_at": rfc3339(batch.created_at + 24 * 3600),
            "ended_at": rfc3339(batch.ended_at) if batch.ended_at else None,
            "cancel_initiated_at": rfc3339(batch.cancel_initiated_at) if batch.cancel_initiated_at else None,
            "archived_at": None,
            "results_url": f"{base}/v1/messages/batches/{batch.id}/results" if batch.status == "ended" else None,
        }

    async def retrieve_batch(self, request: Request, key: str, entry: dict):
        batch = self._batch(request.path_params["batch_id"])
        entry["batch_id"] = batch.id
        return 200, self._render(batch, request), {}

    async def list_batches(self, request: Request, key: str, entry: dict):
        try:
            limit = int(request.query_params.get("limit", 20))
        except ValueError:
            raise ApiError(400, "invalid_request_error", "limit: Input should be a valid integer") from None
        if not 1 <= limit <= 1000:
            raise ApiError(400, "invalid_request_error", "limit: Input should be between 1 and 1000")
        ordered = sorted(self.batches.values(), key=lambda b: (b.created_at, b.id), reverse=True)
        before, after = request.query_params.get("before_id"), request.query_params.get("after_id")
        ids = [b.id for b in ordered]
        if after in ids:
            ordered = ordered[ids.index(after) + 1:]
        elif before in ids:
            ordered = ordered[:ids.index(before)][-limit:]
        page = ordered[:limit]
        for batch in page:
            self._advance(batch)
        data = [self._render(b, request) for b in page]
        return 200, {"data": data, "has_more": len(ordered) > len(page),
                     "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None}, {}

    async def batch_results(self, request: Request, key: str, entry: dict):
        batch = self._batch(request.path_params["batch_id"])
        entry["batch_id"] = batch.id
        if batch.status != "ended" or batch.results is None:
            raise ApiError(400, "invalid_request_error", f"message batch {batch.id} has not ended: no results yet")
        return 200, "".join(json.dumps(line) + "\n" for line in batch.results).encode(), {}

    async def cancel_batch(self, request: Request, key: str, entry: dict):
        batch = self._batch(request.path_params["batch_id"])
        entry["batch_id"] = batch.id
        if batch.status == "in_progress":
            batch.status, batch.cancel_initiated_at = "canceling", time.time()
        return 200, self._render(batch, request), {}

    async def delete_batch(self, request: Request, key: str, entry: dict):
        batch = self._batch(request.path_params["batch_id"])
        if batch.status != "ended":
            raise ApiError(400, "invalid_request_error", "a batch that has not ended cannot be deleted; cancel it first")
        del self.batches[batch.id]
        return 200, {"id": batch.id, "type": "message_batch_deleted"}, {}

    # ---- admin ---------------------------------------------------------------------------------------------

    async def admin_health(self, request: Request) -> Response:
        return JSONResponse({"ok": True, "keys": len(self.api_keys)})

    def _settings(self) -> dict:
        return {"limits": self.limits, "latency_ms": self.latency_ms, "batch_delay_seconds": self.batch_delay,
                "faults": list(self.faults), "batch_outcomes": dict(self.outcomes)}

    async def admin_settings(self, request: Request) -> Response:
        return JSONResponse(self._settings())

    async def admin_reset(self, request: Request) -> Response:
        self.reset()
        return JSONResponse(self._settings())

    async def _admin_body(self, request: Request) -> dict:
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise ValueError("the body must be a JSON object")
        return body

    async def admin_limits(self, request: Request) -> Response:
        body = await self._admin_body(request)
        for name in DEFAULT_LIMITS:
            value = body.get(name)
            if value is not None:
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    return JSONResponse({"error": f"{name} must be a positive integer"}, status_code=400)
                self.limits[name] = value
        return JSONResponse(self._settings())

    async def admin_latency(self, request: Request) -> Response:
        body = await self._admin_body(request)
        value = body.get("ms")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            return JSONResponse({"error": "ms must be a number >= 0"}, status_code=400)
        self.latency_ms = float(value)
        return JSONResponse(self._settings())

    async def admin_faults(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.faults.clear()
            return JSONResponse(self._settings())
        body = await self._admin_body(request)
        kind, count, retry_after = str(body.get("kind")), body.get("count", 1), body.get("retry_after")
        if kind not in FAULT_KINDS:
            return JSONResponse({"error": f"kind must be one of {', '.join(FAULT_KINDS)}"}, status_code=400)
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            return JSONResponse({"error": "count must be a positive integer"}, status_code=400)
        if retry_after is not None and (isinstance(retry_after, bool) or not isinstance(retry_after, (int, float))
                                        or retry_after < 0):
            return JSONResponse({"error": "retry_after must be a number of seconds >= 0"}, status_code=400)
        self.faults.extend({"kind": kind, "retry_after": retry_after} for _ in range(count))
        return JSONResponse(self._settings())

    async def admin_requests(self, request: Request) -> Response:
        return JSONResponse({"requests": list(self.log)})

    async def admin_batch_delay(self, request: Request) -> Response:
        body = await self._admin_body(request)
        value = body.get("seconds")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            return JSONResponse({"error": "seconds must be a number >= 0"}, status_code=400)
        self.batch_delay = float(value)
        return JSONResponse(self._settings())

    async def admin_end_batch(self, request: Request) -> Response:
        batch = self.batches.get(request.path_params["batch_id"])
        if batch is None:
            return JSONResponse({"error": "no such batch"}, status_code=404)
        batch.end_requested = True
        self._advance(batch)
        return JSONResponse(self._render(batch, request))

    async def admin_batch_outcome(self, request: Request) -> Response:
        body = await self._admin_body(request)
        outcome = body.get("outcome")
        if outcome not in BATCH_OUTCOMES:
            return JSONResponse({"error": f"outcome must be one of {', '.join(BATCH_OUTCOMES)}"}, status_code=400)
        self.outcomes[request.path_params["custom_id"]] = outcome
        return JSONResponse(self._settings())


# ---- the answer -------------------------------------------------------------------------------------------------

def respond(params: dict, *, kind: str | None, service_tier: str) -> dict:
    """The Message for checked params: the model's analysis shaped by output_config.format.schema (or plain text)."""
    prompt = model.parse_prompt(checks.user_text(params))
    analysis = model.analyse(prompt)
    schema = ((params.get("output_config") or {}).get("format") or {}).get("schema")
    if schema is not None:
        value = model.fill(schema, analysis.known(), started_at=prompt.started_at)
        text = json.dumps(value, ensure_ascii=False)
    else:
        text = analysis.summary
    stop_reason, stop_details = "end_turn", None
    if kind == "invalid":
        text = "Here is the analysis you asked for: " + text[: max(1, len(text) // 2)]
    elif kind == "schema_violation":
        text = json.dumps(_violating(schema, json.loads(text)) if schema is not None else {"unexpected": True})
    elif kind == "refusal":
        text = "I can't help with analysing this conversation."
        stop_reason = "refusal"
        stop_details = {"type": "refusal", "category": None, "explanation": None}
    output_tokens = max(1, checks.text_tokens(text))
    if output_tokens > params["max_tokens"]:
        text, output_tokens, stop_reason = text[: params["max_tokens"] * 4], params["max_tokens"], "max_tokens"
    return {
        "id": new_id("msg_"), "type": "message", "role": "assistant", "model": params["model"],
        "content": [{"type": "text", "text": text}],
        "stop_reason": stop_reason, "stop_sequence": None, "stop_details": stop_details,
        "usage": {"input_tokens": checks.input_tokens(params), "output_tokens": output_tokens,
                  "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                  "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
                  "service_tier": service_tier},
    }


def _violating(schema: dict, value: Any) -> Any:
    """The answer without its first required property (or with a property the schema does not allow)."""
    if isinstance(value, dict):
        required = schema.get("required") or list(value)
        if required:
            return {k: v for k, v in value.items() if k != required[0]}
        return {**value, "unexpected_property": True}
    return {"unexpected": value}


def _transcript_fingerprint(params: dict) -> dict:
    """A sha256 of the transcript (the prompt's <transcript> part, else the user text) and its first 40 characters."""
    try:
        text = checks.user_text(params)
    except (AttributeError, TypeError):
        return {}
    found = re.search(r"<transcript>\s*(.*?)\s*</transcript>", text, re.S)
    transcript = found.group(1) if found else text
    return {"transcript_sha256": hashlib.sha256(transcript.encode()).hexdigest(), "transcript_head": transcript[:40]}


def create_app(**settings) -> Starlette:
    keys = {k.strip() for k in os.environ.get("ANTHROPIC_STANDIN_API_KEYS", "").split(",") if k.strip()}
    return AnthropicStandin(api_keys=keys, **settings).app
