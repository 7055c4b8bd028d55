"""A progress bar for people watching a terminal; nothing at all under a scheduler."""

from __future__ import annotations

import shutil
import sys
import threading
from collections import Counter
from typing import Optional, TextIO

from tqdm import tqdm

WAIT_SHOWN_AFTER = 2.0  # seconds: shorter pauses are not worth a word


class Progress:
    def __init__(self, enabled: bool, stream: Optional[TextIO] = None) -> None:
        self.enabled = enabled
        self._bar: Optional[tqdm] = None
        self._stream = stream or sys.stderr
        self._lock = threading.Lock()

    def _ensure(self) -> Optional[tqdm]:
        if self.enabled and self._bar is None:
            # A terminal that reports no size (some SSH or IDE consoles) would get no bar at all.
            size = shutil.get_terminal_size((100, 20))
            self._bar = tqdm(total=None, unit=" contacts", file=self._stream, ncols=size.columns or 100,
                             nrows=size.lines or 20,
                             desc="HubSpot -> MailerLite", leave=False, mininterval=0.2)
        return self._bar

    def update(self, counts: Counter, total: Optional[int] = None) -> None:
        bar = self._ensure()
        if bar is None:
            return
        with self._lock:
            if total and bar.total != total:
                bar.total = total  # known: tqdm shows an ETA
            bar.n = counts["read"]
            sent = counts["created"] + counts["updated"]
            postfix = f"sent {sent}, unchanged {counts['unchanged']}"
            if counts["rejected"] or counts["failed"]:
                postfix += f", rejected {counts['rejected']}, failed {counts['failed']}"
            bar.set_postfix_str(postfix, refresh=False)
            bar.refresh()

    def waiting(self, reason: str, seconds: float, who: str) -> None:
        """Say so when a rate limit makes the run wait for more than a moment (until the next update)."""
        bar = self._ensure()
        if bar is None or seconds < WAIT_SHOWN_AFTER:
            return
        what = "rate limit" if "rate limit" in reason else f"recovery ({reason})"
        with self._lock:
            bar.set_postfix_str(f"waiting {seconds:.0f} s for {who}'s {what}", refresh=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
