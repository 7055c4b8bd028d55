"""--check against a refused token: the refusal is the one thing said (no note about a consent
scope, no mapping of "?" types), for a server answering 401 to everything too."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import pytest


class _Refuses(BaseHTTPRequestHandler):
    def _refuse(self) -> None:
        body = json.dumps({"status": "error", "category": "INVALID_AUTHENTICATION",
                           "message": "Authentication credentials not found."}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _refuse

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base class's name)
        pass


@pytest.fixture
def refusing_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Refuses)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_server_refusing_everything_is_said_as_a_refused_token_only(run, monkeypatch, refusing_server):
    monkeypatch.setenv("HUBSPOT_BASE_URL", refusing_server)
    result = run("--check")
    assert result.code == 2
    said = result.out + result.err
    assert "HubSpot rejected the access token" in said
    assert "communication_preferences" not in said and "note:" not in said
    assert "scope" not in said.replace("HubSpot rejected the access token", "")
    assert "Mapping" not in result.out  # a table of "?" types says nothing more


def test_a_wrong_hubspot_token_is_the_only_problem_named(run, monkeypatch):
    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", "not-the-token")
    result = run("--check")
    problems = [line for line in result.out.splitlines() if line.startswith("  - ")]
    assert result.code == 2 and len(problems) == 1 and "HubSpot rejected the access token" in problems[0]
    assert "note:" not in result.out


def test_a_missing_consent_scope_is_still_noted(run, hubspot_fake):
    """The note is right when the token works and only the consent scope is missing."""
    hubspot_fake.tokens["hs-test-token"].discard("communication_preferences.statuses.batch.read")
    result = run("--check")
    assert "communication_preferences.statuses.batch.read" in result.out and "rejected the access" not in result.out
