"""Two-way consent: MailerLite unsubscribes, bounces and spam complaints written back to HubSpot.

Opt-in (SYNC_WRITE_BACK=true). It records facts in two properties of its own
(`mailerlite_status`, `mailerlite_status_changed_at`); it never changes HubSpot's subscription
status or `hs_email_optout`, which carry legal meaning and have no undo through the API.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Dict, List, Optional, Tuple

from .consent.ledger import seen_in_mailerlite
from .consent.rules import WRITE_BACK
from .hubspot import HubSpotWriter
from .hubspot_schema import BATCH_UPDATE_SIZE, CHANGED_PROPERTY, DATETIME_FORMAT, STATUS_PROPERTY
from .mailerlite import MailerLiteClient
from .mailerlite_answers import INACTIVE_STATUSES
from .mapping import normalise_email
from .state import State
from .summary import Summary

log = logging.getLogger(__name__)

STATUSES = INACTIVE_STATUSES  # the one list (mailerlite_answers.py)
DUE_KEY = "write_back_due_ms"


def hubspot_datetime(mailerlite_time: Optional[str]) -> Optional[str]:
    """MailerLite's "YYYY-MM-DD HH:MM:SS" (UTC) as ISO 8601, which HubSpot datetime properties take."""
    if not mailerlite_time:
        return None
    try:
        moment = datetime.strptime(str(mailerlite_time)[:19], "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc)
    except ValueError:
        return None
    return moment.strftime(DATETIME_FORMAT)


class WriteBack:
    def __init__(self, hubspot: HubSpotWriter, mailerlite: MailerLiteClient, state: State, summary: Summary,
                 interval_hours: float, dry_run: bool = False) -> None:
        self.hubspot = hubspot
        self.mailerlite = mailerlite
        self.state = state
        self.summary = summary
        self.interval_ms = int(interval_hours * 3_600_000)
        self.dry_run = dry_run
        self._had_failures = False

    def due(self, now_ms: int) -> bool:
        """Reading every inactive subscriber costs requests: only every interval, unless the last
        pass left failures to retry."""
        return self.state.is_due(DUE_KEY, now_ms)

    def run(self, now_ms: int) -> None:
        if not self.dry_run:
            for made in self.hubspot.ensure_write_back_properties():
                log.info("created HubSpot %s for write-back", made)
        pending: List[Tuple[str, str, Optional[str]]] = []
        for status in STATUSES:
            for subscriber in self.mailerlite.iter_subscribers(status=status):
                if not isinstance(subscriber, dict):
                    continue
                email = normalise_email(subscriber.get("email"))
                own = subscriber.get("status", status)  # the subscriber's own word over the filter's
                if not email or own != status:  # a listing that ignored its filter: not this status
                    continue
                changed_at = subscriber.get("unsubscribed_at") or subscriber.get("updated_at")
                pending.append((email, status, changed_at if isinstance(changed_at, str) else None))
                if len(pending) >= BATCH_UPDATE_SIZE:
                    self._handle(pending)
                    pending = []
        if pending:
            self._handle(pending)
        if not self.dry_run:
            self.state.set_json(DUE_KEY, now_ms if self._had_failures else now_ms + self.interval_ms)

    def _handle(self, seen: List[Tuple[str, str, Optional[str]]]) -> None:
        """Write the changed ones among up to 100 inactive subscribers (each kept in the consent ledger,
        written back or not: MailerLite's protection outlives the subscriber's deletion there)."""
        if not self.dry_run:
            seen_in_mailerlite(self.state, ((email, status) for email, status, _ in seen), WRITE_BACK)
        known = self.state.written_back([e for e, _, _ in seen])
        changed = [row for row in seen if known.get(row[0]) != (row[1], row[2])]
        if not changed:
            return
        emails = [e for e, _, _ in changed]
        ids = self.state.owners(emails)  # the contacts this sync created know their HubSpot id
        missing = [e for e in emails if e not in ids]
        if missing:
            ids.update(self.hubspot.ids_by_email(missing))
        inputs = []
        done: List[Tuple[str, str, Optional[str], Optional[str]]] = []
        for email, status, changed_at in changed:
            hubspot_id = ids.get(email)
            if hubspot_id is None:
                self.summary.add("write_back_unmatched")  # reported, never created in HubSpot
                done.append((email, status, changed_at, None))
                continue
            props: Dict[str, Optional[str]] = {STATUS_PROPERTY: status}
            when = hubspot_datetime(changed_at)
            if when:
                props[CHANGED_PROPERTY] = when
            inputs.append({"id": hubspot_id, "properties": props})
            done.append((email, status, changed_at, hubspot_id))
        if self.dry_run:  # read and counted as the real run would; nothing written, nothing recorded
            if inputs:
                log.info("dry run: the MailerLite status of %d HubSpot contact(s) would be written back", len(inputs))
            return
        failed = self.hubspot.update_contacts(inputs) if inputs else {}
        if failed:
            self._had_failures = True
            self.summary.add("write_back_failed", len(failed))
            for hubspot_id, reason in sorted(failed.items()):
                log.warning("HubSpot did not take the MailerLite status of contact %s (%s); retried next run",
                            hubspot_id, reason)
        recorded = [row for row in done if row[3] is None or row[3] not in failed]
        self.summary.add("written_back", sum(1 for row in recorded if row[3] is not None))
        self.state.record_written_back(recorded)

