"""The one place text is made safe to leave the program: tokens out, control characters escaped.

Every message, log record, state row and export passes through `redact` (secrets) and the
terminal- and log-bound ones through `safe_text` (escapes too). A server that echoes the
Authorization header back in an error body must not turn into a leaked token.
"""

from __future__ import annotations

import re
from typing import FrozenSet, Iterable, Set, Tuple

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


# A server may quote part of a token (shortened, or its end): any run of token characters that shares this
# many characters in a row with a token goes too. Shorter shared runs are what any two texts may share, and
# so are pieces without a digit: words a made-up token (the sandbox's) shares with a path or a command.
FRAGMENT_MIN = 12
_TOKEN_RUN_RE = re.compile(rf"[A-Za-z0-9._~+/=-]{{{FRAGMENT_MIN},}}")
_DIGIT_RE = re.compile("[0-9]")


_fragments_of: Tuple[FrozenSet[str], FrozenSet[str]] = (frozenset(), frozenset())  # (secrets, their fragments)


def _fragments() -> FrozenSet[str]:
    """Every FRAGMENT_MIN-character piece of the registered tokens (a set: one lookup per piece of text)."""
    global _fragments_of
    secrets = frozenset(_secrets)
    if _fragments_of[0] != secrets:
        pieces = (secret[start:start + FRAGMENT_MIN] for secret in secrets
                  for start in range(len(secret) - FRAGMENT_MIN + 1))
        _fragments_of = (secrets, frozenset(piece for piece in pieces if _DIGIT_RE.search(piece)))
    return _fragments_of[1]


def _holds_fragment(run: str, fragments: FrozenSet[str]) -> bool:
    return any(run[start:start + FRAGMENT_MIN] in fragments for start in range(len(run) - FRAGMENT_MIN + 1))


def redact(text: str) -> str:
    """`text` without the registered tokens (or any part of one FRAGMENT_MIN characters long) and without
    any `Bearer ...` value."""
    if not isinstance(text, str):
        text = str(text)
    if "earer" in text or "EARER" in text:
        text = _BEARER_RE.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    fragments = _fragments()
    if fragments:
        text = _TOKEN_RUN_RE.sub(lambda m: REDACTED if _holds_fragment(m.group(), fragments) else m.group(), text)
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
