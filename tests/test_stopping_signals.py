"""SIGTERM stops the run wherever it lands, also where Python cannot raise the handler's exception."""

from __future__ import annotations

import signal
import sqlite3
import time
from dataclasses import replace

import pytest

from tests.conftest import FAST, seed_contacts


class _SignalledInsideDel:
    """Garbage whose finalizer receives SIGTERM: the handler runs inside __del__, where an exception
    is only printed ("Exception ignored in ..."), as inside a weakref callback. Seen under load in
    test_sigterm_stops_the_run_cleanly: the run went on and exited 0."""

    def __del__(self) -> None:
        signal.raise_signal(signal.SIGTERM)  # the Python handler runs before this returns


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the swallowed raise
def test_a_sigterm_whose_raise_python_swallows_still_stops_the_run(run, hubspot_fake, mailerlite_fake):
    seed_contacts(hubspot_fake, 300)
    calls = []

    def clock() -> float:
        calls.append(1)
        if len(calls) == 1:  # the run's start: its handlers are in place, nothing is sent yet
            _SignalledInsideDel()
        return time.time()

    stopped = run(tunables=replace(FAST, wall_clock=clock))
    assert stopped.code == 143 and "SIGTERM" in stopped.err, stopped.err
    assert len(mailerlite_fake.subscribers) < 300, "stopped at its next request, not at the end"
    db = sqlite3.connect(run.state_db)
    assert db.execute("SELECT exit_code FROM runs").fetchall() == [(143,)]
    db.close()
    assert run().code == 0 and len(mailerlite_fake.subscribers) == 300
