"""The per-location limiter on its own (pure: a fake clock, no server)."""

from __future__ import annotations

import asyncio

import pytest

from shared.adapters.rate_limiting import LocationRateLimiter, RateLimitHeaders, forget_limiters, limiter_for
from shared.errors import BudgetExhausted


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def headers(max_=10, interval_ms=1000, remaining=None, daily=None, daily_remaining=None, retry_after=None):
    values = {"X-RateLimit-Max": max_, "X-RateLimit-Interval-Milliseconds": interval_ms,
              "X-RateLimit-Remaining": remaining, "X-RateLimit-Limit-Daily": daily,
              "X-RateLimit-Daily-Remaining": daily_remaining, "Retry-After": retry_after}
    return {k: str(v) for k, v in values.items() if v is not None}


def calibrated(max_=10, interval_ms=1000) -> tuple[LocationRateLimiter, FakeClock]:
    clock = FakeClock()
    limiter = LocationRateLimiter("loc", clock=clock)
    permit = asyncio.run(limiter.acquire())
    limiter.observe(permit, headers(max_, interval_ms, remaining=max_ - 1), 200)
    return limiter, clock


def take(limiter: LocationRateLimiter, **kwargs):
    return asyncio.run(limiter.acquire(**kwargs))


def test_headers_are_read_case_insensitively():
    parsed = RateLimitHeaders.parse({"x-ratelimit-max": "7", "X-RATELIMIT-REMAINING": "3", "Retry-After": "1.5"})
    assert (parsed.max_requests, parsed.remaining, parsed.retry_after_seconds) == (7, 3, 1.5)


def test_one_probe_until_the_first_answer_then_the_reported_limits():
    clock = FakeClock()
    limiter = LocationRateLimiter("loc", clock=clock)
    assert (limiter.max_requests, limiter.interval_seconds) == (100, 10.0)  # the seed
    permit = take(limiter)
    assert limiter._wait_seconds(clock.now) > 0  # a second request waits for the probe's answer
    limiter.observe(permit, headers(max_=5, interval_ms=2000, remaining=4), 200)
    assert (limiter.max_requests, limiter.interval_seconds) == (5, 2.0)
    assert limiter._wait_seconds(clock.now) == 0


def test_max_per_window_counted_from_the_answers_then_wait_for_the_oldest_to_leave():
    limiter, clock = calibrated(max_=10, interval_ms=1000)
    permits = [take(limiter) for _ in range(9)]
    clock.now += 0.2  # the answers arrive 200 ms later: the window counts from then
    for permit in permits:
        limiter.observe(permit, headers(remaining=0), 200)
    assert limiter.phantom_starts == 0
    wait = limiter._wait_seconds(clock.now)
    assert wait == pytest.approx(limiter.window_seconds - 0.2, abs=1e-3)  # the probe's answer leaves first
    clock.now += wait
    assert limiter._wait_seconds(clock.now) == 0
    take(limiter)
    assert limiter._wait_seconds(clock.now) > 0  # the other 9 answers are still in the window


def test_requests_in_flight_hold_their_place_until_answered():
    limiter, clock = calibrated(max_=10, interval_ms=1000)
    permits = [take(limiter) for _ in range(9)]
    clock.now += 5.0  # long after the interval, but no answer came yet
    assert limiter._wait_seconds(clock.now) == 0
    permits.append(take(limiter))
    assert limiter._wait_seconds(clock.now) > 0
    limiter.observe_failure(permits[0])  # a timeout frees the place only one interval later
    assert limiter._wait_seconds(clock.now) > 0
    clock.now += limiter.window_seconds
    assert limiter._wait_seconds(clock.now) == 0


def test_the_server_saying_fewer_remain_adds_phantom_starts():
    limiter, clock = calibrated(max_=10)
    permit = take(limiter)  # we count 2 starts in the window
    limiter.observe(permit, headers(remaining=3), 200)  # the server counts 7
    assert limiter.phantom_starts == 5
    assert limiter.snapshot()["in_window"] == 7
    for _ in range(3):
        take(limiter)
    assert limiter._wait_seconds(clock.now) > 0


def test_a_429_without_retry_after_fills_the_window():
    limiter, clock = calibrated(max_=10)
    permit = take(limiter)
    limiter.observe(permit, headers(remaining=0), 429)
    assert limiter.rate_limited == 1 and limiter.phantom_starts == 9
    assert limiter._wait_seconds(clock.now) == pytest.approx(limiter.window_seconds, abs=1e-3)


def test_a_429_with_retry_after_waits_that_long():
    limiter, clock = calibrated(max_=10)
    permit = take(limiter)
    limiter.observe(permit, headers(remaining=0, retry_after=0.3), 429)
    assert limiter._wait_seconds(clock.now) == pytest.approx(0.3)
    clock.now += 0.3
    assert limiter._wait_seconds(clock.now) == 0


def test_daily_budget_stops_at_the_reserve():
    limiter, clock = calibrated(max_=1000)
    permit = take(limiter)
    limiter.observe(permit, headers(max_=1000, remaining=990, daily=100, daily_remaining=15), 200)
    for _ in range(5):
        take(limiter, daily_reserve=10)
    with pytest.raises(BudgetExhausted, match="10 are kept in reserve"):
        take(limiter, daily_reserve=10)


def test_an_older_answer_does_not_overwrite_a_newer_daily_report():
    limiter, clock = calibrated(max_=1000)
    first, second = take(limiter), take(limiter)
    limiter.observe(second, headers(max_=1000, daily_remaining=500), 200)
    limiter.observe(first, headers(max_=1000, daily_remaining=900), 200)  # arrived late
    assert limiter.daily_estimate() == 500


def test_limiter_for_is_one_per_location():
    forget_limiters()
    assert limiter_for("a") is limiter_for("a")
    assert limiter_for("a") is not limiter_for("b")
