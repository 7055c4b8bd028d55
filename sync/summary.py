"""One run's outcome: the counts, the exit code and the message, passed explicitly to whoever counts."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, Optional

from .errors import EXIT_OK

# The counts of the --json summary, in the order people read them. Keys are a promise: add, never rename.
SUMMARY_COUNTS = ("read", "created", "updated", "unchanged", "skipped", "rejected", "failed", "not_reactivated",
                  "left_scope", "unsubscribed", "mass_leave_held", "written_back", "write_back_unmatched",
                  "write_back_failed", "write_back_requests", "engagement_updated", "engagement_unmatched",
                  "engagement_requests", "consent_checked", "consent_pending", "adopted", "repaired",
                  "waiting")


@dataclass
class Summary:
    mode: str
    dry_run: bool
    counts: Counter = field(default_factory=Counter)
    duration_seconds: float = 0.0
    exit_code: int = EXIT_OK
    message: str = ""
    hubspot_requests: int = 0
    mailerlite_requests: int = 0

    def add(self, key: str, n: int = 1) -> None:
        self.counts[key] += n

    def __getitem__(self, key: str) -> int:
        return int(self.counts.get(key, 0))

    def as_dict(self) -> Dict[str, object]:
        out: Dict[str, object] = {"mode": self.mode, "dry_run": self.dry_run}
        out.update({k: int(self.counts.get(k, 0)) for k in SUMMARY_COUNTS})
        out.update(would_send=int(self.counts.get("would_send", 0)),
                   duration_seconds=round(self.duration_seconds, 3), exit_code=self.exit_code,
                   hubspot_requests=self.hubspot_requests, mailerlite_requests=self.mailerlite_requests,
                   message=self.message)
        return out


def failure_dict(exit_code: int, message: str, summary: Optional[Summary] = None) -> Dict[str, object]:
    """--json for a run that ended by an exception: `exit_code` and `message` always (`error` too, the key
    this object first had), and the run's counts when it had begun (stopped by a signal or a bug)."""
    out: Dict[str, object] = summary.as_dict() if summary is not None else {}
    out.update(exit_code=exit_code, message=message, error=message)
    return out


def attach(exc: BaseException, summary: Summary) -> None:
    """Hand what a run did to whoever catches the signal or bug that stopped it (the exception goes on up)."""
    exc.run_summary = summary  # type: ignore[attr-defined]


def attached(exc: BaseException) -> Optional[Summary]:
    found = getattr(exc, "run_summary", None)
    return found if isinstance(found, Summary) else None
