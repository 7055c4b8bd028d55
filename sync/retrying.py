"""The one retry layer both API modules use: tenacity around a single request.

A client classifies each failure in one place and raises `Transient` for what is worth
retrying (429, 5xx, timeouts, dropped connections, a garbled body). Rate-limit waits are the
normal way of pacing against a limit, so they get a far larger allowance than real failures.
"""

from __future__ import annotations

import email.utils
import logging
import time
from typing import Callable, Optional, TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception_type
from tenacity.wait import wait_random_exponential

from .errors import AbortRun, raise_pending_stop
from .exchange_deadline import run_ends_at
from .tunables import DEFAULTS, Tunables

T = TypeVar("T")


class RunDeadline(AbortRun):
    """The run used up SYNC_MAX_RUNTIME: it stops cleanly so hourly runs never pile up."""


class WaitTooLong(AbortRun):
    """A server asked for a wait longer than a run should sit idle."""


class Transient(Exception):
    """A failure worth retrying. `retry_after` is the server's wait in seconds, if it said."""

    def __init__(self, reason: str, retry_after: Optional[float] = None, rate_limited: bool = False,
                 refused: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.rate_limited = rate_limited
        self.refused = refused  # the connection was refused: nothing listens at that address (now)


def parse_retry_after(value: Optional[str]) -> Optional[float]:
    """Seconds from a Retry-After header: delta-seconds (fractions allowed) or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class _Wait:
    """Honour the server's Retry-After; otherwise exponential backoff with full jitter."""

    def __init__(self, multiplier: float, maximum: float, default_rate_wait: float) -> None:
        self._backoff = wait_random_exponential(multiplier=multiplier, max=maximum)
        self._default_rate_wait = default_rate_wait

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, Transient) and exc.retry_after is not None:
            return exc.retry_after
        if isinstance(exc, Transient) and exc.rate_limited:
            return max(self._default_rate_wait, self._backoff(state))
        return self._backoff(state)


class RetryPolicy:
    """How long one request may keep trying. The defaults are tunables.py's; `from_tunables` builds
    one from a whole Tunables (how cli.clients does it, and how tests pass faster waits)."""

    def __init__(self, backoff: float = DEFAULTS.backoff_s, max_backoff: float = DEFAULTS.max_backoff_s,
                 default_rate_wait: float = DEFAULTS.default_rate_wait_s,
                 max_failures: int = DEFAULTS.max_failures,
                 max_rate_limit_waits: int = DEFAULTS.max_rate_limit_waits,
                 sleep: Callable[[float], None] = time.sleep, deadline: Optional[float] = None,
                 max_request_seconds: float = DEFAULTS.max_request_s,
                 max_one_wait: float = DEFAULTS.max_one_wait_s,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.default_rate_wait = default_rate_wait
        self.max_failures = max_failures
        self.max_rate_limit_waits = max_rate_limit_waits
        self.deadline = deadline  # time.monotonic() by which the run must end (SYNC_MAX_RUNTIME)
        self.max_request_seconds = max_request_seconds
        self.max_one_wait = max_one_wait
        self._sleep = sleep
        self._clock = clock  # time.monotonic's scale: the deadline and each request's total time
        self.sleep = self._guarded_sleep  # every wait of a client goes through here, so the deadline holds
        # Whether the server was ever reached through this policy (a client has its own). A connection
        # refused before that means a wrong address or port, not an outage: one try says so at once,
        # instead of every retry of a run and of --check. Once reached, a refusal is retried (a restart).
        self.reached = False

    @classmethod
    def from_tunables(cls, tunables: Tunables, deadline: Optional[float] = None,
                      sleep: Callable[[float], None] = time.sleep,
                      clock: Callable[[], float] = time.monotonic) -> RetryPolicy:
        return cls(backoff=tunables.backoff_s, max_backoff=tunables.max_backoff_s,
                   default_rate_wait=tunables.default_rate_wait_s, max_failures=tunables.max_failures,
                   max_rate_limit_waits=tunables.max_rate_limit_waits, sleep=sleep, deadline=deadline,
                   max_request_seconds=tunables.max_request_s, max_one_wait=tunables.max_one_wait_s, clock=clock)

    def check_deadline(self, what: str, wait: float = 0.0) -> None:
        """RunDeadline if the run's time is up (or would be, after waiting `wait` seconds); before
        that, a signal's stop that Python could not raise where it landed (errors.stop_requested)."""
        raise_pending_stop()
        if self.deadline is not None and self._clock() + wait >= self.deadline:
            raise RunDeadline(f"the run reached its time limit (SYNC_MAX_RUNTIME) at {what}; stopped, what was "
                              f"synced is kept and the next run continues")

    def _guarded_sleep(self, seconds: float, what: str = "a wait") -> None:
        if seconds > self.max_one_wait:
            raise WaitTooLong(f"{what}: asked to wait {seconds / 60:.0f} minutes, more than "
                              f"{self.max_one_wait / 60:.0f}; stopped, the next run continues")
        self.check_deadline(what, seconds)
        self._sleep(seconds)

    def call(self, func: Callable[[], T], what: str, logger: logging.Logger,
             on_wait: Optional[Callable[[str, float], None]] = None) -> T:
        """Run func, retrying Transient failures; the last Transient is re-raised."""
        counts = {"failures": 0, "rate": 0}
        started = self._clock()

        def attempt() -> T:
            self.check_deadline(what)  # before each request
            # ...and during it: an exchange still going at the run's end is cut (exchange_deadline.py),
            # and the run stops rather than trying it again.
            with run_ends_at(None if self.deadline is None else self.deadline - self._clock()):
                try:
                    answer = func()
                except Transient as exc:  # what a cut exchange becomes in either client
                    self.reached = self.reached or not exc.refused
                    self.check_deadline(what)
                    raise
                except Exception:
                    self.reached = True  # an answer the client refused to take: the server is there
                    raise
                self.reached = True
                return answer

        def stop(state: RetryCallState) -> bool:
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, Transient) and exc.refused and not self.reached:
                return True  # nothing listens there: a wrong address, said after one try
            key = "rate" if isinstance(exc, Transient) and exc.rate_limited else "failures"
            counts[key] += 1
            limit = self.max_rate_limit_waits if key == "rate" else self.max_failures
            # Bounded in time as well as in count: six tries of a minute each is already long.
            return counts[key] >= limit or self._clock() - started >= self.max_request_seconds

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            wait = state.next_action.sleep if state.next_action else 0.0
            reason = exc.reason if isinstance(exc, Transient) else repr(exc)
            if wait > self.max_one_wait:
                raise WaitTooLong(f"{what}: {reason}, and asked to wait {wait / 60:.0f} minutes, more than "
                                  f"{self.max_one_wait / 60:.0f}; stopped, the next run continues")
            self.check_deadline(what, wait)  # before each wait
            level = logging.DEBUG if isinstance(exc, Transient) and exc.rate_limited else logging.INFO
            logger.log(level, "%s: %s; retrying in %.1f s", what, reason, wait)
            if on_wait is not None:
                on_wait(reason, wait)

        retrying = Retrying(
            retry=retry_if_exception_type(Transient),
            wait=_Wait(self.backoff, self.max_backoff, self.default_rate_wait),
            stop=stop,
            before_sleep=before_sleep,
            sleep=self._sleep,  # the checks above have run already
            reraise=True,
        )
        try:
            return retrying(attempt)
        except Transient as exc:
            if exc.refused and not self.reached:
                exc.reason += ", refused at the first request: is the address right?"
            raise
