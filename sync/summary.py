"""One run's outcome: the counts, the exit code and the message, passed explicitly to whoever counts."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Dict

from .errors import EXIT_OK

# The counts of the --json summary, in the order people read them. Keys are a promise: add, never rename.
SUMMARY_COUNTS = ("read", "created", "updated", "unchanged", "skipped", "rejected", "failed", "not_reactivated",
                  "left_scope", "unsubscribed", "mass_leave_held", "written_back", "write_back_unmatched",
                  "write_back_failed", "write_back_requests", "engagement_updated", "engagement_unmatched",
                  "engagement_requests", "consent_checked", "consent_pending", "adopted", "repaired")


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
