"""Dead-man's-switch pings (healthchecks.io and similar): URL on success, URL/fail otherwise."""

from __future__ import annotations

import logging
from typing import Optional
from urllib.parse import urlsplit, urlunsplit

import requests

from .http_limits import AnswerTooLarge, requests_exchange

log = logging.getLogger(__name__)

PING_TIMEOUT = (5.0, 10.0)


def ping(url: Optional[str], success: bool, timeout: tuple = PING_TIMEOUT) -> bool:
    """GET the URL (or URL/fail). A failing ping is logged, never fatal: the sync itself is what counts."""
    if not url:
        return False
    target = ping_target(url, success)
    try:
        with requests.Session() as session:  # bounded: a trickling ping server must not hold the run
            requests_exchange(session, "GET", target, None, timeout).raise_for_status()
        return True
    except (requests.RequestException, AnswerTooLarge) as exc:
        host = urlsplit(url).hostname or "the healthcheck URL"
        log.warning("healthcheck ping to %s failed (%s); the sync itself is not affected", host, _why(exc))
        return False


def ping_target(url: str, success: bool) -> str:
    """URL, or URL with /fail added to its path: before a query string (healthchecks.io's ?create=1, an
    Uptime Kuma push URL's ?status=up), which would otherwise turn the failure ping into a success one."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + ("" if success else "/fail")))


def _why(exc: Exception) -> str:
    """What went wrong, in words a person can check against the healthcheck service (its status)."""
    response = getattr(exc, "response", None)
    if isinstance(exc, requests.HTTPError) and response is not None:
        return f"HTTP {response.status_code}{' ' + response.reason if response.reason else ''}"
    if isinstance(exc, requests.Timeout):
        return "no answer in time"
    if isinstance(exc, requests.ConnectionError):
        return "cannot connect"
    if isinstance(exc, AnswerTooLarge):
        return "answer too large"
    return exc.__class__.__name__
