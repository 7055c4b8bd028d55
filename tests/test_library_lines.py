"""Only the program's own lines reach stderr and the log file: a server answering malformed headers
makes urllib3 log "Failed to parse headers" with a traceback, which must not reach either."""

from __future__ import annotations

import socket
import threading
from typing import Iterator

import pytest

from tests.conftest import seed_contacts

# No colon in the second header line: urllib3 parses the answer, and logs a HeaderParsingError.
MALFORMED = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nthis is no header\r\n"
             b"Content-Length: 2\r\nConnection: close\r\n\r\n{}")


@pytest.fixture
def malformed_server() -> Iterator[str]:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            try:
                conn.settimeout(5)
                conn.recv(65536)
                for i in range(0, len(MALFORMED), 7):  # trickled, a few bytes at a time
                    conn.sendall(MALFORMED[i:i + 7])
            except OSError:
                pass
            finally:
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    listener.close()
    thread.join(timeout=5)


@pytest.mark.parametrize("api", ["HUBSPOT_BASE_URL", "MAILERLITE_BASE_URL"])
def test_malformed_headers_leave_only_the_programs_own_line(run, hubspot_fake, monkeypatch, malformed_server, api,
                                                            tmp_path):
    seed_contacts(hubspot_fake, 2)
    monkeypatch.setenv(api, malformed_server)
    log_file = tmp_path / "sync.log"
    result = run("--log-file", str(log_file))
    assert result.code == 3
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("ERROR: "), result.err
    logged = log_file.read_text()
    assert "Failed to parse headers" not in logged and "Traceback" not in logged, logged


def test_verbose_names_the_library_warning_in_one_line(run, hubspot_fake, monkeypatch, malformed_server):
    """--verbose, asked for detail, may say what urllib3 saw: one line, no traceback."""
    seed_contacts(hubspot_fake, 2)
    monkeypatch.setenv("MAILERLITE_BASE_URL", malformed_server)
    result = run("--verbose")
    assert result.code == 3 and "Traceback" not in result.err
    assert all(line.startswith(("DEBUG: ", "INFO: ", "WARNING: ", "ERROR: ", "  ")) for line in result.err.splitlines()
               if line.strip()), result.err
