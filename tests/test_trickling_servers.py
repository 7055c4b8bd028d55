"""A server trickling its status line or headers cannot keep a run alive past SYNC_HTTP_TIMEOUT per
request or SYNC_MAX_RUNTIME per run."""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import replace
from typing import List

import filelock
import pytest

from sync.tunables import Tunables
from tests.conftest import FAST, seed_contacts
from tests.test_operations import ping_server  # noqa: F401 (a fixture)

HANG_GUARD_S = 60  # only so that a regression fails instead of hanging; the runs below need seconds


class TrickleServer:
    """A raw HTTP server that answers every request with its status line (part="status") or, after a
    whole status line, its headers (part="headers") one byte every `interval` seconds: each read of
    the client gets something, so no socket timeout ever fires. Each connection stops by itself after
    `limit` bytes, or when the client goes away."""

    def __init__(self, part: str, interval: float = 0.25, limit: int = 400) -> None:
        head = b"HTTP/1.1 200 " if part == "status" else b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Slow: "
        self.first, self.drip = head[:5], head[5:] + b"a" * limit
        self.interval = interval
        assert interval * limit > HANG_GUARD_S  # so that only a cut, never the server, ends the exchange in time
        self.connections = 0
        self._stop = threading.Event()
        self._threads: List[threading.Thread] = []
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self._listener.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def start(self) -> TrickleServer:
        self._spawn(self._accept)
        return self

    def _spawn(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:  # the 0.2 s accept timeout, or the listener closed by stop()
                continue
            self.connections += 1
            self._spawn(self._serve, conn)

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(5)
            conn.recv(65536)  # the request (what it asks does not matter)
            self._trickle(conn)
        except OSError:
            pass  # the client gave up and closed the connection: what the sync must do
        finally:
            conn.close()

    def _trickle(self, conn: socket.socket) -> None:
        conn.sendall(self.first)
        for i in range(len(self.drip)):
            if self._stop.wait(self.interval):
                break
            conn.sendall(self.drip[i:i + 1])

    def stop(self) -> None:
        self._stop.set()
        self._listener.close()
        for thread in self._threads:
            thread.join(timeout=5)


@pytest.fixture(params=["status", "headers"])
def trickler(request):
    server = TrickleServer(request.param).start()
    yield server
    server.stop()


def point_at(run, monkeypatch, api: str, url: str) -> None:
    monkeypatch.setenv("HUBSPOT_BASE_URL" if api == "hubspot" else "MAILERLITE_BASE_URL", url)


def guarded_run(run, tunables: Tunables = FAST):
    """One run, and its stderr lines; a run that hangs fails here instead of hanging the tests."""
    started = time.monotonic()
    result = run(tunables=tunables)
    assert time.monotonic() - started < HANG_GUARD_S
    return result, [line for line in result.err.splitlines() if line.strip()]


@pytest.mark.parametrize("api", ["hubspot", "mailerlite"])
def test_a_trickled_status_line_or_headers_are_cut_at_the_request_timeout(run, hubspot_fake, mailerlite_fake,
                                                                          monkeypatch, trickler, api):
    seed_contacts(hubspot_fake, 3)
    point_at(run, monkeypatch, api, trickler.url)
    monkeypatch.setenv("SYNC_HTTP_TIMEOUT", "1")
    result, lines = guarded_run(run, tunables=replace(FAST, max_failures=2))  # 2 tries of 1 s, not 6
    assert result.code == 3 and len(lines) == 1 and "kept failing" in lines[0], result.err
    assert trickler.connections >= 2  # each try was cut at SYNC_HTTP_TIMEOUT and tried again


@pytest.mark.parametrize("api", ["hubspot", "mailerlite"])
def test_the_run_ends_at_its_time_limit_inside_a_trickled_request(run, hubspot_fake, mailerlite_fake, monkeypatch,
                                                                  ping_server, trickler, api):  # noqa: F811
    url, pings = ping_server
    monkeypatch.setenv("HEALTHCHECK_URL", url)
    seed_contacts(hubspot_fake, 3)
    point_at(run, monkeypatch, api, trickler.url)
    monkeypatch.setenv("SYNC_HTTP_TIMEOUT", "600")  # the request alone would go on for minutes
    monkeypatch.setenv("SYNC_MAX_RUNTIME", "2")
    result, lines = guarded_run(run)
    assert result.code == 3 and len(lines) == 1 and "SYNC_MAX_RUNTIME" in lines[0], result.err
    assert trickler.connections == 1  # stopped, not tried again
    assert pings == ["/ping/abc/fail"]
    with filelock.FileLock(str(run.state_db) + ".lock", timeout=0):
        pass  # released
    history = json.loads(run("--history").out)
    assert history[0]["exit_code"] == 3 and "SYNC_MAX_RUNTIME" in history[0]["message"], history[0]
    point_at(run, monkeypatch, api, hubspot_fake.url if api == "hubspot" else mailerlite_fake.base_url)
    monkeypatch.delenv("SYNC_MAX_RUNTIME")
    assert run().code == 0 and len(mailerlite_fake.subscribers) == 3


class KeepAliveThenTrickle(TrickleServer):
    """Answers a connection's first request at once and keeps the connection open; the next request on
    it gets its status line trickled. So the second exchange runs on a connection from the pool."""

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(5)
            self._read_request(conn)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
            self._read_request(conn)
            self._trickle(conn)
        except OSError:
            pass
        finally:
            conn.close()

    @staticmethod
    def _read_request(conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:  # GETs without a body; bounded by the 5 s timeout
            piece = conn.recv(4096)
            if not piece:
                raise OSError("closed")
            data += piece


def test_a_pooled_connection_is_cut_at_the_deadline_too():
    """Both clients' transports: the second request reuses the first one's connection (joins the
    exchange when it is sent, not only when it connects)."""
    import types

    import requests
    import urllib3

    from sync.http_limits import AnswerTooSlow, RequestsTooSlow, bound_api_client, requests_exchange
    transports = []
    with requests.Session() as session:
        transports.append((lambda url: requests_exchange(session, "GET", url, None, (1.0, 1.0)), RequestsTooSlow))
        api_client = types.SimpleNamespace(rest_client=types.SimpleNamespace(pool_manager=urllib3.PoolManager()))
        bound_api_client(api_client)
        pool = api_client.rest_client.pool_manager
        transports.append((lambda url: pool.request("GET", url, timeout=urllib3.Timeout(connect=1.0, read=1.0),
                                                    retries=False), AnswerTooSlow))
        for send, too_slow in transports:
            server = KeepAliveThenTrickle("status").start()
            try:
                started = time.monotonic()
                send(server.url + "/first")
                with pytest.raises(too_slow):
                    send(server.url + "/second")
                assert time.monotonic() - started < HANG_GUARD_S
                assert server.connections == 1  # the second request went on the pooled connection
            finally:
                server.stop()
