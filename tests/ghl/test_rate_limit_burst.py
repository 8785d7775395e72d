"""The limiter spends a window's whole allowance as soon as GHL's headers show it (pure: a fake clock)."""

from __future__ import annotations

from tests.ghl.test_rate_limiting import calibrated, headers, take


def test_a_fresh_window_in_the_headers_is_spent_at_once():
    limiter, clock = calibrated(max_=10, interval_ms=1000)  # one request answered
    permits = [take(limiter) for _ in range(9)]
    clock.now += 0.2
    for permit in permits[:-1]:
        limiter.observe(permit, headers(10, 1000, remaining=0), 200)
    assert limiter._wait_seconds(clock.now) > 0.5  # our own log: full until the first answers leave it
    # The last answer says the server's window is fresh again (it counts differently, e.g. a fixed window):
    limiter.observe(permits[-1], headers(10, 1000, remaining=10), 200)
    for _ in range(10):
        assert limiter._credit_usable(clock.now)  # (else take() would wait for a fake clock that never moves)
        take(limiter)
    assert limiter.credit_starts == 10
    assert not limiter._credit_usable(clock.now)  # the allowance is spent; the log decides again


def test_the_credit_leaves_out_what_the_server_cannot_have_counted():
    limiter, clock = calibrated(max_=10, interval_ms=1000)
    first, second, third = take(limiter), take(limiter), take(limiter)
    clock.now += 0.1
    # `second` is answered first: `first` (started before) and `third` (after) may be missing from its count
    limiter.observe(second, headers(10, 1000, remaining=6), 200)
    assert limiter._credit == 6 - 2
    # an older answer arriving late does not replace the newer report
    limiter.observe(first, headers(10, 1000, remaining=9), 200)
    assert limiter._credit == 4
    limiter.observe(third, headers(10, 1000, remaining=5), 200)
    assert limiter._credit == 5


def test_no_credit_after_a_429_or_once_it_is_old():
    limiter, clock = calibrated(max_=10, interval_ms=1000)
    permit = take(limiter)
    limiter.observe(permit, headers(10, 1000, remaining=8), 200)
    assert limiter._credit_usable(clock.now)
    clock.now += 0.2  # a tenth of the interval later the report is too old to act on
    assert not limiter._credit_usable(clock.now)
    permit = take(limiter)
    limiter.observe(permit, headers(10, 1000, remaining=7), 200)
    limiter.observe(take(limiter), headers(10, 1000), 429)
    assert not limiter._credit_usable(clock.now)
