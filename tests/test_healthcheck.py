"""The health-check ping."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.conftest import seed_contacts


class _RefusingPings(BaseHTTPRequestHandler):
    status = 404

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(type(self).status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.mark.parametrize("status", [404, 500])
def test_a_failing_healthcheck_ping_names_the_http_status(run, hubspot_fake, monkeypatch, status):
    _RefusingPings.status = status
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RefusingPings)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("HEALTHCHECK_URL", f"http://127.0.0.1:{server.server_port}/ping/abc")
        seed_contacts(hubspot_fake, 2)
        result = run()
    finally:
        server.shutdown()
        server.server_close()
    assert result.code == 0
    assert f"healthcheck ping to 127.0.0.1 failed (HTTP {status}" in result.err
