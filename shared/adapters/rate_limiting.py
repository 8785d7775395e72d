"""Per-location rate limiting for the GHL API, driven by the X-RateLimit-* headers of every response.

GHL limits each location to a burst of `X-RateLimit-Max` requests per `X-RateLimit-Interval-Milliseconds`
(100 per 10 s today) and `X-RateLimit-Limit-Daily` per day, answering 429 beyond. The limiter:

- keeps a sliding window log for the location: a request holds a place from its start until one
  interval after its answer arrived (the server counted it somewhere in between), and a request may
  start only while fewer than `max` places are held. Callers keep several requests in flight, so
  latency wastes no budget (it costs one round trip per interval, ~1.5 % at 150 ms per 10 s);
- is seeded with 100 per 10 s and lets one probe request go alone until the first response tells
  the real limits; from then on every response re-reads them (limits differ per location);
- trusts the server when it says fewer requests remain than we counted (another worker or token
  spends the same location's budget): the difference is added to the window as "phantom" starts;
- trusts the server when it says more remain than our log allows (its window counted our requests
  earlier than their answers, or it has just opened a fresh window): that many requests, less those
  it cannot have counted yet, may start at once ("credit"), so a fresh window's whole allowance is
  spent as soon as the headers show it, not when our more cautious log would free it;
- after a 429 waits as long as a Retry-After header says, or (GHL documents none) counts the
  window as full, so callers wait until it frees;
- estimates the daily remainder from X-RateLimit-Daily-Remaining minus what was sent since, and
  refuses to send (BudgetExhausted) once only the caller's reserve would be left.

One limiter per location id, shared by every client in the process (`limiter_for`). It holds no
asyncio primitive (only a threading lock, never held across an await), so it works from any event
loop and thread: serverless handlers may run each invocation in a fresh event loop.
"""

from __future__ import annotations

import asyncio
import bisect
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from shared.errors import BudgetExhausted

DEFAULT_MAX_REQUESTS = 100
DEFAULT_INTERVAL_SECONDS = 10.0
# Starts older than the window are kept this long, so a late response can still be compared
# with what we had sent when the server counted it.
_HISTORY_SECONDS = 120.0
_PROBE_POLL_SECONDS = 0.005


@dataclass(frozen=True)
class Permit:
    """Leave to send one request: its place in the location's sequence and when it started."""

    seq: int
    started_at: float


@dataclass(frozen=True)
class RateLimitHeaders:
    max_requests: int | None = None
    interval_ms: int | None = None
    remaining: int | None = None
    daily_limit: int | None = None
    daily_remaining: int | None = None
    retry_after_seconds: float | None = None

    @classmethod
    def parse(cls, headers: Mapping[str, str]) -> "RateLimitHeaders":
        headers = {name.lower(): value for name, value in headers.items()}

        def number(name: str) -> int | None:
            value = headers.get(name)
            try:
                return int(float(value)) if value is not None else None
            except ValueError:
                return None

        retry_after = None
        raw_retry = headers.get("retry-after")
        if raw_retry is not None:
            try:
                retry_after = max(0.0, float(raw_retry))
            except ValueError:
                retry_after = None  # an HTTP date: rare; the window logic waits anyway
        return cls(
            max_requests=number("x-ratelimit-max"),
            interval_ms=number("x-ratelimit-interval-milliseconds"),
            remaining=number("x-ratelimit-remaining"),
            daily_limit=number("x-ratelimit-limit-daily"),
            daily_remaining=number("x-ratelimit-daily-remaining"),
            retry_after_seconds=retry_after,
        )


class LocationRateLimiter:
    def __init__(self, location_id: str, *, max_requests: int = DEFAULT_MAX_REQUESTS,
                 interval_seconds: float = DEFAULT_INTERVAL_SECONDS, probe_first: bool = True,
                 clock: Callable[[], float] = time.monotonic):
        self.location_id = location_id
        self.max_requests = max_requests
        self.interval_seconds = interval_seconds
        self._clock = clock
        self._lock = threading.Lock()
        # A request holds a place in the window from its start until `interval` after its answer
        # arrived: the server counted it at some moment in between, and the answer's arrival is the
        # latest that moment can be, so the window holds even when the server queues requests.
        self._in_flight = 0
        self._in_flight_seqs: set[int] = set()
        self._holds: list[float] = []  # sorted: answer times of our requests, plus phantoms
        # Starts the server's latest report still allows beyond our own log (see observe), until when.
        self._credit = 0
        self._credit_seq = 0
        self._credit_until = 0.0
        self._seq = 0
        self._blocked_until = 0.0
        self._calibrated = not probe_first
        self.daily_limit: int | None = None
        self._daily_remaining: int | None = None
        self._daily_seq = 0
        # counters, for logs and tests
        self.sent = 0
        self.rate_limited = 0
        self.phantom_starts = 0
        self.credit_starts = 0  # starts the server's report allowed before our own log would have

    # ---- the window ------------------------------------------------------------------------------

    @property
    def margin_seconds(self) -> float:
        """A little extra window length for clock granularity (holds start at the answers, an upper bound)."""
        return min(0.05, max(0.005, 0.001 * self.interval_seconds))

    @property
    def window_seconds(self) -> float:
        return self.interval_seconds + self.margin_seconds

    @staticmethod
    def _count_between(times: list[float], after: float, until: float) -> int:
        return bisect.bisect_right(times, until) - bisect.bisect_right(times, after)

    def _prune(self, now: float) -> None:
        cut = bisect.bisect_right(self._holds, now - self.window_seconds - _HISTORY_SECONDS)
        if cut:
            del self._holds[:cut]

    def _wait_seconds(self, now: float) -> float:
        if now < self._blocked_until:
            return self._blocked_until - now
        if not self._calibrated and self._in_flight:
            return _PROBE_POLL_SECONDS  # the probe's answer tells the real limits
        free = self.max_requests - self._in_flight
        if free <= 0:
            return _PROBE_POLL_SECONDS  # every place is taken by a request still in flight
        first = bisect.bisect_right(self._holds, now - self.window_seconds)
        held = len(self._holds) - first
        if held < free:
            return 0.0
        # the hold that must leave the window before one more request may start
        expiring = self._holds[first + held - free]
        return expiring + self.window_seconds - now + 1e-4

    def daily_estimate(self) -> int | None:
        """Requests left today by the last report, minus what was sent after the request it answered."""
        if self._daily_remaining is None:
            return None
        return self._daily_remaining - (self._seq - self._daily_seq)

    # ---- the API the client uses -----------------------------------------------------------------

    async def acquire(self, *, daily_reserve: int = 0) -> Permit:
        """Wait until one more request may start now; BudgetExhausted when the daily reserve is reached.

        Every permit must be closed with `observe` (an answer came) or `observe_failure` (none came).
        """
        while True:
            with self._lock:
                now = self._clock()
                self._prune(now)
                estimate = self.daily_estimate()
                if estimate is not None and estimate <= daily_reserve:
                    raise BudgetExhausted(
                        f"the daily GHL budget of location {self.location_id} is spent: about {max(estimate, 0)} "
                        f"of {self.daily_limit} requests remain and {daily_reserve} are kept in reserve",
                        details={"location_id": self.location_id, "daily_remaining": estimate,
                                 "daily_reserve": daily_reserve})
                wait = self._wait_seconds(now)
                if wait > 0 and self._credit_usable(now):
                    wait = 0.0
                    self.credit_starts += 1
                if wait <= 0:
                    self._seq += 1
                    self.sent += 1
                    self._in_flight += 1
                    self._in_flight_seqs.add(self._seq)
                    self._credit = max(0, self._credit - 1)  # every start spends the server's allowance
                    return Permit(seq=self._seq, started_at=now)
            # Real time on purpose (not the client's injectable sleep): the window is measured in real time.
            await asyncio.sleep(wait)

    def _credit_usable(self, now: float) -> bool:
        return (self._credit > 0 and self._calibrated and now < self._credit_until and now >= self._blocked_until
                and self._in_flight < self.max_requests)

    def _close(self, now: float, seq: int) -> None:
        self._in_flight = max(0, self._in_flight - 1)
        self._in_flight_seqs.discard(seq)
        bisect.insort(self._holds, now)

    def observe(self, permit: Permit, headers: Mapping[str, str], status_code: int) -> RateLimitHeaders:
        """Read the limits GHL reported with the answer to `permit`'s request and correct the window."""
        reported = RateLimitHeaders.parse(headers)
        with self._lock:
            now = self._clock()
            self._close(now, permit.seq)
            self._calibrated = True
            if reported.max_requests and reported.max_requests > 0:
                self.max_requests = reported.max_requests
            if reported.interval_ms and reported.interval_ms > 0:
                self.interval_seconds = reported.interval_ms / 1000.0
            if reported.daily_remaining is not None and permit.seq >= self._daily_seq:
                self._daily_remaining = reported.daily_remaining
                self._daily_seq = permit.seq
                self.daily_limit = reported.daily_limit
            if status_code == 429:
                self.rate_limited += 1
                self._credit = 0
                if reported.retry_after_seconds is not None:  # the server says how long: believe it
                    self._blocked_until = max(self._blocked_until, now + reported.retry_after_seconds)
                    server_used = None
                else:  # the window was full without this request, which stays in ours: max + 1
                    server_used = self.max_requests + 1
            elif reported.remaining is not None:
                server_used = self.max_requests - reported.remaining  # counts this request
                if permit.seq >= self._credit_seq:
                    # What the server still allows, less what it cannot have counted yet: every request
                    # started after this one, and those started before it that are still unanswered.
                    uncounted = (self._seq - permit.seq) + sum(1 for seq in self._in_flight_seqs if seq < permit.seq)
                    self._credit = max(0, reported.remaining - uncounted)
                    self._credit_seq = permit.seq
                    # Spent at once or not at all: an older report says less about the window as it moves.
                    self._credit_until = now + min(1.0, self.interval_seconds / 10)
            else:
                server_used = None
            if server_used is not None:
                # The server counted this request at some moment after it started; of ours, only those
                # answered after `start - window`, or still in flight, can be in that count.
                ours = self._count_between(self._holds, permit.started_at - self.window_seconds, now) + self._in_flight
                missing = server_used - ours
                if missing > 0:
                    # Someone else spent this location's budget (or a 429 says so): trust the server.
                    self._holds[len(self._holds):] = [now] * missing  # now >= every hold: stays sorted
                    self.phantom_starts += missing
        return reported

    def observe_failure(self, permit: Permit) -> None:
        """No answer came (timeout, connection error, cancelled): the server may still have counted it."""
        with self._lock:
            self._close(self._clock(), permit.seq)

    def block_for(self, seconds: float) -> None:
        with self._lock:
            self._blocked_until = max(self._blocked_until, self._clock() + seconds)

    def snapshot(self) -> dict:
        with self._lock:
            now = self._clock()
            return {
                "location_id": self.location_id,
                "max_requests": self.max_requests,
                "interval_seconds": self.interval_seconds,
                "in_window": self._count_between(self._holds, now - self.window_seconds, now) + self._in_flight,
                "in_flight": self._in_flight,
                "daily_limit": self.daily_limit,
                "daily_remaining_estimate": self.daily_estimate(),
                "sent": self.sent,
                "rate_limited": self.rate_limited,
                "phantom_starts": self.phantom_starts,
                "credit_starts": self.credit_starts,
            }


_registry: dict[str, LocationRateLimiter] = {}
_registry_lock = threading.Lock()


def limiter_for(location_id: str) -> LocationRateLimiter:
    """The process-wide limiter of one location (created on first use)."""
    with _registry_lock:
        limiter = _registry.get(location_id)
        if limiter is None:
            limiter = _registry[location_id] = LocationRateLimiter(location_id)
        return limiter


def forget_limiters() -> None:
    """Drop every registered limiter (tests; a new process starts empty anyway)."""
    with _registry_lock:
        _registry.clear()
