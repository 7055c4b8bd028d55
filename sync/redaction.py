"""The one place text is made safe to leave the program: tokens out, control characters escaped.

Every message, log record, state row and export passes through `redact` (secrets) and the
terminal- and log-bound ones through `safe_text` (escapes too). A server that echoes the
Authorization header back in an error body must not turn into a leaked token.
"""

from __future__ import annotations

import re
from typing import Iterable, Set

REDACTED = "[redacted]"
_secrets: Set[str] = set()
# Any bearer credential, whoever's it is (a proxy may echo a header we never set ourselves).
_BEARER_RE = re.compile(r"(Bearer)(\s+|%20|\+)(?!\[redacted\])[^\s\"',;&}\]]+", re.IGNORECASE)  # idempotent
# What must never reach a terminal or a log line raw: C0/C1 controls and DEL (escape
# sequences, carriage returns that hide a line), bidirectional overrides that reorder what is
# read, zero-width characters that hide text, lone surrogates (invalid text).
_UNSAFE_RE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069"
                        "\ufeff\ud800-\udfff]")
# Characters that make an email address look like another (never valid in an address).
INVISIBLE_RE = re.compile("[\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")
SURROGATE_RE = re.compile("[\ud800-\udfff]")


def register_secrets(secrets: Iterable[str]) -> None:
    """Remember the tokens of this run so that any text holding them can be cleaned."""
    for secret in secrets:
        if secret and len(secret) >= 4:  # a one-letter "token" would redact every word
            _secrets.add(secret)


def redact(text: str) -> str:
    """`text` without the registered tokens and without any `Bearer ...` value."""
    if not isinstance(text, str):
        text = str(text)
    if "earer" in text or "EARER" in text:
        text = _BEARER_RE.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def clip(text: object, limit: int) -> str:
    """`text` redacted, then cut to `limit` characters: in that order, because a token cut in two
    is no longer recognised, and its first part would go out as it is."""
    return redact(str(text))[:limit]


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xff else f"\\u{code:04x}"


def escape_unsafe(text: str) -> str:
    """Control, bidi and zero-width characters and lone surrogates as visible escapes."""
    return _UNSAFE_RE.sub(_escape, text)


def safe_text(text: object) -> str:
    """Redacted and escaped: fit for a terminal or one log line."""
    return escape_unsafe(redact(str(text)))
