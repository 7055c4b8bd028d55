"""The errors that end a run, each with the exit code users put in their scripts."""

from __future__ import annotations

from typing import List

EXIT_OK = 0
EXIT_PARTIAL = 1  # finished, but some contacts were rejected or failed
EXIT_CONFIG = 2  # configuration or credential problem (a token refused mid-run: what was written is kept)
EXIT_ABORTED = 3  # stopped early (outage beyond retries, daily limit); what was done is kept
EXIT_LOCKED = 75  # another run holds the lock (EX_TEMPFAIL: cron may simply try again)


class SyncError(Exception):
    """An error with a one-line message meant for the user, and an exit code."""

    exit_code = EXIT_ABORTED


class ConfigError(SyncError):
    exit_code = EXIT_CONFIG


class AuthError(SyncError):
    exit_code = EXIT_CONFIG


class AbortRun(SyncError):
    exit_code = EXIT_ABORTED


class LockHeld(SyncError):
    exit_code = EXIT_LOCKED

    def __init__(self, message: str, quiet: bool = False) -> None:
        super().__init__(message)
        self.quiet = quiet  # an ordinary overlap: no cron mail (said at INFO level)


class StateError(SyncError):
    """The state database cannot be used as it is (found when opening it)."""

    exit_code = EXIT_CONFIG


class StateWriteError(StateError):
    """The state database stopped taking writes mid-run: what MailerLite has is kept."""

    exit_code = EXIT_ABORTED


EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT), as shells report it
EXIT_TERMINATED = 143  # SIGTERM (schedulers and hosting panels stopping the program)


class Interrupted(KeyboardInterrupt):
    """A signal stopped the run; what was done is kept, the record says how it ended."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# The stop a signal asked for, until the program has caught it (cli). The handler raises it at once,
# but a raise that lands in a finalizer or a weakref callback is only printed by Python and the run
# would go on: each request raises it again (retrying.RetryPolicy.check_deadline).
_pending_stop: List[Interrupted] = []


def stop_requested(stop: Interrupted) -> None:
    _pending_stop[:] = [stop]


def stop_caught() -> None:
    _pending_stop.clear()


def raise_pending_stop() -> None:
    if _pending_stop:
        raise Interrupted(str(_pending_stop[0]), _pending_stop[0].exit_code)
