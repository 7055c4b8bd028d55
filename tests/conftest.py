"""Fixtures: fake HubSpot and MailerLite servers on 127.0.0.1, and a way to run the CLI."""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest

from sync import cli
from sync.sandbox.fakes.hubspot import FakeHubSpot
from sync.sandbox.fakes.mailerlite import FakeMailerLite
from sync.tunables import Tunables

HS_TOKEN = "hs-test-token"
ML_TOKEN = "ml-test-token"
TIME_SCALE = 0.01  # a MailerLite "minute" lasts 0.6 s, HubSpot's ten seconds 0.1 s
HOUR_MS = 3_600_000
# Client-side waits the server does not tell (backoff, search spacing, import probes), shrunk.
# Passed to whatever a test builds (clients, Engine, cli.main: the Runner below passes it).
FAST = Tunables(backoff_s=0.02, max_backoff_s=0.2, default_rate_wait_s=0.05, search_interval_s=0.002,
                import_wait_first_s=0.1, import_wait_max_s=0.6)


@pytest.fixture(autouse=True)
def _no_internet(monkeypatch: pytest.MonkeyPatch) -> Iterator[List[str]]:
    """Any connection to something other than loopback is refused, and fails the test."""
    real_connect = socket.socket.connect
    attempts: List[str] = []

    def guarded(self: socket.socket, address: Any) -> Any:
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and host not in ("127.0.0.1", "localhost", "::1") and self.family != socket.AF_UNIX:
            attempts.append(host)
            raise ConnectionRefusedError(f"test tried to reach {host}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    yield attempts
    assert not attempts, f"something tried to reach {attempts}"


@pytest.fixture
def hubspot_fake() -> Iterator[FakeHubSpot]:
    fake = FakeHubSpot(time_scale=TIME_SCALE).start()
    yield fake
    fake.stop()


@pytest.fixture
def mailerlite_fake() -> Iterator[FakeMailerLite]:
    fake = FakeMailerLite(time_scale=TIME_SCALE).start()
    yield fake
    fake.stop()


def seed_contacts(fake: FakeHubSpot, n: int, start: int = 0, age_ms: int = HOUR_MS, **extra: str) -> List[str]:
    """n realistic contacts last modified `age_ms` ago (older than the search-lag margin)."""
    base = int(time.time() * 1000) - age_ms
    ids = []
    for i in range(start, start + n):
        props = {"email": f"person{i}@example.com", "firstname": f"First{i}", "lastname": f"Last{i}",
                 "company": f"Company {i % 7}", "city": "Ljubljana", "zip": f"{1000 + i % 50}",
                 "hs_email_optout": "false"}
        props.update(extra)
        ids.append(fake.add_contact(props, modified_ms=base + i))
    return ids


def messages(stderr: str) -> List[str]:
    """stderr's messages, each as one line: a message's continuation lines (indented: its words
    beyond 80 columns, a command on a line of its own) joined to it."""
    found: List[str] = []
    for line in stderr.splitlines():
        if line.startswith("  ") and found:
            found[-1] += " " + line.strip()
        elif line.strip():
            found.append(line)
    return found


@dataclass
class RunResult:
    code: int
    summary: Optional[Dict[str, Any]]
    out: str
    err: str


class Runner:
    """Runs main([...]) in-process with a clean environment pointing at the fakes."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
                 hs: FakeHubSpot, ml: FakeMailerLite) -> None:
        self.tmp_path = tmp_path
        self.capsys = capsys
        self.env_file = tmp_path / "empty.env"
        self.env_file.write_text("")
        self.env_file.chmod(0o600)
        self.state_db = tmp_path / "state" / "sync_state.db"
        for key in list(os.environ):
            if key.startswith(("HUBSPOT_", "MAILERLITE_", "SYNC_", "HEALTHCHECK_")):
                monkeypatch.delenv(key)
        self.env = {
            "HUBSPOT_ACCESS_TOKEN": HS_TOKEN,
            "MAILERLITE_API_KEY": ML_TOKEN,
            "HUBSPOT_BASE_URL": hs.url,
            "MAILERLITE_BASE_URL": ml.base_url,
            "SYNC_STATE_DB": str(self.state_db),
            "SYNC_HTTP_TIMEOUT": "2",
        }
        for key, value in self.env.items():
            monkeypatch.setenv(key, value)
        self.monkeypatch = monkeypatch

    def __call__(self, *args: str, tunables: Tunables = FAST, sandbox_dir: Optional[Path] = None) -> RunResult:
        """One run of `main.py --json ARGS`; `tunables` to change a wait or the clock for this run,
        `sandbox_dir` where --sandbox would keep its fakes (looked at by hints)."""
        self.capsys.readouterr()
        code = cli.main(["--json", "--env-file", str(self.env_file), *args], tunables, sandbox_dir=sandbox_dir)
        out, err = self.capsys.readouterr()
        lines = [line for line in out.splitlines() if line.strip()]
        try:
            summary = json.loads(lines[-1]) if lines else None
        except ValueError:
            summary = None  # a command whose output is not the JSON summary (--check)
        return RunResult(code, summary, out, err)


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
        hubspot_fake: FakeHubSpot, mailerlite_fake: FakeMailerLite) -> Runner:
    return Runner(tmp_path, monkeypatch, capsys, hubspot_fake, mailerlite_fake)
