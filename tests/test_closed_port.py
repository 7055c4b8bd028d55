"""Settings pointing at a closed port: the first request of a run (or of --check) refused means a
wrong address, said after one connection attempt per API instead of after every retry; a refusal
once the server was reached (a restart) is still retried like any outage."""

from __future__ import annotations

import logging
import socket
from collections import Counter
from typing import Any, Iterator

import pytest

from sync.retrying import RetryPolicy, Transient
from tests.conftest import FAST, seed_contacts


def closed_port() -> int:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now: connecting is refused
    return port


@pytest.fixture
def connects(monkeypatch) -> Iterator[Counter]:
    """Connection attempts by port (on top of the test suite's no-internet guard)."""
    counted: Counter = Counter()
    guarded = socket.socket.connect

    def counting(self: socket.socket, address: Any) -> Any:
        if isinstance(address, tuple):
            counted[address[1]] += 1
        return guarded(self, address)

    monkeypatch.setattr(socket.socket, "connect", counting)
    yield counted


@pytest.mark.parametrize("setting", ["HUBSPOT_BASE_URL", "MAILERLITE_BASE_URL"])
def test_a_run_says_a_closed_port_after_one_attempt(run, hubspot_fake, monkeypatch, connects, setting):
    seed_contacts(hubspot_fake, 2)
    port = closed_port()
    monkeypatch.setenv(setting, f"http://127.0.0.1:{port}" + ("/api" if "MAILERLITE" in setting else ""))
    result = run()
    assert result.code == 3
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and f"no connection to 127.0.0.1:{port} (set by {setting})" in lines[0], result.err
    assert "refused at the first request: is the address right?" in lines[0]
    assert connects[port] == 1


def test_check_says_each_closed_port_after_one_attempt(run, monkeypatch, connects):
    hubspot_port, mailerlite_port = closed_port(), closed_port()
    monkeypatch.setenv("HUBSPOT_BASE_URL", f"http://127.0.0.1:{hubspot_port}")
    monkeypatch.setenv("MAILERLITE_BASE_URL", f"http://127.0.0.1:{mailerlite_port}/api")
    result = run("--check")
    assert result.code == 3
    assert "HubSpot could not be reached" in result.out and "MailerLite could not be reached" in result.out
    assert (connects[hubspot_port], connects[mailerlite_port]) == (1, 1)


class Script:
    """A request answering in turn from a script: a value, or a Transient to raise."""

    def __init__(self, *steps: object) -> None:
        self.steps = list(steps)
        self.calls = 0

    def __call__(self) -> object:
        step = self.steps[min(self.calls, len(self.steps) - 1)]
        self.calls += 1
        if isinstance(step, Exception):
            raise step
        return step


REFUSED = Transient("no connection to 127.0.0.1:1", refused=True)
DROPPED = Transient("no connection to 127.0.0.1:1")  # reset, or timed out: not a refusal


def policy() -> RetryPolicy:
    return RetryPolicy.from_tunables(FAST, sleep=lambda seconds: None)


@pytest.mark.parametrize("steps, calls", [
    ((REFUSED,), 1),  # the first request refused: a wrong address, one try
    ((DROPPED,), FAST.max_failures),  # not refused: retried as always
    ((DROPPED, REFUSED), FAST.max_failures),  # something answered (or held the connection) before
])
def test_only_a_first_refusal_is_not_retried(steps, calls):
    script = Script(*steps)
    with pytest.raises(Transient):
        policy().call(script, "a request", logging.getLogger("test"))
    assert script.calls == calls


def test_a_refusal_after_the_server_answered_is_retried():
    retry = policy()
    assert retry.call(Script("answer"), "the first request", logging.getLogger("test")) == "answer"
    restarting = Script(REFUSED, REFUSED, "answer again")
    assert retry.call(restarting, "a later request", logging.getLogger("test")) == "answer again"
    assert restarting.calls == 3
