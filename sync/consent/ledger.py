"""The consent ledger: what is known about each address, kept for good (state.py's consent_ledger).

For every address the sync ever wrote to MailerLite or saw there: HubSpot's opt-out as last read,
MailerLite's status as last seen (and from where), what the sync last sent, and the contact holding
it now. Every sighting goes in here, through `seen_in_mailerlite` (the listing, an upsert's answer,
a 422 refusal to reactivate, write-back's reads) and `Ledger.read` (HubSpot); each new row is made by
the rules (rules.py) from the stored one and the new evidence; the state only stores it. Rows are
read a page at a time and written only when they change, so a million addresses cost no memory and
an unchanged run writes nothing.
"""

from __future__ import annotations

import time
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple

from ..mailerlite_answers import INACTIVE
from ..state import LedgerRow, Result, State
from . import rules

CHUNK = 500  # addresses read and written per statement
# HubSpot's change times of the opted-out records read, kept for the run's consent decisions: a run
# decides on a contact within the page that read it, so a bound of a few pages costs no memory at
# a million contacts (the oldest go first; one forgotten only means "time unknown": the opt-out is
# sent, the safe side).
CHANGED_KEPT = 10_000


def _now() -> int:
    return int(time.time())


def seen_in_mailerlite(state: State, seen: Iterable[Tuple[str, str]], source: str,
                       now: Optional[int] = None) -> None:
    """MailerLite was seen holding each address (lower case) with its status, in `source` (rules.LISTING,
    rules.WRITE_BACK, ...): the one way a sighting reaches the ledger. An inactive status is kept for any
    address (MailerLite's protection outlives the subscriber's deletion there, and the contact may come
    later); another status only updates an address the ledger already has (an outsider's active
    subscriber is none of the sync's business). Streams: pass a listing page by page."""
    stamp = _now() if now is None else now
    chunk: List[Tuple[str, str]] = []
    for email, status in seen:
        if email and isinstance(status, str) and status:
            chunk.append((email, status))
        if len(chunk) >= CHUNK:
            _seen_chunk(state, chunk, source, stamp)
            chunk = []
    if chunk:
        _seen_chunk(state, chunk, source, stamp)


def _seen_chunk(state: State, chunk: Sequence[Tuple[str, str]], source: str, now: int) -> None:
    known = state.ledger([email for email, _ in chunk])
    changed: Dict[str, LedgerRow] = {}
    for email, status in chunk:
        row = changed.get(email) or known.get(email)
        if row is None and status.lower() not in INACTIVE:
            continue
        new = rules.seen_in_mailerlite(row, email, status, source, now)
        if row is None or new.mailerlite_status != row.mailerlite_status:
            changed[email] = new
    state.save_ledger(changed.values())
    state.keep_tombstones([e for e, new in changed.items()
                           if rules.followed_again(known.get(e), new.mailerlite_status or "")])


class Ledger:
    """One run's view of the ledger: the current page's rows, read in one query, and every change
    written at once (a dry run reads and decides the same, and writes nothing)."""

    def __init__(self, state: State, dry_run: bool = False, clock: Callable[[], float] = time.time) -> None:
        self.state = state
        self.dry_run = dry_run
        self.clock = clock
        self._page: Dict[str, LedgerRow] = {}
        self._asked: Set[str] = set()  # the page's addresses: one without a row has none (no query each)
        # HubSpot's readings of the page, written together (one transaction a page, not one a contact);
        # written before anything else is, so no later write starts from a row without them.
        self._readings: Dict[str, LedgerRow] = {}
        self._changed: Dict[str, int] = {}  # email -> newest opted-out record's lastmodifieddate (ms)

    def _now(self) -> int:
        return int(self.clock())

    def new_page(self, emails: Sequence[str]) -> None:
        self.flush()
        self._page = self.state.ledger(emails)
        self._asked = set(emails)

    def flush(self) -> None:
        """Write the readings kept for the page (the owner calls it at the end of the pass). A run stopped
        half-way loses the last page's: harmless, the next read of those contacts records them."""
        readings, self._readings = self._readings, {}
        if readings and not self.dry_run:
            self.state.save_ledger(readings.values())

    def row(self, email: str) -> Optional[LedgerRow]:
        if email in self._readings:
            return self._readings[email]
        if email in self._page or email in self._asked:
            return self._page.get(email)
        return self.state.ledger([email]).get(email)

    def _save(self, rows: Iterable[LedgerRow]) -> None:
        self.flush()
        rows = list(rows)
        for row in rows:
            if row.email in self._asked:
                self._page[row.email] = row
        if not self.dry_run:
            self.state.save_ledger(rows)

    # -- evidence ----------------------------------------------------------------------------------
    def opted_out_at(self, email: str, changed_ms: Optional[int]) -> None:
        """An opted-out record of the address, last changed in HubSpot at `changed_ms` (its
        lastmodifieddate): the time the decisions and the reading of it use (the newest of the run)."""
        if not email or changed_ms is None:
            return
        newest = max(changed_ms, self._changed.pop(email, 0))
        self._changed[email] = newest  # re-inserted: the most recent stay when the oldest are dropped
        while len(self._changed) > CHANGED_KEPT:
            del self._changed[next(iter(self._changed))]

    def read(self, email: str, opted_out: bool, source: str = rules.RECORD) -> None:
        """HubSpot's opt-out of an address, as read now: kept for an address the ledger has, and only
        when it changed (another value, or an opt-out made later than the one kept; an unsubscribe
        sent for an address makes its row)."""
        if not email:
            return
        row = self.row(email)
        changed_ms = self._changed.get(email) if opted_out else None
        if not rules.reading_changes(row, opted_out, changed_ms):
            return
        new = rules.read_in_hubspot(row, email, opted_out, source, self._now(), changed_ms)
        self._readings[email] = new
        if email in self._asked:
            self._page[email] = new

    def read_batch(self, readings: Dict[str, bool], source: str) -> None:
        """HubSpot's opt-outs of a batch of addresses (the sweep's, by address), kept as `read` keeps
        one, in one query and one write."""
        self.flush()
        now = self._now()
        known = self.state.ledger(list(readings))
        self._save(rules.read_in_hubspot(row, email, readings[email], source, now)
                   for email, row in known.items() if row.hubspot_opted_out != readings[email])

    def seen(self, seen: Iterable[Tuple[str, str]], source: str) -> None:
        """MailerLite seen holding these addresses so (see seen_in_mailerlite)."""
        self.flush()
        if not self.dry_run:
            seen_in_mailerlite(self.state, seen, source, self._now())
            self._page = self.state.ledger(sorted(self._asked))

    def answered(self, results: Iterable[Tuple[Result, bool]]) -> None:
        """MailerLite's answers to upserts, each with whether it carried the contact's opt-out: what was
        sent (an upsert carrying an opt-out MailerLite shows taken is an unsubscribe delivered, for the
        opt-out HubSpot's time says), and the status each answer names (a subscriber the sync just
        created is no sign the person signed up again: rules.seen_in_mailerlite)."""
        self.flush()
        now = self._now()
        wanted = [(r, opted) for r, opted in results if r.kind in ("created", "updated", "not_reactivated")]
        if not wanted:
            return
        known = self.state.ledger([r.email for r, _ in wanted])
        changed: Dict[str, LedgerRow] = {}
        for result, opted_out in wanted:
            before = changed.get(result.email) or known.get(result.email)
            if opted_out and result.kind != "not_reactivated" and rules.unsubscribe_shown(result.mailerlite_status):
                changed[result.email] = rules.unsubscribe_taken(before, result.email, result.mailerlite_status, now,
                                                                self._changed.get(result.email))
                continue
            row = rules.sent_upsert(before, result.email, now)
            if result.mailerlite_status:
                source = rules.REFUSAL if result.kind == "not_reactivated" else rules.UPSERT
                row = rules.seen_in_mailerlite(row, result.email, result.mailerlite_status, source, now,
                                               created_by_sync=result.kind == "created")
            changed[result.email] = row
        self._save(changed.values())

    def unsubscribed(self, email: str, status: Optional[str]) -> None:
        """MailerLite took the sync's unsubscribe of the address."""
        self._save([rules.unsubscribe_taken(self.row(email), email, status, self._now(),
                                            self._changed.get(email))])

    # -- decisions (rules.py, on the row) -----------------------------------------------------------
    def unsubscribe_due(self, email: str) -> bool:
        return rules.unsubscribe_due(self.row(email), self._changed.get(email))

    def opted_out_again(self, email: str) -> bool:
        return rules.opted_out_again(self.row(email), self._changed.get(email))

    def written(self, email: str) -> bool:
        return rules.written_by_sync(self.row(email))

    def never_made_active(self, email: str) -> bool:
        return rules.never_made_active(self.row(email))
