"""The consent sweep: follow opt-outs of addresses the sync let go of.

HubSpot keeps an opt-out with the address, so a person the sync no longer tracks (their contact
was deleted, merged away, changed address or left the sync's scope) can still opt out, and
MailerLite must hear of it. The state keeps every such address ("tombstones", sync/state.py);
once a day by default (SYNC_CONSENT_SWEEP_HOURS) and on every --full run, the sweep reads their
status by address, a hundred per HubSpot request, streamed from the state file a page at a time,
and unsubscribes the opted-out ones through the consent writer (stored before tried, retried
until MailerLite takes it); an unsubscribed address is then dropped. It costs one HubSpot request
per 100 tombstones (two when the mapping names per-subscription opt-outs) and no MailerLite
request unless someone opted out.
"""

from __future__ import annotations

import logging
from typing import Optional

from ..dry_run_report import UNSUBSCRIBE, PlanReport
from ..hubspot_schema import CONSENT_BATCH_SIZE
from ..state import PendingAction, State
from ..summary import Summary
from .actions import ConsentWriter
from .by_address import AddressConsent
from .rules import ADDRESS

log = logging.getLogger(__name__)

SWEEP_DUE_KEY = "consent_sweep_due_ms"  # state meta: when the next sweep is due (epoch ms)
CHECKED = "consent_checked"  # --json: addresses the sweep read by address
REASON = "opted out in HubSpot after the sync let the address go (consent sweep)"


class ConsentSweep:
    def __init__(self, reader: AddressConsent, state: State, consent: ConsentWriter, summary: Summary,
                 hours: float, dry_run: bool = False, plan: Optional[PlanReport] = None) -> None:
        self.plan = plan  # a dry run's listing of planned actions, when asked for
        self.reader = reader
        self.state = state
        self.consent = consent
        self.summary = summary
        self.hours = hours
        self.dry_run = dry_run

    def due(self, now_ms: int, full: bool) -> bool:
        """Always with --full; otherwise once every `hours`."""
        return full or self.state.is_due(SWEEP_DUE_KEY, now_ms)

    def run(self, now_ms: int) -> bool:
        """Sweep every tombstone; False when the token cannot read consent by address (then nothing is
        done, and it is tried again when next due: a run without the scope costs one request a day)."""
        done = self._sweep()
        if not self.dry_run:
            self.state.set_json(SWEEP_DUE_KEY, now_ms + int(self.hours * 3_600_000))
        return done

    def due_next_run(self, now_ms: int) -> None:
        """HubSpot kept failing on consent by address in this run: the addresses it let go of unread
        (and any the sweep could not read) are read by the next run's sweep, not a day later."""
        if not self.dry_run:
            self.state.set_json(SWEEP_DUE_KEY, now_ms)

    def _sweep(self) -> bool:
        after = ""
        while True:
            page = self.state.tombstones(after, CONSENT_BATCH_SIZE)
            if not page:
                return True
            opted = self.reader.read_batch([email for email, _ in page])
            if opted is None:
                return False
            self.summary.add(CHECKED, len(page))
            # Each address's opt-out as read by address goes in the consent ledger (before any unsubscribe).
            self.consent.ledger.read_batch({email: email in opted for email, _ in page}, ADDRESS)
            for email, hubspot_id in page:
                if email not in opted:
                    continue
                if self.dry_run:
                    self.summary.add("would_send")
                    if self.plan is not None:
                        self.plan.add(UNSUBSCRIBE, email, hubspot_id, detail=REASON)
                    continue
                log.info("%s opted out in HubSpot after the sync let it go; unsubscribed", email)
                self.consent.apply(PendingAction(hubspot_id, email, None, True, frozenset(), False, REASON))
            after = page[-1][0]
