"""A total deadline for one HTTP exchange (connect, request, status line, headers and body together),
for both clients: `requests` (MailerLite, the healthcheck) and urllib3 under hubspot-api-client.

A socket timeout applies to each read, so a server trickling its status line or headers one byte
a second keeps a request (and the run, and its lock) alive for ever; http_limits.read_body bounds
only the body. Here a timer shuts the exchange's socket down when its deadline passes: the
blocked read returns at once and the exchange fails, whatever phase it was in. The deadline is
the request's own (SYNC_HTTP_TIMEOUT) or the run's end (SYNC_MAX_RUNTIME, set by the retry layer
with `run_ends_at`), whichever comes first.

The sockets are found through the connection classes of urllib3's pools: a connection joins the
exchange that is current on its thread when a request is sent on it (a fresh connection or one
from the pool).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Any, Iterator, List, Optional

import requests
import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.poolmanager import pool_classes_by_scheme as URLLIB3_POOL_CLASSES

SHUTDOWN_REPEAT_S = 0.2  # after the deadline: until the exchange has ended, shut down what joins it late

_current = threading.local()  # .exchange: the Exchange in progress; .run_end: the run's end (monotonic)


class Exchange:
    """One exchange's deadline and the connections it uses; `expired` once the timer fired."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.expired = False
        self._connections: List[Any] = []
        self._lock = threading.Lock()
        self._ended = threading.Event()
        self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._expire)
        self._timer.daemon = True

    def join(self, connection: Any) -> None:
        with self._lock:
            self._connections.append(connection)

    def _expire(self) -> None:
        self.expired = True
        # Repeated (not a busy loop: every 0.2 s, and only until the exchange ends): a connection still
        # connecting when the deadline passed has no socket yet to shut down.
        while True:
            with self._lock:
                connections = list(self._connections)
            for connection in connections:
                _shut_down(getattr(connection, "sock", None))
            if self._ended.wait(SHUTDOWN_REPEAT_S):
                return

    def __enter__(self) -> Exchange:
        self._timer.start()
        _current.exchange = self
        return self

    def __exit__(self, *exc: object) -> None:
        _current.exchange = None
        self._ended.set()
        self._timer.cancel()


def _shut_down(sock: Optional[socket.socket]) -> None:
    """Wake a read blocked on `sock` in another thread (close() alone would not); the plain socket's
    shutdown, so that a TLS socket's state is left to the thread using it."""
    if sock is None:
        return
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass  # closed already


def exchange(seconds: float) -> Exchange:
    """An Exchange ending `seconds` from now, or at the run's end if that comes first."""
    deadline = time.monotonic() + seconds
    run_end: Optional[float] = getattr(_current, "run_end", None)
    return Exchange(deadline if run_end is None else min(deadline, run_end))


@contextlib.contextmanager
def run_ends_at(seconds_left: Optional[float]) -> Iterator[None]:
    """Exchanges on this thread inside the block end at the latest `seconds_left` from now."""
    previous = getattr(_current, "run_end", None)
    _current.run_end = None if seconds_left is None else time.monotonic() + seconds_left
    try:
        yield
    finally:
        _current.run_end = previous


def _join_current(connection: Any) -> None:
    current: Optional[Exchange] = getattr(_current, "exchange", None)
    if current is not None:
        current.join(connection)


class _WatchedHTTPConnection(HTTPConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:
        _join_current(self)
        super().request(*args, **kwargs)


class _WatchedHTTPSConnection(HTTPSConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:
        _join_current(self)
        super().request(*args, **kwargs)


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


WATCHED_POOL_CLASSES = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


def watch_pools(manager: Any) -> None:
    """Make a urllib3 PoolManager (or ProxyManager) build pools whose connections join the current
    exchange. A manager with pool classes of its own (SOCKS) is left as it is: there only the
    per-read timeout and the body's deadline apply."""
    if isinstance(manager, urllib3.PoolManager) and manager.pool_classes_by_scheme is URLLIB3_POOL_CLASSES:
        manager.pool_classes_by_scheme = WATCHED_POOL_CLASSES


class _WatchedAdapter(requests.adapters.HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        watch_pools(self.poolmanager)

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **kwargs)
        watch_pools(manager)
        return manager


def watch_session(session: requests.Session) -> None:
    """Give a session's default adapters (http://, https://) watched pools; idempotent."""
    for prefix, adapter in list(session.adapters.items()):
        if type(adapter) is requests.adapters.HTTPAdapter:  # a default one: nothing configured to keep
            session.mount(prefix, _WatchedAdapter())
