"""Where an API client connects and where its token came from, in words a user can act on.

A network error names the host, the port and the setting that chose them (never an exception
class); a refused token names its setting and the file (or the environment) it was read from.
"""

from __future__ import annotations

from urllib.parse import urlsplit


def endpoint_label(base_url: str, setting: str = "", default: str = "") -> str:
    """`host:port (set by SETTING)`, or `(the default; SETTING is not set)`."""
    parts = urlsplit(base_url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    where = f"{parts.hostname or base_url}:{port}"
    if not setting:
        return where
    if default and base_url.rstrip("/") == default.rstrip("/"):
        return f"{where} (the default; {setting} is not set)"
    return f"{where} (set by {setting})"


def connection_refused(text: str) -> bool:
    """Whether an exception's text says the connection was refused (nothing listens at that port)."""
    lowered = text.lower()
    return "connection refused" in lowered or "errno 111" in lowered or "econnrefused" in lowered \
        or "winerror 10061" in lowered


def network_failure(endpoint: str, text: str) -> str:
    """The reason for a failed exchange: a timeout or a connection that could not be made or held.
    `text` is the exception's text, read only to tell a timeout apart; it is never shown."""
    if "timed out" in text.lower() or "timeout" in text.lower():
        return f"no answer in time from {endpoint}"
    return f"no connection to {endpoint}"
