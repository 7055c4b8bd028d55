"""A progress bar for people watching a terminal; nothing at all under a scheduler."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import Counter
from typing import List, Optional, TextIO

from tqdm import tqdm

WAIT_SHOWN_AFTER = 2.0  # seconds: shorter pauses are not worth a word
RATE_SHOWN_AFTER = 2.0  # seconds: a rate over the first page alone is meaningless ("5592405 contacts/s")
MIN_BAR = 10  # characters of bar kept whatever else is cut
DEFAULT_COLUMNS = 80


def cut(text: str, width: int) -> str:
    """`text` within `width` columns, "..." marking what was cut."""
    return text if len(text) <= width else text[:max(0, width - 3)] + "..."


def terminal_columns(stream: TextIO, default: int = DEFAULT_COLUMNS) -> int:
    """The width of the terminal `stream` writes to (COLUMNS wins); `default` when it has none."""
    try:
        from_env = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        from_env = 0
    if from_env > 0:
        return from_env
    try:
        return os.get_terminal_size(stream.fileno()).columns or default
    except (AttributeError, OSError, ValueError):
        return default


def fit(columns: int, label: str, count: str, notes: List[str]) -> str:
    """The bar's format for this width. Notes come most important first: the first one outranks
    the label, the label outranks the others; whatever does not fit is dropped before the bar
    gets narrower than MIN_BAR. A line one character short of the width never wraps."""
    room = columns - 1
    first_room = room - len("100%||") - 1 - len(count) - 2 - MIN_BAR
    if notes and len(notes[0]) > first_room >= 12:  # rather cut the first note than lose it
        notes = [notes[0][:first_room - 3] + "..."] + notes[1:]
    label, count, notes = _literal(label), _literal(count), [_literal(n) for n in notes]
    choices = [(True, keep) for keep in range(len(notes), 0, -1)]
    choices += [(False, keep) for keep in range(len(notes), -1, -1)]
    for use_label, keep in choices:
        text = ", ".join(notes[:keep])
        left = f"{label} " if use_label else ""
        fixed = _shown(left) + len("100%||") + 1 + _shown(count) + (2 + _shown(text) if text else 0)
        if room - fixed >= MIN_BAR:
            return left + "{percentage:3.0f}%|{bar}| " + count + (f", {text}" if text else "")
    return "{percentage:3.0f}%|{bar}|"


def _literal(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")  # tqdm formats bar_format


def _shown(text: str) -> int:
    return len(text.replace("{{", "{").replace("}}", "}"))


class Progress:
    def __init__(self, enabled: bool, stream: Optional[TextIO] = None) -> None:
        self.enabled = enabled
        self._bar: Optional[tqdm] = None
        self._stream = stream or sys.stderr
        self._lock = threading.Lock()
        self._started: Optional[float] = None
        self._read = 0
        self._total: Optional[int] = None
        self._notes: List[str] = []

    def _ensure(self) -> Optional[tqdm]:
        if self.enabled and self._bar is None:
            self._started = time.monotonic()
            # nrows given: tqdm draws nothing when a terminal reports no size (some SSH or IDE consoles).
            self._bar = tqdm(total=None, file=self._stream, leave=False, mininterval=0.2, bar_format="{desc}",
                             ncols=terminal_columns(self._stream) - 1, nrows=20)
        return self._bar

    def _draw(self, bar: tqdm) -> None:
        columns = terminal_columns(self._stream)
        bar.ncols = columns - 1  # a line as wide as the terminal wraps on some terminals
        label = "HubSpot -> MailerLite"
        if self._total:
            count = f"{self._read}/{self._total}"
            bar.total = max(self._total, self._read)
            bar.n = min(self._read, bar.total)
            bar.bar_format = fit(columns, label, count, self._notes)
        else:  # no total known: no bar, a count
            text = ", ".join([f"{label}: read {self._read}"] + self._notes)
            bar.bar_format = _literal(text[:columns - 1])
        bar.refresh()

    def _rate(self) -> Optional[str]:
        elapsed = time.monotonic() - (self._started or time.monotonic())
        if elapsed < RATE_SHOWN_AFTER or not self._read:
            return None
        return f"{self._read / elapsed:,.0f} contacts/s"

    def update(self, counts: Counter, total: Optional[int] = None) -> None:
        bar = self._ensure()
        if bar is None:
            return
        with self._lock:
            if total:
                self._total = total  # known: a bar with a percentage
            self._read = counts["read"]
            notes = [f"sent {counts['created'] + counts['updated']}"]
            if counts["rejected"] or counts["failed"]:
                notes.append(f"rejected {counts['rejected']}, failed {counts['failed']}")
            rate = self._rate()
            if rate:
                notes.append(rate)
            notes.append(f"unchanged {counts['unchanged']}")
            self._notes = notes
            self._draw(bar)

    def waiting(self, reason: str, seconds: float, who: str) -> None:
        """Say so when a rate limit makes the run wait for more than a moment (until the next update)."""
        bar = self._ensure()
        if bar is None or seconds < WAIT_SHOWN_AFTER:
            return
        what = "rate limit" if "rate limit" in reason else f"recovery ({reason})"
        with self._lock:
            self._notes = [f"waiting {seconds:.0f} s for {who}'s {what}"]
            self._draw(bar)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
