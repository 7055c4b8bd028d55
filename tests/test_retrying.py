"""The retry budgets of one request (retrying.RetryPolicy with production's tunables), as a table.

A fake clock moves only when the policy sleeps, so total times are exact and nothing waits.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Callable, List, Optional

import pytest

from sync.retrying import RetryPolicy, RunDeadline, Transient, WaitTooLong
from sync.tunables import DEFAULTS

log = logging.getLogger(__name__)


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: List[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def failing(make: Callable[[int], Optional[Exception]]) -> Callable[[], str]:
    """A request whose n-th attempt (from 0) raises make(n), or answers "ok" when that is None."""
    calls = {"n": 0}

    def attempt() -> str:
        n = calls["n"]
        calls["n"] += 1
        exc = make(n)
        if exc is not None:
            raise exc
        return "ok"

    attempt.calls = calls  # type: ignore[attr-defined]
    return attempt


def server_error(n: int) -> Exception:
    return Transient("HTTP 503")


def rate_limited(n: int) -> Exception:
    return Transient("HTTP 429", rate_limited=True)


def rate_limited_for(seconds: float) -> Callable[[int], Exception]:
    return lambda n: Transient("HTTP 429", retry_after=seconds, rate_limited=True)


# (name, what each attempt raises, attempts made, what the request ends with, total seconds waited or None)
BUDGETS = [
    ("5xx: six tries, then the failure", server_error, 6, Transient, None),
    # Its waits are jittered (up to 30 s each): with the 900 s budget also in force, sixty tries may or may
    # not fit, so this row sets the time budget out of the way (the storm row below checks both together).
    ("429 without Retry-After: sixty tries", rate_limited, 60, Transient, None, {"max_request_s": 10.0 ** 9}),
    ("429s do not use up the 5xx budget", lambda n: None if n == 40 else (server_error(n) if n % 10 == 0
                                                                          else rate_limited(n)), 41, "ok", None),
    ("5xx do not use up the 429 budget", lambda n: None if n == 8 else (server_error(n) if n < 5
                                                                        else rate_limited(n)), 9, "ok", None),
    ("Retry-After 100 s: the request's 900 s are spent after ten tries", rate_limited_for(100.0), 10, Transient,
     900.0),
    ("Retry-After of exactly the cap is waited", lambda n: None if n else rate_limited_for(900.0)(n), 2, "ok",
     900.0),
    ("Retry-After beyond the cap stops the run, without waiting", rate_limited_for(901.0), 1, WaitTooLong, 0.0),
]


def test_a_429_storm_without_retry_after_ends_at_sixty_tries_or_900_seconds():
    """With production's budgets both in force, whichever comes first ends it (the waits are jittered)."""
    for _ in range(20):
        fake = FakeTime()
        policy = RetryPolicy.from_tunables(DEFAULTS, sleep=fake.sleep, clock=fake.clock)
        request = failing(rate_limited)
        with pytest.raises(Transient):
            policy.call(request, "a request", log)
        tries = request.calls["n"]  # type: ignore[attr-defined]
        assert 1 < tries <= 60
        assert tries == 60 or sum(fake.sleeps) >= 900.0
        assert sum(fake.sleeps[:-1]) < 900.0  # it never started a wait after the budget was spent


@pytest.mark.parametrize("row", BUDGETS, ids=[b[0] for b in BUDGETS])
def test_retry_budgets(row):
    name, make, attempts, ends, waited = row[:5]
    overrides = row[5] if len(row) > 5 else {}
    fake = FakeTime()
    policy = RetryPolicy.from_tunables(replace(DEFAULTS, **overrides), sleep=fake.sleep, clock=fake.clock)
    request = failing(make)
    if isinstance(ends, type):
        with pytest.raises(ends):
            policy.call(request, "a request", log)
    else:
        assert policy.call(request, "a request", log) == ends
    assert request.calls["n"] == attempts  # type: ignore[attr-defined]
    assert len(fake.sleeps) == max(0, attempts - 1) if ends is not WaitTooLong else fake.sleeps == []
    if waited is not None:
        assert sum(fake.sleeps) == waited


def test_backoff_waits_stay_under_the_exponential_and_the_cap():
    fake = FakeTime()
    policy = RetryPolicy.from_tunables(DEFAULTS, sleep=fake.sleep, clock=fake.clock)
    policy.max_failures = 12  # long enough to reach the cap
    with pytest.raises(Transient):
        policy.call(failing(server_error), "a request", log)
    assert len(fake.sleeps) == 11
    for n, wait in enumerate(fake.sleeps, start=1):
        assert 0 <= wait <= min(DEFAULTS.max_backoff_s, DEFAULTS.backoff_s * 2 ** n), (n, wait)


def test_a_429_without_retry_after_waits_at_least_the_default():
    fake = FakeTime()
    policy = RetryPolicy.from_tunables(DEFAULTS, sleep=fake.sleep, clock=fake.clock)
    assert policy.call(failing(lambda n: None if n == 5 else rate_limited(n)), "a request", log) == "ok"
    assert len(fake.sleeps) == 5 and min(fake.sleeps) >= DEFAULTS.default_rate_wait_s


def test_a_wait_that_would_pass_the_run_deadline_stops_the_run_before_waiting():
    fake = FakeTime()
    policy = RetryPolicy.from_tunables(DEFAULTS, deadline=fake.now + 250, sleep=fake.sleep, clock=fake.clock)
    with pytest.raises(RunDeadline):
        policy.call(failing(rate_limited_for(100.0)), "a request", log)
    assert fake.sleeps == [100.0, 100.0]  # the third wait would end at the deadline
