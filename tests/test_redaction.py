"""The one redaction and escaping every outgoing text passes through (pure tables)."""

from __future__ import annotations

import pytest

from sync import redaction
from sync.redaction import escape_unsafe, redact, safe_text


@pytest.fixture(autouse=True)
def _secrets(monkeypatch):
    monkeypatch.setattr(redaction, "_secrets", set())
    redaction.register_secrets(["pat-na1-abc123", "ml-xyz789", "", "ab"])


@pytest.mark.parametrize("text,expected", [
    ("token pat-na1-abc123 echoed", "token [redacted] echoed"),
    ("Authorization: Bearer ml-xyz789", "Authorization: Bearer [redacted]"),
    ("Authorization: Bearer someone-elses.token", "Authorization: Bearer [redacted]"),
    ('{"auth": "bearer abc.def"}', '{"auth": "bearer [redacted]"}'),
    ("Bearer%20abc.def&x=1", "Bearer [redacted]&x=1"),
    ("Bearer [redacted]", "Bearer [redacted]"),  # idempotent: texts are redacted again on export
    ("ab and about", "ab and about"),  # a "token" of two letters is not one
    ("nothing here", "nothing here"),
])
def test_redact(text, expected):
    assert redact(text) == expected
    assert redact(redact(text)) == expected


@pytest.mark.parametrize("text,expected", [
    ("\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07"),
    ("a\rb\nc\t", "a\\x0db\\x0ac\\x09"),
    ("Bob\u202eevil", "Bob\\u202eevil"),
    ("zero\u200bwidth", "zero\\u200bwidth"),
    ("bad\ud800x", "bad\\ud800x"),
    ("\x9b31m", "\\x9b31m"),  # the one-byte CSI
    ("Zoë 🎉 مرحبا", "Zoë 🎉 مرحبا"),  # ordinary text untouched
])
def test_escape_unsafe(text, expected):
    assert escape_unsafe(text) == expected


def test_safe_text_redacts_and_escapes():
    assert safe_text("x\x1b[2J Bearer ml-xyz789") == "x\\x1b[2J Bearer [redacted]"
