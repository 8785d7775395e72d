"""Anthropic's Messages API through the official `anthropic` SDK (AsyncAnthropic): one call's analysis, Message
Batches, and pacing by Anthropic's rate-limit headers. Imported only by the analysis paths (never the webhook).

Pacing (RateLimitPacer): Anthropic limits an organisation per model on requests, input tokens and output tokens per
minute (token buckets refilled continuously), and says where each stands on every answer
(`anthropic-ratelimit-{requests,input-tokens,output-tokens}-{limit,remaining,reset}`). One pacer serves every
location of a run (the limit is the organisation's, not a location's): before a request it reserves one request,
the estimated input tokens and the expected output tokens in a local copy of the three buckets, waiting until they
hold that much; every answer's headers correct the copy downwards (the server's word wins when it is lower), and
the answer's usage corrects the estimate. A 429 or 529 holds every request until its `retry-after` has passed.

The SDK's own retries are off (max_retries=0): a retry here goes through the pacer like any request, so no request
is sent before a `retry-after` ends.

Errors: 401/403 -> AnthropicUnauthorized (the run stops, the key is never echoed); 404 -> AnthropicConfigError
(model unknown); other 4xx -> AnthropicRefused (this call fails with the reason); 429/529/5xx/timeouts after
MAX_RETRIES -> AnthropicUnavailable (the call is retried on a later run).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from shared import errors
from shared.logs import get_logger, register_secret

log = get_logger("adapters.anthropic")

MAX_RETRIES = 6  # 429/529/5xx/timeouts per request before the call is given back for a later run
BACKOFF_CAP_SECONDS = 60.0
_DIMENSIONS = ("requests", "input-tokens", "output-tokens")


class AnthropicUnauthorized(errors.PermanentError):
    status = 502
    code = "anthropic_unauthorized"


class AnthropicConfigError(errors.PermanentError):
    status = 502
    code = "anthropic_configuration"


class AnthropicRefused(errors.PermanentError):
    status = 502
    code = "anthropic_refused"


class AnthropicUnavailable(errors.TransientError):
    status = 503
    code = "anthropic_unavailable"


@dataclass
class Answer:
    text: str | None
    stop_reason: str | None
    input_tokens: int
    output_tokens: int
    model: str | None


@dataclass
class _Bucket:
    """One limit as the answers describe it: what is left now and when it is whole again."""

    limit: float | None = None
    level: float | None = None  # what we may still spend, per the latest answer less what we reserved since
    full_at: float | None = None  # clock() time the headers' `reset` names: the whole limit is available again
    refilled_at: float = float("-inf")  # when we last counted it whole (answers to requests sent before are stale)

    def refresh(self, now: float) -> None:
        if self.limit is not None and self.full_at is not None and now >= self.full_at:
            self.level, self.full_at, self.refilled_at = self.limit, None, now

    def wait_for(self, amount: float, now: float) -> float:
        """Seconds until `amount` is available (0 when it is, or when the limit is not known)."""
        if self.limit is None or self.level is None:
            return 0.0
        if self.level >= min(amount, self.limit):  # a request larger than the whole limit waits for a full one
            return 0.0
        return max(0.05, self.full_at - now) if self.full_at is not None else 1.0


@dataclass
class PacerStats:
    waits: int = 0
    waited_seconds: float = 0.0
    rate_limited: int = 0  # 429 answers
    overloaded: int = 0  # 529 answers


@dataclass
class RateLimitPacer:
    """Requests, input and output tokens per minute, for every request of a run (see the module docstring).

    Only what the headers say is relied on: `remaining` is spendable now, and by `reset` the whole limit is back.
    How the budget comes back in between (a token bucket refilled continuously, as Anthropic documents, or a
    sliding window) is not assumed: a request that does not fit waits for `reset`, then the limit is spent again.
    Either way that is the limit per minute on average, and no request is sent that the headers say will not fit.
    Nothing is sent between spending the budget and `reset` (a sliding window's reset is when its last entry
    leaves it: a request sent meanwhile would push it a minute later).
    """

    clock: Callable[[], float] = time.monotonic
    buckets: dict[str, _Bucket] = field(default_factory=lambda: {d: _Bucket() for d in _DIMENSIONS})
    hold_until: float = 0.0
    stats: PacerStats = field(default_factory=PacerStats)
    chars_per_token: float = 3.0  # learned from usage: conservative until the first answer
    output_estimate: float = 700.0  # learned from usage
    reset_margin_seconds: float = 1.0  # `reset` is given to the second
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _known: asyncio.Event = field(default_factory=asyncio.Event)
    _probing: bool = False
    _learned: bool = False

    async def acquire(self, prompt_chars: int, max_tokens: int,
                      not_after: float | None = None) -> tuple[float, int, int]:
        """Wait until one request of `prompt_chars` characters fits, reserve it, and return (when it was granted,
        the input and output tokens reserved) for observe/settle. Until the first answer says what the limits are
        and what a token is, one request at a time. `not_after`: a clock() time after which the request must not
        start (its call's lease is ending): PacerTimeout, nothing reserved."""
        try:
            while not self._known.is_set():
                if not self._probing:
                    self._probing = True
                    return self.clock(), *self.estimates(prompt_chars, max_tokens)
                await asyncio.wait_for(self._known.wait(), _left(not_after, self.clock()))
            await asyncio.wait_for(self._lock.acquire(), _left(not_after, self.clock()))
        except asyncio.TimeoutError:
            raise PacerTimeout("the rate limit leaves no room before the call's lease ends") from None
        try:  # first come, first served: one waiter at a time holds the line
            input_tokens, output_tokens = self.estimates(prompt_chars, max_tokens)  # with what the answers taught
            needs = {"requests": 1.0, "input-tokens": float(input_tokens), "output-tokens": float(output_tokens)}
            while True:
                now = self.clock()
                wait = max(0.0, self.hold_until - now)
                for name, bucket in self.buckets.items():
                    bucket.refresh(now)
                    wait = max(wait, bucket.wait_for(needs[name], now))
                if not_after is not None and now + wait > not_after:
                    raise PacerTimeout("the rate limit leaves no room before the call's lease ends")
                if wait <= 0:
                    for name, bucket in self.buckets.items():
                        if bucket.level is not None:
                            bucket.level -= needs[name]
                    return now, input_tokens, output_tokens
                self.stats.waits += 1
                self.stats.waited_seconds += wait
                await asyncio.sleep(wait)
        finally:
            self._lock.release()

    def estimates(self, prompt_chars: int, max_tokens: int) -> tuple[int, int]:
        """(input tokens, output tokens) to reserve for a request: characters over the learned ratio; the learned
        answer length with a margin, at most max_tokens."""
        return (max(1, int(prompt_chars / max(self.chars_per_token, 0.5)) + 1),
                int(min(max_tokens, self.output_estimate * 1.2)))

    def observe(self, headers: Any, sent_at: float | None = None, *, release: bool = True) -> None:
        """An answer's rate-limit headers (of a request granted at `sent_at`): the limits, the remaining budget
        when lower than our copy, and when it is whole again."""
        now = self.clock()
        wall = time.time()
        for name, bucket in self.buckets.items():
            limit = _number(headers.get(f"anthropic-ratelimit-{name}-limit"))
            remaining = _number(headers.get(f"anthropic-ratelimit-{name}-remaining"))
            if limit is None or remaining is None:
                continue
            bucket.limit = limit
            if sent_at is not None and sent_at < bucket.refilled_at:
                continue  # about a window we already counted as whole again
            bucket.refresh(now)
            bucket.level = remaining if bucket.level is None else min(bucket.level, remaining)
            reset = _timestamp(headers.get(f"anthropic-ratelimit-{name}-reset"))
            if reset is not None:  # the latest word on when it is whole again (answers may arrive out of order)
                full_at = now + max(0.0, reset - wall) + self.reset_margin_seconds
                bucket.full_at = full_at if bucket.full_at is None else max(bucket.full_at, full_at)
        if release:
            self._release_probe()

    def _release_probe(self) -> None:
        self._probing = False
        if not self._known.is_set():
            self._known.set()

    def settle(self, estimated_input: int, estimated_output: int, answer: Answer | None, prompt_chars: int,
               sent_at: float | None = None) -> None:
        """Charge what the request used beyond its reservation, and learn the estimates. What it used less is not
        credited back: spending it before `reset` would push a sliding window's `reset` (when it is empty again)
        later, and the next full limit with it."""
        if answer is None:
            return
        for name, estimate, actual in (("input-tokens", estimated_input, answer.input_tokens),
                                       ("output-tokens", estimated_output, answer.output_tokens)):
            bucket = self.buckets[name]
            stale = sent_at is not None and sent_at < bucket.refilled_at
            if bucket.level is not None and actual > estimate and not stale:
                bucket.level -= actual - estimate
        if answer.input_tokens > 0:
            ratio = prompt_chars / answer.input_tokens
            # the first answer replaces the guess; later ones move the average, leaning low (an underestimate of
            # tokens costs a 429 later, an overestimate only a little idle budget)
            self.chars_per_token = ratio if not self._learned else min(ratio, 0.8 * self.chars_per_token + 0.2 * ratio)
        if answer.output_tokens > 0:
            self.output_estimate = answer.output_tokens if not self._learned \
                else 0.8 * self.output_estimate + 0.2 * answer.output_tokens
        self._learned = True

    def hold(self, seconds: float) -> None:
        """No request before `seconds` from now (a 429/529's retry-after)."""
        self.hold_until = max(self.hold_until, self.clock() + seconds)
        self._release_probe()


def _timestamp(value: Any) -> float | None:
    """An RFC 3339 time as a Unix timestamp, or None."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


class PacerTimeout(Exception):
    """No request slot before the caller's `not_after`: the call is given back, nothing was sent."""


def _left(not_after: float | None, now: float) -> float | None:
    return None if not_after is None else max(0.0, not_after - now)


def _number(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def retry_after_seconds(headers: Any) -> float | None:
    """`retry-after-ms` / `retry-after` (seconds or an HTTP date), or None."""
    if headers is None:
        return None
    ms = _number(headers.get("retry-after-ms"))
    if ms is not None and ms >= 0:
        return ms / 1000.0
    raw = headers.get("retry-after")
    seconds = _number(raw)
    if seconds is not None:
        return max(0.0, seconds)
    if raw:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, (parsedate_to_datetime(raw) - datetime.now(timezone.utc)).total_seconds())
        except (TypeError, ValueError):
            return None
    return None


@dataclass
class ClientStats:
    requests: int = 0  # HTTP requests sent (retries included)
    answers: int = 0  # 200 answers to messages requests


class AnthropicClient:
    """One AsyncAnthropic client and one pacer for a run (every location)."""

    def __init__(self, *, api_key: str, base_url: str | None, timeout: float, max_in_flight: int,
                 pacer: RateLimitPacer | None = None, sleep=asyncio.sleep):
        import anthropic  # only the analysis paths pay for it

        register_secret(api_key)
        self._anthropic = anthropic
        self._client = anthropic.AsyncAnthropic(api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout)
        self.pacer = pacer or RateLimitPacer()
        self._in_flight = asyncio.Semaphore(max(1, max_in_flight))
        self._sleep = sleep
        self.stats = ClientStats()

    async def __aenter__(self) -> "AnthropicClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.close()

    # ---- one analysis ---------------------------------------------------------------------------------------

    async def create_message(self, params: dict[str, Any], *, not_after: float | None = None) -> Answer:
        """POST /v1/messages, paced; retried on 429/529/5xx/timeouts (never before a retry-after ends).
        `not_after` (pacer clock): no request starts later (PacerTimeout): the caller's lease is ending."""
        from shared.domain.call_analysis import request_chars

        prompt_chars = request_chars(params)
        for attempt in range(MAX_RETRIES + 1):
            granted, estimated_input, estimated_output = await self.pacer.acquire(prompt_chars, params["max_tokens"],
                                                                                  not_after)
            async with self._in_flight:
                self.stats.requests += 1
                try:
                    raw = await self._client.messages.with_raw_response.create(**params)
                except self._anthropic.APIStatusError as exc:
                    delay = self._failed(exc, attempt, granted)
                except (self._anthropic.APIConnectionError, self._anthropic.APITimeoutError) as exc:
                    self.pacer._release_probe()
                    if attempt == MAX_RETRIES:
                        raise AnthropicUnavailable(f"Anthropic could not be reached ({type(exc).__name__})") from None
                    delay = _backoff(attempt)
                else:
                    self.pacer.observe(raw.headers, granted, release=False)  # the first answer teaches tokens too
                    message = await raw.parse()
                    self.stats.answers += 1
                    answer = Answer(text=_first_text(message), stop_reason=message.stop_reason,
                                    input_tokens=int(message.usage.input_tokens or 0),
                                    output_tokens=int(message.usage.output_tokens or 0), model=message.model)
                    self.pacer.settle(estimated_input, estimated_output, answer, prompt_chars, granted)
                    self.pacer._release_probe()
                    return answer
            if delay > 0:  # a connection failure's backoff (429/529 wait in the pacer, for every request)
                await self._sleep(delay)
        raise AnthropicUnavailable("Anthropic's retries ran out")  # pragma: no cover - the loop raises first

    def _failed(self, exc, attempt: int, granted: float) -> float:
        """Classify an error answer: raise, or return the seconds to wait before the next attempt."""
        status = exc.status_code
        headers = exc.response.headers if exc.response is not None else {}
        self.pacer.observe(headers, granted)
        kind = _error_type(exc)
        if status in (401, 403):
            raise AnthropicUnauthorized(f"Anthropic refused the API key ({status} {kind}): check ANTHROPIC_API_KEY; "
                                        "the run stopped") from None
        if status == 404:
            raise AnthropicConfigError(f"Anthropic answered 404 ({kind}): check ANTHROPIC_MODEL and "
                                       "ANTHROPIC_BASE_URL") from None
        if status in (429, 529) or status >= 500 or status == 408:
            if status == 429:
                self.pacer.stats.rate_limited += 1
            elif status == 529:
                self.pacer.stats.overloaded += 1
            if attempt == MAX_RETRIES:
                raise AnthropicUnavailable(f"Anthropic answered {status} ({kind}) {attempt + 1} times") from None
            wait = retry_after_seconds(headers)
            if wait is None:
                wait = _backoff(attempt)
            self.pacer.hold(wait)  # every request of the run waits it out, not only this one
            log.warning("anthropic asked to wait", extra={"fields": {"status": status, "retry_after": wait}})
            return 0.0
        raise AnthropicRefused(f"Anthropic refused the request ({status} {kind}: {_error_message(exc)})") from None

    # ---- Message Batches ------------------------------------------------------------------------------------

    async def create_batch(self, requests: list[dict[str, Any]]) -> str:
        """POST /v1/messages/batches; returns the batch id. Not retried after a timeout (it may have been made)."""
        self.stats.requests += 1
        try:
            batch = await self._client.messages.batches.create(requests=requests)
        except self._anthropic.APIStatusError as exc:
            self._batch_failed(exc)
        except self._anthropic.APIConnectionError as exc:
            raise AnthropicUnavailable(f"Anthropic could not be reached ({type(exc).__name__})") from None
        return batch.id

    async def batch_status(self, batch_id: str) -> str:
        """The batch's processing_status: in_progress | canceling | ended."""
        self.stats.requests += 1
        try:
            batch = await self._client.messages.batches.retrieve(batch_id)
        except self._anthropic.APIStatusError as exc:
            self._batch_failed(exc)
        except self._anthropic.APIConnectionError as exc:
            raise AnthropicUnavailable(f"Anthropic could not be reached ({type(exc).__name__})") from None
        return batch.processing_status

    async def batch_results(self, batch_id: str) -> AsyncIterator[tuple[str, str, Answer | None, str | None]]:
        """(custom_id, result type, answer or None, error text or None) for each request of an ended batch,
        streamed from the results file."""
        self.stats.requests += 1
        try:
            results = await self._client.messages.batches.results(batch_id)
            async for entry in results:
                result = entry.result
                if result.type == "succeeded":
                    message = result.message
                    yield entry.custom_id, "succeeded", Answer(
                        text=_first_text(message), stop_reason=message.stop_reason,
                        input_tokens=int(message.usage.input_tokens or 0),
                        output_tokens=int(message.usage.output_tokens or 0), model=message.model), None
                elif result.type == "errored":
                    error = getattr(result, "error", None)
                    inner = getattr(error, "error", None)
                    yield entry.custom_id, "errored", None, str(getattr(inner, "message", None) or "errored")[:300]
                else:
                    yield entry.custom_id, result.type, None, None
        except self._anthropic.APIStatusError as exc:
            self._batch_failed(exc)
        except self._anthropic.APIConnectionError as exc:
            raise AnthropicUnavailable(f"Anthropic could not be reached ({type(exc).__name__})") from None

    def _batch_failed(self, exc) -> None:
        status = exc.status_code
        kind = _error_type(exc)
        if status in (401, 403):
            raise AnthropicUnauthorized(f"Anthropic refused the API key ({status} {kind}): check ANTHROPIC_API_KEY; "
                                        "the run stopped") from None
        if status in (429, 529) or status >= 500:
            raise AnthropicUnavailable(f"Anthropic answered {status} ({kind})") from None
        raise AnthropicRefused(f"Anthropic refused the batch request ({status} {kind}: {_error_message(exc)})") \
            from None


def _backoff(attempt: int) -> float:
    return min(BACKOFF_CAP_SECONDS, 2.0 ** attempt) * (0.5 + random.random() / 2)


def _first_text(message) -> str | None:
    for block in message.content or []:
        if getattr(block, "type", None) == "text":
            return block.text
    return None


def _error_type(exc) -> str:
    body = exc.body if isinstance(getattr(exc, "body", None), dict) else {}
    error = body.get("error") if isinstance(body.get("error"), dict) else {}
    return str(error.get("type") or "error")


def _error_message(exc) -> str:
    body = exc.body if isinstance(getattr(exc, "body", None), dict) else {}
    error = body.get("error") if isinstance(body.get("error"), dict) else {}
    return str(error.get("message") or "")[:300]


def client_from_settings(settings) -> AnthropicClient:
    """The run's client; ConfigurationError without ANTHROPIC_API_KEY."""
    if settings.anthropic_api_key is None or not settings.anthropic_api_key.get_secret_value().strip():
        raise errors.ConfigurationError("ANTHROPIC_API_KEY is not set: call analysis needs it (docs/analysis.md)")
    return AnthropicClient(api_key=settings.anthropic_api_key.get_secret_value(), base_url=settings.anthropic_base_url,
                           timeout=settings.analysis_request_timeout_seconds,
                           max_in_flight=settings.analysis_max_in_flight)


__all__ = ["AnthropicClient", "Answer", "RateLimitPacer", "PacerTimeout", "AnthropicUnauthorized", "AnthropicConfigError",
           "AnthropicRefused", "AnthropicUnavailable", "client_from_settings", "retry_after_seconds"]
