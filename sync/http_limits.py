"""Bounded HTTP answers for both API clients: the whole exchange within SYNC_HTTP_TIMEOUT (and
within the run's SYNC_MAX_RUNTIME), the body within a size cap (tunables.max_body_bytes).

A socket timeout applies to each read, so a server trickling one byte a second would keep a
run (and its lock) alive for ever, and a runaway answer would fill the memory. The exchange as
a whole, from connecting to the last byte, is ended at its deadline by exchange_deadline.py
(which shuts its socket down); bodies are read in pieces with the deadline checked between
them, and the size counted. The text is decoded with `surrogateescape` so one contact's
invalid UTF-8 cannot make a whole page unreadable (mapping rejects that contact instead).
"""

from __future__ import annotations

import time
from typing import Any, Tuple

import requests
import urllib3

from .errors import AbortRun
from .exchange_deadline import Exchange, exchange, watch_pools, watch_session
from .tunables import DEFAULTS

READ_PIECE = 64 * 1024


class AnswerTooSlow(TimeoutError):
    """The answer did not arrive in full within the request's total time."""


class RequestsTooSlow(requests.exceptions.Timeout):
    """The same for `requests`, whose callers catch RequestException."""


class AnswerTooLarge(AbortRun):
    """An answer beyond any sane size: an error, not a reason to retry or to buy more memory."""


def read_body(response: urllib3.response.BaseHTTPResponse, deadline: float,
              cap: int = DEFAULTS.max_body_bytes) -> bytes:
    """The whole (decoded) body by `deadline` (time.monotonic), or AnswerTooSlow/AnswerTooLarge."""
    pieces = []
    size = 0
    try:
        while True:
            if time.monotonic() > deadline:
                raise AnswerTooSlow("the answer took longer than SYNC_HTTP_TIMEOUT")
            piece = response.read1(READ_PIECE, decode_content=True)  # what one read gives: never waits to fill
            if not piece:  # the end of the body
                break
            size += len(piece)
            if size > cap:
                raise AnswerTooLarge(f"an API answer is larger than {cap / 1_000_000:g} MB; stopped, the next "
                                     f"run tries again")
            pieces.append(piece)
    except BaseException:
        response.close()  # a half-read connection must not go back to the pool
        raise
    response.release_conn()
    return b"".join(pieces)


def decode(body: bytes) -> str:
    """UTF-8 text; invalid bytes become lone surrogates, which the mapping rejects per contact."""
    return body.decode("utf-8", "surrogateescape")


class _BoundedPool:
    """hubspot-api-client's urllib3 pool, with every answer read within the request's total time
    and the size cap, error answers too (the generated client reads those itself, unbounded)."""

    def __init__(self, pool: Any, max_bytes: int) -> None:
        self._pool = pool
        self._max_bytes = max_bytes

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)

    def request(self, method: str, url: str, *args: Any, timeout: Any = None, **kwargs: Any) -> Any:
        kwargs["preload_content"] = False
        with exchange(_total_seconds(timeout)) as current:
            try:
                response = self._pool.request(method, url, *args, timeout=timeout, **kwargs)
                body = read_body(response, current.deadline, self._max_bytes)
            except (urllib3.exceptions.HTTPError, OSError):
                _raise_if_expired(current)
                raise
            _raise_if_expired(current)  # a body cut by the deadline can look complete
        return urllib3.HTTPResponse(body=body, headers=response.headers, status=response.status,
                                    reason=response.reason, preload_content=True, decode_content=False)


def _raise_if_expired(current: Exchange) -> None:
    if current.expired:
        raise AnswerTooSlow("the answer took longer than SYNC_HTTP_TIMEOUT") from None


def _total_seconds(timeout: Any) -> float:
    """The read part of what the generated client passes (a urllib3 Timeout built from our tuple)."""
    seconds = getattr(timeout, "_read", None) if isinstance(timeout, urllib3.Timeout) else timeout
    if isinstance(seconds, tuple):
        seconds = seconds[-1]
    return float(seconds) if isinstance(seconds, (int, float)) else 60.0


def bound_api_client(api_client: Any, max_bytes: int = DEFAULTS.max_body_bytes) -> None:
    """Put the bounded pool under hubspot-api-client's ApiClient (a fresh one: HubSpotReader builds its
    own). No capability check: were a client version to lack either attribute, construction fails loudly
    (and the tests with it) rather than the run going on unbounded."""
    rest = api_client.rest_client
    watch_pools(rest.pool_manager)
    rest.pool_manager = _BoundedPool(rest.pool_manager, max_bytes)


def requests_exchange(session: requests.Session, method: str, url: str, body: Any,
                        timeout: Tuple[float, float], max_bytes: int = DEFAULTS.max_body_bytes) -> requests.Response:
    """session.request, streamed, so that the whole answer is read within the total time
    (MailerLite's client and the healthcheck ping)."""
    watch_session(session)
    with exchange(timeout[1]) as current:
        try:
            resp = session.request(method, url, json=body, timeout=timeout, stream=True)
            content = read_body(resp.raw, current.deadline, max_bytes)
            _raise_if_expired(current)  # a body cut by the deadline can look complete
        except AnswerTooSlow as exc:
            raise RequestsTooSlow(str(exc)) from None
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            if current.expired:
                raise RequestsTooSlow("the answer took longer than SYNC_HTTP_TIMEOUT") from None
            if isinstance(exc, requests.RequestException):
                raise
            raise requests.exceptions.ConnectionError(exc.__class__.__name__) from None
    resp._content = content  # what requests' .content/.json() read from
    resp._content_consumed = True
    return resp
