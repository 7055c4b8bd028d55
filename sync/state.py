"""Durable sync state in one SQLite file: bookmark, what each contact last looked like in
MailerLite, contacts with problems, and a row per run. Never holds a secret.

It stores and answers queries; it decides nothing. Consent (the consent ledger, pending actions and
their back-off, tombstones) is decided by the consent owner (sync/consent/), which tells this module
what to keep and what to drop. One rule lives here as storage, on purpose: the tombstones table is
kept in step with the contacts table by triggers (migration 7). A tombstone is, by definition, an
address the contacts table lost without an unsubscribe; every path that changes or deletes a
contact row (a departure applied, a merge taken over, an address changed, a full pass) then makes
one without having to remember to, so no future path can forget an address someone may opt out of.
Migration 9 extends it to the address of a `failed` problem (an upsert MailerLite may have taken)
that no contacts row holds once the problem goes, changes address or stops being `failed`.
A second one, for the same reason: `record` voids a departure still pending for a contact recorded
as synced again with that address, in the same transaction (a run killed in between must never
leave a departure that the next run would apply to a contact back in the sync).
"""

from __future__ import annotations

import functools
import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, FrozenSet, Iterable, Iterator, List, Optional, Sequence, Set, Tuple, TypeVar

from .errors import EXIT_ABORTED, StateError, StateWriteError
from .private_files import create_private, foreign_owner, foreign_state_message, warn_if_shared
from .redaction import clip

SCHEMA_VERSION = 14
BUSY_TIMEOUT_S = 10.0  # how long to wait for another program's lock on the file

# Each version's statements, applied in order to bring any older file up to date.
MIGRATIONS: Dict[int, Tuple[str, ...]] = {
    1: (
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        # One row per HubSpot contact MailerLite has accepted (or refused to reactivate).
        """CREATE TABLE contacts (
            hubspot_id INTEGER PRIMARY KEY,
            email TEXT NOT NULL,
            fingerprint TEXT NOT NULL,      -- hash of the mapped subscriber last accepted
            fields_set TEXT NOT NULL,       -- field keys the sync filled, comma-separated (to clear later)
            subscriber_id TEXT,
            outcome TEXT NOT NULL,          -- created | updated | not_reactivated | adopted
            synced_at INTEGER NOT NULL)""",
        # Contacts currently rejected (bad data: retried when they change) or failed (retried next run).
        """CREATE TABLE problems (
            hubspot_id INTEGER PRIMARY KEY,
            email TEXT NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('rejected', 'failed')),
            reason TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            attempts INTEGER NOT NULL,
            first_seen INTEGER NOT NULL,
            last_seen INTEGER NOT NULL)""",
        """CREATE TABLE runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            started_at INTEGER NOT NULL,
            finished_at INTEGER,
            mode TEXT NOT NULL,
            dry_run INTEGER NOT NULL,
            read INTEGER, created INTEGER, updated INTEGER, unchanged INTEGER, skipped INTEGER,
            rejected INTEGER, failed INTEGER, not_reactivated INTEGER,
            exit_code INTEGER,
            message TEXT)""",
    ),
    2: (
        # Group names the sync put the subscriber in (to take it out when a rule stops matching).
        "ALTER TABLE contacts ADD COLUMN groups_set TEXT NOT NULL DEFAULT ''",
        # The last full pass that saw the contact: those a complete pass missed have left HubSpot.
        "ALTER TABLE contacts ADD COLUMN seen_run INTEGER",
        "ALTER TABLE runs ADD COLUMN left_scope INTEGER",
        # Members of the HubSpot lists the mapping uses, as of the last complete run.
        """CREATE TABLE list_members (
            list_id TEXT NOT NULL,
            hubspot_id INTEGER NOT NULL,
            PRIMARY KEY (list_id, hubspot_id)) WITHOUT ROWID""",
    ),
    3: (
        # Who owns an address: two HubSpot contacts with one email must not fight over it.
        "CREATE INDEX contacts_email ON contacts(email)",
    ),
    4: (
        # MailerLite statuses written back to HubSpot (unsubscribed, bounced, junk), so each
        # change is written once. hubspot_id NULL: no HubSpot contact has the address.
        """CREATE TABLE write_back (
            email TEXT PRIMARY KEY,
            status TEXT NOT NULL,
            changed_at TEXT,
            hubspot_id INTEGER,
            written_at INTEGER NOT NULL)""",
    ),
    5: (
        # Consent actions decided but not yet taken by MailerLite (an unsubscribe, leaving groups):
        # kept and retried every run until they are. `forget`: the contact left the sync and is
        # forgotten once its action is applied.
        """CREATE TABLE pending_actions (
            hubspot_id INTEGER NOT NULL,
            email TEXT NOT NULL,
            subscriber_id TEXT,
            unsubscribe INTEGER NOT NULL,
            groups_set TEXT NOT NULL DEFAULT '',
            forget INTEGER NOT NULL,
            reason TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (hubspot_id, email))""",
        # Opt-outs delivered on their own (the full upsert was refused, the contact is a duplicate or
        # out of scope), so each is sent once, not every run.
        "CREATE TABLE optouts_sent (email TEXT PRIMARY KEY, hubspot_id INTEGER, sent_at INTEGER NOT NULL)",
    ),
    6: (
        # Engagement figures (emails sent, opens, clicks, rates) as last written to each HubSpot
        # contact, so only changed ones are written; `pending`: figures HubSpot refused, retried
        # next run without reading MailerLite again.
        """CREATE TABLE engagement (
            hubspot_id INTEGER PRIMARY KEY,
            figures TEXT,
            pending TEXT,
            written_at INTEGER)""",
    ),
    7: (
        # Consent follows the address: every address the sync wrote to MailerLite that no tracked
        # contact holds any more, and that was not unsubscribed on the way out, is kept here so the
        # consent sweep (sync/consent/sweep.py) can follow a later opt-out of it. Kept by triggers,
        # so no path that lets an address go (forgotten, merged away, changed) can miss one.
        "CREATE TABLE tombstones (email TEXT PRIMARY KEY, hubspot_id INTEGER NOT NULL, since INTEGER NOT NULL)",
        """CREATE TRIGGER tombstone_on_forget AFTER DELETE ON contacts
            WHEN NOT EXISTS (SELECT 1 FROM contacts WHERE email = OLD.email)
            BEGIN INSERT OR REPLACE INTO tombstones(email, hubspot_id, since)
                  VALUES (OLD.email, OLD.hubspot_id, CAST(strftime('%s', 'now') AS INTEGER)); END""",
        """CREATE TRIGGER tombstone_on_email_change AFTER UPDATE OF email ON contacts
            WHEN OLD.email != NEW.email AND NOT EXISTS (SELECT 1 FROM contacts WHERE email = OLD.email)
            BEGIN INSERT OR REPLACE INTO tombstones(email, hubspot_id, since)
                  VALUES (OLD.email, OLD.hubspot_id, CAST(strftime('%s', 'now') AS INTEGER)); END""",
        """CREATE TRIGGER tombstone_held_again AFTER INSERT ON contacts
            BEGIN DELETE FROM tombstones WHERE email = NEW.email; END""",
        """CREATE TRIGGER tombstone_held_again_by_change AFTER UPDATE OF email ON contacts
            BEGIN DELETE FROM tombstones WHERE email = NEW.email; END""",
    ),
    8: (
        # A consent action that keeps failing waits its own back-off (epoch ms; 0: the next run) and
        # is listed by --rejected with when it first and last failed (epoch seconds).
        "ALTER TABLE pending_actions ADD COLUMN next_try INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE pending_actions ADD COLUMN first_failed INTEGER",
        "ALTER TABLE pending_actions ADD COLUMN last_failed INTEGER",
    ),
    9: (
        # Migration 7's rule for the addresses the sync tried to write and may have written: an upsert
        # that failed (a timeout or 5xx after MailerLite may have taken it) leaves a `failed` problem
        # and no contacts row. When that problem goes (the contact forgotten, deleted, or synced under
        # another address) or stops being `failed` or changes address, and no contacts row holds its
        # address, the address is kept as a tombstone, so a later opt-out of it is followed. `rejected`
        # ones were refused, never written: nothing to follow. A contacts row that takes the address
        # (the retry succeeded) drops it again (tombstone_held_again).
        """CREATE TRIGGER tombstone_on_failed_problem_gone AFTER DELETE ON problems
            WHEN OLD.kind = 'failed' AND OLD.email != ''
                 AND NOT EXISTS (SELECT 1 FROM contacts WHERE email = OLD.email)
            BEGIN INSERT OR REPLACE INTO tombstones(email, hubspot_id, since)
                  VALUES (OLD.email, OLD.hubspot_id, CAST(strftime('%s', 'now') AS INTEGER)); END""",
        """CREATE TRIGGER tombstone_on_failed_problem_change AFTER UPDATE OF email, kind ON problems
            WHEN OLD.kind = 'failed' AND OLD.email != '' AND (OLD.email != NEW.email OR NEW.kind != 'failed')
                 AND NOT EXISTS (SELECT 1 FROM contacts WHERE email = OLD.email)
            BEGIN INSERT OR REPLACE INTO tombstones(email, hubspot_id, since)
                  VALUES (OLD.email, OLD.hubspot_id, CAST(strftime('%s', 'now') AS INTEGER)); END""",
    ),
    10: (
        # The consent ledger: one row per address the sync ever wrote to MailerLite or saw there, with
        # the evidence every consent decision is made from (sync/consent/rules.py decides, from the row
        # and the new evidence; this only stores): HubSpot's opt-out as last read (1, 0; NULL never
        # read), when and from where (record | address | archived); MailerLite's status as last seen,
        # when and from where (listing | upsert | refusal | write_back | unsubscribe | migrated); what
        # the sync last sent (upsert | unsubscribe) and when (epoch seconds); the contact syncing it now
        # (kept by the triggers below; NULL: none). It replaces optouts_sent, whose rows were kept under
        # a contact id nothing read again once that contact was gone.
        """CREATE TABLE consent_ledger (
            email TEXT PRIMARY KEY,
            hubspot_opted_out INTEGER,
            hubspot_source TEXT,
            hubspot_read_at INTEGER,
            mailerlite_status TEXT,
            mailerlite_source TEXT,
            mailerlite_seen_at INTEGER,
            sent TEXT,
            sent_at INTEGER,
            holder INTEGER) WITHOUT ROWID""",
        # What earlier runs knew, kept: every synced address (what was sent, who holds it; a contact kept
        # as not_reactivated is one MailerLite held inactive), every status written back, every opt-out
        # delivered on its own (with its time), every tombstone and every pending action's address.
        """INSERT INTO consent_ledger(email, holder, sent, sent_at)
            SELECT email, MIN(hubspot_id), 'upsert', MAX(synced_at) FROM contacts GROUP BY email""",
        """UPDATE consent_ledger SET mailerlite_status='unsubscribed', mailerlite_source='migrated',
            mailerlite_seen_at=sent_at
            WHERE email IN (SELECT email FROM contacts WHERE outcome='not_reactivated')""",
        """INSERT OR IGNORE INTO consent_ledger(email) SELECT email FROM write_back""",
        """UPDATE consent_ledger SET
            mailerlite_status=(SELECT status FROM write_back w WHERE w.email=consent_ledger.email),
            mailerlite_source='write_back',
            mailerlite_seen_at=(SELECT written_at FROM write_back w WHERE w.email=consent_ledger.email)
            WHERE email IN (SELECT email FROM write_back)""",
        """INSERT OR IGNORE INTO consent_ledger(email) SELECT email FROM optouts_sent""",
        """UPDATE consent_ledger SET sent='unsubscribe',
            sent_at=(SELECT sent_at FROM optouts_sent o WHERE o.email=consent_ledger.email),
            hubspot_opted_out=1, hubspot_source='record',
            hubspot_read_at=(SELECT sent_at FROM optouts_sent o WHERE o.email=consent_ledger.email),
            mailerlite_status=CASE WHEN mailerlite_status IN ('bounced', 'junk') THEN mailerlite_status
                                   ELSE 'unsubscribed' END,
            mailerlite_source=CASE WHEN mailerlite_status IN ('bounced', 'junk') THEN mailerlite_source
                                   ELSE 'unsubscribe' END,
            mailerlite_seen_at=(SELECT sent_at FROM optouts_sent o WHERE o.email=consent_ledger.email)
            WHERE email IN (SELECT email FROM optouts_sent)""",
        """INSERT OR IGNORE INTO consent_ledger(email, sent) SELECT email, 'upsert' FROM tombstones""",
        """INSERT OR IGNORE INTO consent_ledger(email) SELECT DISTINCT email FROM pending_actions""",
        "DROP TABLE optouts_sent",
        # The contact holding each address, kept in step with the contacts table (as the tombstones are):
        # a contact row made, moved to another address or id, or forgotten updates its address's row.
        """CREATE TRIGGER ledger_holder_on_insert AFTER INSERT ON contacts
            BEGIN INSERT OR IGNORE INTO consent_ledger(email) VALUES (NEW.email);
                  UPDATE consent_ledger SET holder=(SELECT MIN(hubspot_id) FROM contacts WHERE email=NEW.email)
                  WHERE email=NEW.email; END""",
        """CREATE TRIGGER ledger_holder_on_change AFTER UPDATE OF email, hubspot_id ON contacts
            WHEN OLD.email != NEW.email OR OLD.hubspot_id != NEW.hubspot_id
            BEGIN INSERT OR IGNORE INTO consent_ledger(email) VALUES (NEW.email);
                  UPDATE consent_ledger
                  SET holder=(SELECT MIN(hubspot_id) FROM contacts WHERE email=consent_ledger.email)
                  WHERE email IN (OLD.email, NEW.email); END""",
        """CREATE TRIGGER ledger_holder_on_forget AFTER DELETE ON contacts
            BEGIN UPDATE consent_ledger SET holder=(SELECT MIN(hubspot_id) FROM contacts WHERE email=OLD.email)
                  WHERE email=OLD.email; END""",
        # A duplicate (a second contact with an address another one syncs) is a kind of problem of its
        # own, named by the contact holding the address, not found by a pattern on its message; it is
        # still reported as rejected. Those recorded before are recognised by that message once, here.
        "ALTER TABLE problems ADD COLUMN duplicate_of INTEGER",
        """UPDATE problems SET duplicate_of=CAST(substr(reason, instr(reason, 'synced from HubSpot contact ') + 28)
                                                 AS INTEGER)
            WHERE kind='rejected' AND reason LIKE 'email % is already synced from HubSpot contact %'""",
    ),
    11: (
        # MailerLite's subscriber listing as read so far, kept between runs so a listing too long for
        # one run is continued, not begun again (adoption_listing.py owns it; its progress is the
        # meta key mailerlite_listing). Emptied when the full pass that used it is done.
        """CREATE TABLE listing_held (
            email TEXT PRIMARY KEY,         -- lowercased
            subscriber_id TEXT,
            status TEXT NOT NULL,
            fields TEXT NOT NULL,           -- JSON object
            groups TEXT)                    -- JSON {id: name}; NULL when the listing did not include them""",
        "CREATE INDEX listing_held_by_id ON listing_held(subscriber_id)",
    ),
    12: (
        # Each synced contact's associations as last read (its primary company and its deals, as one
        # hash: sync/associations.py), so the daily association pass finds the contacts whose
        # associations alone changed (HubSpot moves no timestamp for that) and reads only those.
        "CREATE TABLE associations (hubspot_id INTEGER PRIMARY KEY, signature TEXT NOT NULL)",
    ),
    13: (
        # HubSpot's own clock for the ledger (epoch ms): when the address's newest opt-out read was
        # made in HubSpot (the record's lastmodifieddate), and which of those the last unsubscribe the
        # sync delivered was sent for. An opt-out HubSpot shows newer than the one delivered (the
        # person signed up again through a MailerLite form, then opted out again) is sent again;
        # NULL (a reading by address, a row from before): the time is unknown, and it is sent.
        "ALTER TABLE consent_ledger ADD COLUMN hubspot_changed_ms INTEGER",
        "ALTER TABLE consent_ledger ADD COLUMN sent_for_ms INTEGER",
        # A problem of a contact known only by it (refused data, a duplicate) whose address the sync
        # wrote before (an opt-out sent on its own, or it was synced once): when it goes or moves to
        # another address and no contacts row holds the old one, that address is kept as a tombstone,
        # so its later opt-out is followed (migration 9 does so for failed ones).
        """CREATE TRIGGER tombstone_on_written_problem_gone AFTER DELETE ON problems
            WHEN OLD.kind != 'failed' AND OLD.email != ''
                 AND NOT EXISTS (SELECT 1 FROM contacts WHERE email = OLD.email)
                 AND EXISTS (SELECT 1 FROM consent_ledger WHERE email = OLD.email AND sent IS NOT NULL)
            BEGIN INSERT OR REPLACE INTO tombstones(email, hubspot_id, since)
                  VALUES (OLD.email, OLD.hubspot_id, CAST(strftime('%s', 'now') AS INTEGER)); END""",
        """CREATE TRIGGER tombstone_on_written_problem_moved AFTER UPDATE OF email ON problems
            WHEN OLD.kind != 'failed' AND OLD.email != '' AND OLD.email != NEW.email
                 AND NOT EXISTS (SELECT 1 FROM contacts WHERE email = OLD.email)
                 AND EXISTS (SELECT 1 FROM consent_ledger WHERE email = OLD.email AND sent IS NOT NULL)
            BEGIN INSERT OR REPLACE INTO tombstones(email, hubspot_id, since)
                  VALUES (OLD.email, OLD.hubspot_id, CAST(strftime('%s', 'now') AS INTEGER)); END""",
    ),
    14: (
        # The full pass that last read a contact known only by a problem: one a full pass did not
        # read is read by id, and forgotten when HubSpot no longer has it (engine.py).
        "ALTER TABLE problems ADD COLUMN seen_run INTEGER",
        # The triggers an UPDATE fires keep a tombstone without INSERT OR REPLACE: fired by an upsert
        # (state.record's INSERT ... ON CONFLICT DO UPDATE), SQLite aborts the REPLACE of a tombstone
        # the address already has, and every run stopped (a refused contact given a new address while
        # its old one was a tombstone). A tombstone already kept stays as it is.
        "DROP TRIGGER tombstone_on_email_change",
        """CREATE TRIGGER tombstone_on_email_change AFTER UPDATE OF email ON contacts
            WHEN OLD.email != NEW.email AND NOT EXISTS (SELECT 1 FROM contacts WHERE email = OLD.email)
            BEGIN INSERT INTO tombstones(email, hubspot_id, since)
                  SELECT OLD.email, OLD.hubspot_id, CAST(strftime('%s', 'now') AS INTEGER)
                  WHERE NOT EXISTS (SELECT 1 FROM tombstones WHERE email = OLD.email); END""",
        "DROP TRIGGER tombstone_on_failed_problem_change",
        """CREATE TRIGGER tombstone_on_failed_problem_change AFTER UPDATE OF email, kind ON problems
            WHEN OLD.kind = 'failed' AND OLD.email != '' AND (OLD.email != NEW.email OR NEW.kind != 'failed')
                 AND NOT EXISTS (SELECT 1 FROM contacts WHERE email = OLD.email)
            BEGIN INSERT INTO tombstones(email, hubspot_id, since)
                  SELECT OLD.email, OLD.hubspot_id, CAST(strftime('%s', 'now') AS INTEGER)
                  WHERE NOT EXISTS (SELECT 1 FROM tombstones WHERE email = OLD.email); END""",
        # ...and any in-scope problem contact's old address, written or not (a refused contact's address
        # that MailerLite holds from a form is followed once the contact moves off it: the model found
        # it; a problem row is only recorded for contacts in the sync's scope).
        "DROP TRIGGER tombstone_on_written_problem_moved",
        """CREATE TRIGGER tombstone_on_written_problem_moved AFTER UPDATE OF email ON problems
            WHEN OLD.kind != 'failed' AND OLD.email != '' AND OLD.email != NEW.email
                 AND NOT EXISTS (SELECT 1 FROM contacts WHERE email = OLD.email)
            BEGIN INSERT INTO tombstones(email, hubspot_id, since)
                  SELECT OLD.email, OLD.hubspot_id, CAST(strftime('%s', 'now') AS INTEGER)
                  WHERE NOT EXISTS (SELECT 1 FROM tombstones WHERE email = OLD.email); END""",
        # The same for the ledger's holder triggers (migration 10): a contact's row given a new address by
        # that upsert, while the new address already had a ledger row, stopped the run the same way.
        "DROP TRIGGER ledger_holder_on_insert",
        """CREATE TRIGGER ledger_holder_on_insert AFTER INSERT ON contacts
            BEGIN INSERT INTO consent_ledger(email) SELECT NEW.email
                  WHERE NOT EXISTS (SELECT 1 FROM consent_ledger WHERE email = NEW.email);
                  UPDATE consent_ledger SET holder=(SELECT MIN(hubspot_id) FROM contacts WHERE email=NEW.email)
                  WHERE email=NEW.email; END""",
        "DROP TRIGGER ledger_holder_on_change",
        """CREATE TRIGGER ledger_holder_on_change AFTER UPDATE OF email, hubspot_id ON contacts
            WHEN OLD.email != NEW.email OR OLD.hubspot_id != NEW.hubspot_id
            BEGIN INSERT INTO consent_ledger(email) SELECT NEW.email
                  WHERE NOT EXISTS (SELECT 1 FROM consent_ledger WHERE email = NEW.email);
                  UPDATE consent_ledger
                  SET holder=(SELECT MIN(hubspot_id) FROM contacts WHERE email=consent_ledger.email)
                  WHERE email IN (OLD.email, NEW.email); END""",
    ),
}

RUN_COUNTS = ("read", "created", "updated", "unchanged", "skipped", "rejected", "failed", "not_reactivated",
              "left_scope")


@dataclass(frozen=True)
class ContactRecord:
    """What the state file holds for one contact: its last synced data, or its problem."""

    fingerprint: Optional[str]  # of the last accepted subscriber
    fields_set: FrozenSet[str]
    subscriber_id: Optional[str]
    problem_kind: Optional[str]
    problem_fingerprint: Optional[str]
    problem_attempts: int
    email: Optional[str] = None  # the address last synced (None when only a problem is known)
    groups_set: FrozenSet[str] = frozenset()

    def refused(self, fingerprint: str) -> bool:
        """MailerLite (or the mapping) refused this very data before: nothing new to send."""
        return self.problem_kind == "rejected" and self.problem_fingerprint == fingerprint


@dataclass(frozen=True)
class Synced:
    """A contact MailerLite has, as the state remembers it (for leaving scope)."""

    hubspot_id: str
    email: str
    subscriber_id: Optional[str]
    groups_set: FrozenSet[str]


@dataclass(frozen=True)
class Result:
    """One contact's outcome in this run, to be recorded."""

    hubspot_id: str
    email: str
    kind: str  # a summary count: created | updated | not_reactivated | rejected | failed (stored as "outcome")
    fingerprint: str
    fields_set: FrozenSet[str] = frozenset()
    subscriber_id: Optional[str] = None
    reason: str = ""
    groups_set: FrozenSet[str] = frozenset()
    # The subscriber's status as MailerLite's answer gave it (for the consent ledger); None: not said.
    mailerlite_status: Optional[str] = None
    duplicate_of: Optional[str] = None  # a rejected duplicate: the contact syncing its address


@dataclass(frozen=True)
class PendingAction:
    """What MailerLite must still be told for a contact's consent: unsubscribe, leave groups."""

    hubspot_id: str
    email: str
    subscriber_id: Optional[str]
    unsubscribe: bool
    groups: FrozenSet[str]  # managed group names to leave
    forget: bool  # the contact left the sync: forget it once this is applied
    reason: str
    attempts: int = 0
    next_try: int = 0  # epoch ms before which it is not tried again (its back-off); 0: the next run


@dataclass(frozen=True)
class LedgerRow:
    """One address's consent evidence, as the ledger stores it (migration 10; consent/rules.py reads
    and makes them: this module stores them)."""

    email: str
    hubspot_opted_out: Optional[bool] = None  # HubSpot's opt-out as last read; None: never read
    hubspot_source: Optional[str] = None  # record | address | archived
    hubspot_read_at: Optional[int] = None  # epoch seconds
    mailerlite_status: Optional[str] = None  # MailerLite's status as last seen; None: never seen
    mailerlite_source: Optional[str] = None  # listing | upsert | refusal | write_back | unsubscribe | migrated
    mailerlite_seen_at: Optional[int] = None
    sent: Optional[str] = None  # what the sync last sent: upsert | unsubscribe
    sent_at: Optional[int] = None
    holder: Optional[str] = None  # the contact syncing the address now (kept by triggers)
    # HubSpot's clock, epoch ms (migration 13): when the newest opt-out read was made there, and
    # which of those the last delivered unsubscribe was for; None: unknown.
    hubspot_changed_ms: Optional[int] = None
    sent_for_ms: Optional[int] = None


LEDGER_COLUMNS = ("email", "hubspot_opted_out", "hubspot_source", "hubspot_read_at", "mailerlite_status",
                  "mailerlite_source", "mailerlite_seen_at", "sent", "sent_at", "holder",
                  "hubspot_changed_ms", "sent_for_ms")


def _ledger_row(row: Sequence[Any]) -> LedgerRow:
    e, opted, hsrc, hat, status, msrc, mat, sent, sat, holder, changed_ms, sent_for_ms = row
    return LedgerRow(e, None if opted is None else bool(opted), hsrc, hat, status, msrc, mat, sent, sat,
                     None if holder is None else str(holder), changed_ms, sent_for_ms)


def _split(text: Optional[str], sep: str = ",") -> FrozenSet[str]:
    return frozenset(v for v in (text or "").split(sep) if v)


GROUP_SEP = "\x1f"  # group names may hold commas; the unit separator they cannot
_SYNCED = ("created", "updated", "not_reactivated", "adopted")  # outcomes recorded as a contacts row
_RECORD_CONTACT = (
    "INSERT INTO contacts(hubspot_id, email, fingerprint, fields_set, subscriber_id, outcome, "
    "synced_at, groups_set, seen_run) VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(hubspot_id) DO "
    "UPDATE SET email=excluded.email, fingerprint=excluded.fingerprint, "
    "fields_set=excluded.fields_set, "
    "subscriber_id=COALESCE(excluded.subscriber_id, contacts.subscriber_id), "
    "outcome=excluded.outcome, synced_at=excluded.synced_at, groups_set=excluded.groups_set, "
    "seen_run=COALESCE(excluded.seen_run, contacts.seen_run)")


def _storable(text: str) -> bool:
    """SQLite takes UTF-8 only: a lone surrogate (bad data from an API) can be no stored address."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _pending_action(row: Sequence[Any]) -> PendingAction:
    h, e, s, u, g, f, r, a, n = row
    return PendingAction(str(h), e, s, bool(u), _split(g, GROUP_SEP), bool(f), r, int(a), int(n))


def _now() -> int:
    return int(time.time())


C = TypeVar("C", bound=type)


def _damaged_message(path: Path, what: str) -> str:
    return f"the state database {path} is damaged ({what}); move it aside and run again"


def _stored_values_checked(cls: C) -> C:
    """Every public method of the class: a stored value it cannot read (a number that is not one,
    JSON cut short, a page SQLite finds malformed) is a damaged state file, said as such, not a bug."""
    def guard(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def guarded(self: State, *args: Any, **kwargs: Any) -> Any:
            try:
                if self._later and method.__name__ != "record_later":
                    self._record_now()  # what was recorded later is in the table before anything else runs
                return method(self, *args, **kwargs)
            except ValueError as exc:  # not TypeError: that is far likelier a bug than a damaged file
                raise StateError(_damaged_message(self.path, f"a stored value cannot be read: "
                                                             f"{exc.__class__.__name__}")) from None
            except sqlite3.DatabaseError as exc:
                if not _is_damage(exc):
                    raise
                raise StateError(self._explain(exc)) from None
        return guarded

    for name, member in list(vars(cls).items()):
        if callable(member) and not name.startswith("_"):
            setattr(cls, name, guard(member))
    return cls


def _is_damage(exc: sqlite3.DatabaseError) -> bool:
    text = str(exc).lower()
    return "not a database" in text or "malformed" in text or "corrupt" in text


@_stored_values_checked
class State:
    def __init__(self, path: Path, busy_timeout_s: float = BUSY_TIMEOUT_S) -> None:
        """`busy_timeout_s`: how long to wait for another program's lock (Tunables.state_busy_timeout_s)."""
        self.path = path
        self.current_run: Optional[int] = None  # rows recorded during a run are marked seen by it
        self._later: List[Result] = []  # record_later's outcomes, recorded at the next call of any method
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Email addresses live here: owner-only from the first byte. SQLite gives its -wal
            # and -shm files the database file's mode.
            create_private(path)
            for extra in ("-wal", "-shm"):
                warn_if_shared(Path(str(path) + extra))
            self.conn = sqlite3.connect(str(path), timeout=busy_timeout_s, isolation_level=None)
            self._prepare()
        except (sqlite3.DatabaseError, StateWriteError) as exc:
            raise StateError(self._explain(exc) if isinstance(exc, sqlite3.DatabaseError) else str(exc)) from None
        except ValueError as exc:  # the schema version is not a number
            raise StateError(_damaged_message(path, f"a stored value cannot be read: {exc.__class__.__name__}")) \
                from None
        except OSError as exc:
            raise StateError(f"cannot open the state database {path}: {exc.strerror or exc}") from None

    def _explain(self, exc: sqlite3.DatabaseError) -> str:
        text = str(exc).lower()
        owner = foreign_owner(self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm"))
        if owner and ("unable to open" in text or "readonly" in text or "read-only" in text):
            return foreign_state_message(self.path, owner)
        if _is_damage(exc):
            return _damaged_message(self.path, f"SQLite: {exc}")
        if "locked" in text or "busy" in text:
            return f"the state database {self.path} is locked by another program; close it and run again"
        if "readonly" in text or "read-only" in text:
            return f"the state database {self.path} is read-only; make it (and its folder) writable"
        if "disk" in text or "full" in text:
            return f"cannot write the state database {self.path}: the disk is full; free some space"
        return f"the state database {self.path} cannot be used ({exc.__class__.__name__}: {exc})"

    def _prepare(self) -> None:
        self.conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL is safe against a killed process in WAL mode; only a power cut may drop the tail.
        self.conn.execute("PRAGMA synchronous=NORMAL")
        version = self._schema_version()
        if version > SCHEMA_VERSION:
            raise StateError(f"the state database {self.path} was written by a newer version of this "
                             f"program (schema {version}); update the program or move the file aside")
        if version < SCHEMA_VERSION:
            self._migrate(version)

    def _schema_version(self) -> int:
        has_meta = self.conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
        if not has_meta:
            return 0
        row = self.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        return int(row[0]) if row else 0

    def _migrate(self, version: int) -> None:
        """Bring an older schema up to date, one step per version, in one transaction."""
        with self.transaction():
            for step in range(version + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[step]:
                    self.conn.execute(statement)
            self._set_meta("schema_version", str(SCHEMA_VERSION))

    def transaction(self) -> _Transaction:
        return _Transaction(self)

    def close(self) -> None:
        self.conn.close()

    # -- meta ----------------------------------------------------------------------------------
    def _set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT INTO meta(key, value) VALUES (?, ?) "
                          "ON CONFLICT(key) DO UPDATE SET value=excluded.value", (key, value))

    def _get_meta(self, key: str) -> Optional[str]:
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def bookmark(self) -> Optional[int]:
        """The lastmodifieddate (epoch ms) up to which every change has been dealt with."""
        value = self._get_meta("bookmark_ms")
        return int(value) if value else None

    def advance_bookmark(self, ms: int, full_pass_done: bool = False) -> None:
        """Move the bookmark after a run dealt with every change it covers."""
        with self.transaction():
            self._set_meta("bookmark_ms", str(int(ms)))
            if full_pass_done:
                self.conn.execute("DELETE FROM meta WHERE key='full_pass_pending'")

    def set_bookmark(self, ms: int) -> None:
        """Put the bookmark back (a bookmark in the future would skip the changes until then)."""
        with self.transaction():
            self._set_meta("bookmark_ms", str(int(ms)))

    def full_pass_pending(self) -> bool:
        """A full pass began and has not finished (killed, aborted): the next run finishes it."""
        return self._get_meta("full_pass_pending") == "1"

    def set_full_pass_pending(self, pending: bool) -> None:
        with self.transaction():
            if pending:
                self._set_meta("full_pass_pending", "1")
            else:
                self.conn.execute("DELETE FROM meta WHERE key='full_pass_pending'")

    # -- contacts --------------------------------------------------------------------------------
    def records(self, hubspot_ids: Sequence[str]) -> Dict[str, ContactRecord]:
        """What is recorded for these contacts (one query per call: pass a page at a time)."""
        ids = [int(i) for i in hubspot_ids if str(i).isdigit()]
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        out: Dict[str, ContactRecord] = {}
        rows = self.conn.execute(
            f"SELECT c.hubspot_id, c.fingerprint, c.fields_set, c.subscriber_id, p.kind, p.fingerprint, p.attempts, "
            f"c.email, c.groups_set FROM contacts c LEFT JOIN problems p USING (hubspot_id) "
            f"WHERE c.hubspot_id IN ({marks}) "
            f"UNION ALL SELECT p.hubspot_id, NULL, '', NULL, p.kind, p.fingerprint, p.attempts, NULL, '' "
            f"FROM problems p WHERE p.hubspot_id IN ({marks}) "
            f"AND p.hubspot_id NOT IN (SELECT hubspot_id FROM contacts)",
            ids + ids)
        for hid, fp, fields, sid, kind, pfp, attempts, email, groups in rows:
            out[str(hid)] = ContactRecord(fp, _split(fields), sid, kind, pfp, int(attempts or 0), email,
                                  _split(groups, GROUP_SEP))
        return out

    def record(self, results: Iterable[Result]) -> None:
        """Record outcomes in one transaction (called once per MailerLite answer)."""
        now = _now()
        batch = list(results)
        with self.transaction():
            if self._record_synced(batch, now):
                return
            for r in batch:
                hid = int(r.hubspot_id)
                if r.kind in _SYNCED:
                    self.conn.execute(
                        _RECORD_CONTACT,
                        (hid, r.email, r.fingerprint, ",".join(sorted(r.fields_set)), r.subscriber_id,
                         r.kind, now, GROUP_SEP.join(sorted(r.groups_set)), self.current_run))
                    self.conn.execute("DELETE FROM problems WHERE hubspot_id=?", (hid,))
                    # Back in the sync with this address: a departure still pending is void.
                    self.conn.execute("DELETE FROM pending_actions WHERE hubspot_id=? AND email=? AND forget=1",
                                      (hid, r.email))
                else:
                    self.conn.execute(
                        "INSERT INTO problems(hubspot_id, email, kind, reason, fingerprint, attempts, first_seen, "
                        "last_seen, duplicate_of) VALUES (?,?,?,?,?,1,?,?,?) ON CONFLICT(hubspot_id) DO UPDATE SET "
                        "email=excluded.email, kind=excluded.kind, reason=excluded.reason, "
                        "fingerprint=excluded.fingerprint, attempts=problems.attempts+1, last_seen=excluded.last_seen, "
                        "duplicate_of=excluded.duplicate_of",
                        (hid, r.email, r.kind, clip(r.reason, 1000), r.fingerprint, now, now,
                         int(r.duplicate_of) if r.duplicate_of and r.duplicate_of.isdigit() else None))

    def record_later(self, results: Iterable[Result]) -> None:
        """`record`, put off until the next call of any other method of the state (a page's adoptions
        in one transaction, not one each): every reader through the state sees them as recorded."""
        self._later.extend(results)

    def _record_now(self) -> None:
        later, self._later = self._later, []
        self.record(later)

    def _record_synced(self, results: List[Result], now: int) -> bool:
        """`record` for a batch of synced outcomes whose contacts have no problem row (MailerLite's
        answers, usually): the same rows in three statements, not three a contact. Only then: the
        problems' triggers (tombstones) see the contacts table row by row otherwise, so anything
        else goes through the loop. Returns whether it recorded them."""
        ids = [int(r.hubspot_id) for r in results]
        if not ids or len(ids) > 500 or any(r.kind not in _SYNCED for r in results):
            return False
        if self.conn.execute(f"SELECT 1 FROM problems WHERE hubspot_id IN ({','.join('?' * len(ids))}) LIMIT 1",
                             ids).fetchone() is not None:
            return False
        self.conn.executemany(_RECORD_CONTACT, [
            (hid, r.email, r.fingerprint, ",".join(sorted(r.fields_set)), r.subscriber_id, r.kind, now,
             GROUP_SEP.join(sorted(r.groups_set)), self.current_run) for hid, r in zip(ids, results)])
        # No trigger on pending_actions, and no contacts trigger reads it: all after all is the same.
        self.conn.executemany("DELETE FROM pending_actions WHERE hubspot_id=? AND email=? AND forget=1",
                              [(hid, r.email) for hid, r in zip(ids, results)])
        return True

    def synced_at(self, hubspot_id: str) -> Optional[int]:
        """When this contact was last recorded as synced (epoch seconds), if it is."""
        row = self.conn.execute("SELECT synced_at FROM contacts WHERE hubspot_id=?",
                                (int(hubspot_id),)).fetchone() if hubspot_id.isdigit() else None
        return None if row is None else int(row[0])

    def owners(self, emails: Sequence[str]) -> Dict[str, str]:
        """email -> the HubSpot contact whose subscriber has that address (one query per page)."""
        wanted = sorted({e for e in emails if e and _storable(e)})
        if not wanted:
            return {}
        rows = self.conn.execute(f"SELECT email, MIN(hubspot_id) FROM contacts WHERE email IN "
                                 f"({','.join('?' * len(wanted))}) GROUP BY email", wanted)
        return {email: str(hid) for email, hid in rows}

    def forget(self, hubspot_id: str) -> None:
        """The contact left the sync's scope: MailerLite was told; nothing more to remember."""
        with self.transaction():
            self.conn.execute("DELETE FROM contacts WHERE hubspot_id=?", (int(hubspot_id),))
            self.conn.execute("DELETE FROM problems WHERE hubspot_id=?", (int(hubspot_id),))

    def forget_problems_only(self, hubspot_ids: Sequence[str]) -> None:
        """Of these contacts, those known only by a problem (never synced) are forgotten: HubSpot no
        longer has them (deleted, merged away). Each one's address no synced contact holds is kept as a
        tombstone, so the sweep follows its opt-outs: a failed one's (migration 9) and one the sync
        wrote (migration 13) by the triggers, and here a refused one's or a duplicate's, which the sync
        never wrote but MailerLite may hold from elsewhere (a form) for this in-scope contact. (One
        leaving the scope is forgotten by `forget`: its address is then no business of the sync's.)"""
        ids = [int(i) for i in hubspot_ids if str(i).isdigit()]
        with self.transaction():
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                marks = ','.join('?' * len(chunk))
                self.conn.execute(
                    f"INSERT OR IGNORE INTO tombstones(email, hubspot_id, since) "
                    f"SELECT email, hubspot_id, CAST(strftime('%s', 'now') AS INTEGER) FROM problems p "
                    f"WHERE hubspot_id IN ({marks}) AND kind != 'failed' AND email != '' "
                    f"AND hubspot_id NOT IN (SELECT hubspot_id FROM contacts) "
                    f"AND NOT EXISTS (SELECT 1 FROM contacts c WHERE c.email = p.email)", chunk)
                self.conn.execute(f"DELETE FROM problems WHERE hubspot_id IN ({marks}) "
                                  f"AND hubspot_id NOT IN (SELECT hubspot_id FROM contacts)", chunk)

    def synced(self, hubspot_ids: Iterable[str]) -> List[Synced]:
        """The synced contacts among these ids."""
        out: List[Synced] = []
        ids = [int(i) for i in hubspot_ids if str(i).isdigit()]
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            rows = self.conn.execute(
                f"SELECT hubspot_id, email, subscriber_id, groups_set FROM contacts "
                f"WHERE hubspot_id IN ({','.join('?' * len(chunk))})", chunk)
            out.extend(Synced(str(h), e, s, _split(g, GROUP_SEP)) for h, e, s, g in rows)
        return out

    def others_holding(self, email: str, hubspot_id: str) -> List[str]:
        """Other contacts with this address, for: never unsubscribe an address still held. Synced ones,
        and ones recorded with a problem (a duplicate of the address, data MailerLite refused): those
        are live HubSpot contacts too. A problem row outlives a contact deleted in HubSpot; it then only
        keeps an address from being unsubscribed on leaving (its groups are still left)."""
        hid = int(hubspot_id)
        return [str(r[0]) for r in self.conn.execute(
            "SELECT hubspot_id FROM contacts WHERE email=? AND hubspot_id!=? "
            "UNION SELECT hubspot_id FROM problems WHERE email=? AND hubspot_id!=?", (email, hid, email, hid))]

    def problem_only_holder(self, email: str, hubspot_id: str) -> Optional[str]:
        """Another contact known only by a problem (a duplicate, refused data) with this address, if any."""
        row = self.conn.execute(
            "SELECT MIN(hubspot_id) FROM problems WHERE email=? AND hubspot_id!=? "
            "AND hubspot_id NOT IN (SELECT hubspot_id FROM contacts)", (email, int(hubspot_id))).fetchone()
        return None if row is None or row[0] is None else str(row[0])

    def hand_over(self, synced: Synced, heir: str) -> None:
        """A contact leaves while `heir` (known only by a problem) holds its address: the heir takes its
        subscriber over, with what the sync set on it (its groups above all), so the heir's first write
        takes away what it is not in. The leaving contact's row of the address moves to the heir; when
        that row has moved on (an address change recorded), the heir's is made from `synced`, with no
        fingerprint (its first read compares and writes)."""
        old, new = int(synced.hubspot_id), int(heir)
        with self.transaction():
            moved = self.conn.execute("UPDATE contacts SET hubspot_id=? WHERE hubspot_id=? AND email=?",
                                      (new, old, synced.email)).rowcount
            if not moved:
                self.conn.execute(
                    "INSERT INTO contacts(hubspot_id, email, fingerprint, fields_set, subscriber_id, outcome, "
                    "synced_at, groups_set) VALUES (?, ?, '', '', ?, 'updated', ?, ?)",
                    (new, synced.email, synced.subscriber_id, _now(), GROUP_SEP.join(sorted(synced.groups_set))))
            if not self.conn.execute("SELECT 1 FROM contacts WHERE hubspot_id=?", (old,)).fetchone():
                self.conn.execute("DELETE FROM problems WHERE hubspot_id=?", (old,))

    def take_over(self, old_id: str, new_id: str, actions: Sequence[PendingAction] = ()) -> None:
        """A merge: the contact's new record id takes over the old id's subscriber and history. Its
        pending actions are replaced by `actions`, as the consent owner merged them under the new id
        (rules.merged_action), in the same transaction."""
        old, new = int(old_id), int(new_id)
        with self.transaction():
            has_new = self.conn.execute("SELECT 1 FROM contacts WHERE hubspot_id=?", (new,)).fetchone()
            if has_new:
                self.conn.execute("DELETE FROM contacts WHERE hubspot_id=?", (old,))
            else:
                self.conn.execute("UPDATE contacts SET hubspot_id=? WHERE hubspot_id=?", (new, old))
            self.conn.execute("DELETE FROM problems WHERE hubspot_id=?", (old,))
            for action in actions:
                self.conn.execute("DELETE FROM pending_actions WHERE hubspot_id=? AND email=?", (new, action.email))
                self.conn.execute(
                    "UPDATE pending_actions SET hubspot_id=?, subscriber_id=?, unsubscribe=?, groups_set=?, forget=?, "
                    "reason=?, attempts=?, next_try=? WHERE hubspot_id=? AND email=?",
                    (new, action.subscriber_id, int(action.unsubscribe), GROUP_SEP.join(sorted(action.groups)),
                     int(action.forget), clip(action.reason, 500), action.attempts, action.next_try, old,
                     action.email))

    def actions_of(self, hubspot_id: str) -> List[PendingAction]:
        """The actions stored for one contact (a merge moves them to the record that takes it over)."""
        rows = self.conn.execute("SELECT hubspot_id, email, subscriber_id, unsubscribe, groups_set, forget, reason, "
                                 "attempts, next_try FROM pending_actions WHERE hubspot_id=? ORDER BY email",
                                 (int(hubspot_id),))
        return [_pending_action(row) for row in rows]

    # -- consent actions -------------------------------------------------------------------------
    def pending_actions(self) -> List[PendingAction]:
        rows = self.conn.execute("SELECT hubspot_id, email, subscriber_id, unsubscribe, groups_set, forget, reason, "
                                 "attempts, next_try FROM pending_actions ORDER BY hubspot_id, email")
        return [_pending_action(row) for row in rows]

    def count_pending_actions(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM pending_actions").fetchone()[0])

    def action_next_try(self, action: PendingAction) -> int:
        """When a stored action may be tried again (epoch ms; 0 when it never failed)."""
        row = self.conn.execute("SELECT next_try FROM pending_actions WHERE hubspot_id=? AND email=?",
                                (int(action.hubspot_id), action.email)).fetchone()
        return int(row[0]) if row else 0

    def pending_problems(self) -> List[Dict[str, object]]:
        """Consent actions that failed at least once, in the columns of `problems` (for --rejected)."""
        cur = self.conn.execute(
            "SELECT hubspot_id, email, CASE WHEN unsubscribe THEN 'unsubscribe pending' ELSE 'group removal pending' "
            "END AS kind, last_error AS reason, attempts, first_failed AS first_seen, last_failed AS last_seen "
            "FROM pending_actions WHERE attempts > 0 ORDER BY hubspot_id, email")
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, row)) for row in cur]

    def stored_action(self, hubspot_id: str, email: str) -> Optional[PendingAction]:
        """The action stored for this contact and address, if any (a new one is merged into it)."""
        row = self.conn.execute("SELECT hubspot_id, email, subscriber_id, unsubscribe, groups_set, forget, reason, "
                                "attempts, next_try FROM pending_actions WHERE hubspot_id=? AND email=?",
                                (int(hubspot_id), email)).fetchone()
        return _pending_action(row) if row else None

    def save_action(self, action: PendingAction) -> None:
        """Remember an action before it is tried: a crash or a refusal never loses it. The consent
        owner merges it with the one stored for the contact and address (consent/rules.merged_action)
        and passes the whole, which replaces the stored one (no rule is repeated here); its attempts
        do not (action_failed counts them)."""
        with self.transaction():
            self.conn.execute(
                "INSERT INTO pending_actions(hubspot_id, email, subscriber_id, unsubscribe, groups_set, forget, "
                "reason, next_try) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(hubspot_id, email) DO UPDATE SET "
                "subscriber_id=excluded.subscriber_id, unsubscribe=excluded.unsubscribe, "
                "groups_set=excluded.groups_set, forget=excluded.forget, "
                "reason=excluded.reason, next_try=excluded.next_try",
                (int(action.hubspot_id), action.email, action.subscriber_id, int(action.unsubscribe),
                 GROUP_SEP.join(sorted(action.groups)), int(action.forget), clip(action.reason, 500),
                 action.next_try))

    def departing(self, emails: Sequence[str]) -> Dict[Tuple[str, str], bool]:
        """(hubspot id, email) -> whether it unsubscribes, of the departures still pending for these
        addresses (one query per page)."""
        wanted = sorted({e for e in emails if e and _storable(e)})
        if not wanted:
            return {}
        rows = self.conn.execute(f"SELECT hubspot_id, email, unsubscribe FROM pending_actions WHERE forget=1 "
                                 f"AND email IN ({','.join('?' * len(wanted))})", wanted)
        return {(str(hid), email): bool(unsubscribe) for hid, email, unsubscribe in rows}

    def void_departure(self, hubspot_id: str, email: str, still_to_leave: FrozenSet[str] = frozenset()) -> None:
        """The contact is back in the sync with this address: its pending departure is void (as `record`
        does for one written again), but for the groups the consent owner says it must still leave
        (a group removal merged into it), which stay as a group removal with the same back-off."""
        with self.transaction():
            self.conn.execute("UPDATE pending_actions SET forget=0, unsubscribe=0, groups_set=? "
                              "WHERE hubspot_id=? AND email=? AND forget=1",
                              (GROUP_SEP.join(sorted(still_to_leave)), int(hubspot_id), email))
            self.conn.execute("DELETE FROM pending_actions WHERE hubspot_id=? AND email=? AND groups_set='' "
                              "AND forget=0 AND unsubscribe=0", (int(hubspot_id), email))

    def action_failed(self, action: PendingAction, error: str, next_try: int = 0) -> None:
        now = _now()
        with self.transaction():
            self.conn.execute("UPDATE pending_actions SET attempts=attempts+1, last_error=?, next_try=?, "
                              "first_failed=COALESCE(first_failed, ?), last_failed=? WHERE hubspot_id=? AND email=?",
                              (clip(error, 500), next_try, now, now, int(action.hubspot_id), action.email))

    def clamp_action_tries(self, latest_ms: int) -> int:
        """Back-offs that end after `latest_ms` end then instead; returns how many were moved."""
        with self.transaction():
            return self.conn.execute("UPDATE pending_actions SET next_try=? WHERE next_try > ?",
                                     (latest_ms, latest_ms)).rowcount

    def action_attempts(self, action: PendingAction) -> int:
        row = self.conn.execute("SELECT attempts FROM pending_actions WHERE hubspot_id=? AND email=?",
                                (int(action.hubspot_id), action.email)).fetchone()
        return int(row[0]) if row else 0

    def action_done(self, action: PendingAction, forget_contact: bool, drop_tombstone: bool) -> None:
        """A stored action MailerLite took is dropped, in one transaction with what the consent owner
        says follows from it: the contact's row of this address forgotten, the address's tombstone
        dropped."""
        hid = int(action.hubspot_id)
        with self.transaction():
            self.conn.execute("DELETE FROM pending_actions WHERE hubspot_id=? AND email=?", (hid, action.email))
            if forget_contact:
                # Only the row of this address: after an email change the contact's new one stays.
                self.conn.execute("DELETE FROM contacts WHERE hubspot_id=? AND email=?", (hid, action.email))
                if not self.conn.execute("SELECT 1 FROM contacts WHERE hubspot_id=?", (hid,)).fetchone():
                    self.conn.execute("DELETE FROM problems WHERE hubspot_id=?", (hid,))
            if drop_tombstone:  # after the row: forgetting it made the tombstone (trigger) just dropped
                self.conn.execute("DELETE FROM tombstones WHERE email=?", (action.email,))

    def keep_tombstones(self, emails: Sequence[str]) -> None:
        """These addresses are followed by the sweep again (no contact holds them: hubspot_id 0)."""
        values = [(e,) for e in emails if _storable(e)]
        if values:
            with self.transaction():
                self.conn.executemany(
                    "INSERT OR IGNORE INTO tombstones(email, hubspot_id, since) SELECT ?, 0, "
                    "CAST(strftime('%s', 'now') AS INTEGER) WHERE NOT EXISTS "
                    "(SELECT 1 FROM contacts WHERE email = ?1)", values)

    def tombstones(self, after: str = "", limit: int = 100) -> List[Tuple[str, str]]:
        """(email, last HubSpot id) of addresses let go of and not unsubscribed, by address after
        `after`, a page at a time (a million are streamed, never loaded)."""
        rows = self.conn.execute("SELECT email, hubspot_id FROM tombstones WHERE email > ? ORDER BY email LIMIT ?",
                                 (after, limit))
        return [(email, str(hid)) for email, hid in rows]

    # -- the consent ledger (migration 10) ---------------------------------------------------------
    def ledger(self, emails: Sequence[str]) -> Dict[str, LedgerRow]:
        """email -> its consent ledger row, for those of these addresses it has (one query per page)."""
        wanted = sorted({e for e in emails if e and _storable(e)})
        out: Dict[str, LedgerRow] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start:start + 500]
            rows = self.conn.execute(f"SELECT {', '.join(LEDGER_COLUMNS)} FROM consent_ledger "
                                     f"WHERE email IN ({','.join('?' * len(chunk))})", chunk)
            out.update((row[0], _ledger_row(row)) for row in rows)
        return out

    def save_ledger(self, rows: Iterable[LedgerRow]) -> None:
        """Store these rows as the consent owner made them, in one transaction; the holder is not
        written (the triggers keep it)."""
        values = [(r.email, None if r.hubspot_opted_out is None else int(r.hubspot_opted_out), r.hubspot_source,
                   r.hubspot_read_at, r.mailerlite_status, r.mailerlite_source, r.mailerlite_seen_at, r.sent,
                   r.sent_at, r.hubspot_changed_ms, r.sent_for_ms) for r in rows if _storable(r.email)]
        if not values:
            return
        with self.transaction():
            self.conn.executemany(
                "INSERT INTO consent_ledger(email, hubspot_opted_out, hubspot_source, hubspot_read_at, "
                "mailerlite_status, mailerlite_source, mailerlite_seen_at, sent, sent_at, "
                "hubspot_changed_ms, sent_for_ms) VALUES (?,?,?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT(email) DO UPDATE SET hubspot_opted_out=excluded.hubspot_opted_out, "
                "hubspot_source=excluded.hubspot_source, hubspot_read_at=excluded.hubspot_read_at, "
                "mailerlite_status=excluded.mailerlite_status, mailerlite_source=excluded.mailerlite_source, "
                "mailerlite_seen_at=excluded.mailerlite_seen_at, sent=excluded.sent, sent_at=excluded.sent_at, "
                "hubspot_changed_ms=excluded.hubspot_changed_ms, sent_for_ms=excluded.sent_for_ms",
                values)

    def mark_seen(self, hubspot_ids: Sequence[str], run_id: int) -> None:
        ids = [int(i) for i in hubspot_ids if str(i).isdigit()]
        if ids:
            with self.transaction():
                self.conn.execute(f"UPDATE contacts SET seen_run=? WHERE hubspot_id IN ({','.join('?' * len(ids))})",
                                  [run_id, *ids])
                self.conn.execute(f"UPDATE problems SET seen_run=? WHERE hubspot_id IN ({','.join('?' * len(ids))})",
                                  [run_id, *ids])

    def unseen(self, run_id: int) -> List[str]:
        """Synced contacts a complete full pass did not see: archived, merged or out of the lists."""
        return [i for chunk in self.unseen_chunks(run_id) for i in chunk]

    def unseen_chunks(self, run_id: int, size: int = 500) -> Iterator[List[str]]:
        """The same, by id, a chunk at a time (a dry run, which marks nothing, streams every contact)."""
        after = -1
        while True:
            rows = self.conn.execute("SELECT hubspot_id FROM contacts WHERE (seen_run IS NULL OR seen_run != ?) "
                                     "AND hubspot_id > ? ORDER BY hubspot_id LIMIT ?", (run_id, after, size)).fetchall()
            if not rows:
                return
            after = rows[-1][0]
            yield [str(r[0]) for r in rows]

    def unseen_problems(self, run_id: int) -> List[str]:
        """Contacts known only by a problem (never synced) that this full pass did not read."""
        return [str(r[0]) for r in self.conn.execute(
            "SELECT hubspot_id FROM problems WHERE (seen_run IS NULL OR seen_run != ?) "
            "AND hubspot_id NOT IN (SELECT hubspot_id FROM contacts) ORDER BY hubspot_id", (run_id,))]

    def list_members(self, list_id: str) -> Set[int]:
        return {r[0] for r in self.conn.execute("SELECT hubspot_id FROM list_members WHERE list_id=?", (list_id,))}

    def save_list_members(self, members: Dict[str, Set[int]]) -> None:
        with self.transaction():
            self.conn.execute("DELETE FROM list_members")
            for list_id, ids in members.items():
                self.conn.executemany("INSERT INTO list_members(list_id, hubspot_id) VALUES (?, ?)",
                                      ((list_id, i) for i in sorted(ids)))

    def is_due(self, key: str, now_ms: int) -> bool:
        """Whether the time stored under `key` (epoch ms) has come; never set counts as due."""
        due = self.get_json(key)
        return not isinstance(due, int) or now_ms >= due

    def get_json(self, key: str) -> Optional[object]:
        value = self._get_meta(key)
        # JSON that does not read is damage, never "not set": a lost accounts record would let a
        # state file meant for one account drive another.
        return json.loads(value) if value else None

    def set_json(self, key: str, value: object) -> None:
        with self.transaction():
            self._set_meta(key, json.dumps(value, sort_keys=True))

    def written_back(self, emails: Sequence[str]) -> Dict[str, Tuple[str, Optional[str]]]:
        """email -> (status, changed_at) as last written back."""
        wanted = sorted({e for e in emails if _storable(e)})
        if not wanted:
            return {}
        rows = self.conn.execute(f"SELECT email, status, changed_at FROM write_back WHERE email IN "
                                 f"({','.join('?' * len(wanted))})", wanted)
        return {email: (status, changed) for email, status, changed in rows}

    def record_written_back(self, rows: Iterable[Tuple[str, str, Optional[str], Optional[str]]]) -> None:
        """(email, status, changed_at, hubspot id or None) for each status dealt with."""
        now = _now()
        with self.transaction():
            self.conn.executemany(
                "INSERT INTO write_back(email, status, changed_at, hubspot_id, written_at) VALUES (?,?,?,?,?) "
                "ON CONFLICT(email) DO UPDATE SET status=excluded.status, changed_at=excluded.changed_at, "
                "hubspot_id=excluded.hubspot_id, written_at=excluded.written_at",
                [(e, s, c, int(h) if h else None, now) for e, s, c, h in rows])

    def engagement_written(self, hubspot_ids: Sequence[str]) -> Dict[str, str]:
        """hubspot id -> the engagement figures last written to it (one query per page)."""
        ids = sorted({int(i) for i in hubspot_ids if str(i).isdigit()})
        if not ids:
            return {}
        rows = self.conn.execute(f"SELECT hubspot_id, figures FROM engagement WHERE figures IS NOT NULL "
                                 f"AND hubspot_id IN ({','.join('?' * len(ids))})", ids)
        return {str(hid): figures for hid, figures in rows}

    def record_engagement(self, written: Iterable[Tuple[str, str]], refused: Iterable[Tuple[str, str]]) -> None:
        """(hubspot id, figures): written ones are remembered; refused ones are kept to retry."""
        now = _now()
        with self.transaction():
            self.conn.executemany(
                "INSERT INTO engagement(hubspot_id, figures, pending, written_at) VALUES (?,?,NULL,?) "
                "ON CONFLICT(hubspot_id) DO UPDATE SET figures=excluded.figures, pending=NULL, "
                "written_at=excluded.written_at", [(int(h), f, now) for h, f in written])
            self.conn.executemany(
                "INSERT INTO engagement(hubspot_id, pending) VALUES (?,?) "
                "ON CONFLICT(hubspot_id) DO UPDATE SET pending=excluded.pending", [(int(h), f) for h, f in refused])

    def forget_engagement(self, hubspot_ids: Iterable[str]) -> None:
        """Contacts HubSpot says do not exist: nothing of their figures is kept, written or pending."""
        with self.transaction():
            self.conn.executemany("DELETE FROM engagement WHERE hubspot_id=?", [(int(h),) for h in hubspot_ids])

    def engagement_pending(self, after: int = -1, limit: int = 100) -> List[Tuple[str, str]]:
        """(hubspot id, figures) HubSpot refused before, by id after `after`, a page at a time."""
        rows = self.conn.execute("SELECT hubspot_id, pending FROM engagement WHERE pending IS NOT NULL "
                                 "AND hubspot_id > ? ORDER BY hubspot_id LIMIT ?", (after, limit))
        return [(str(hid), pending) for hid, pending in rows]

    def failed_ids(self) -> List[str]:
        """Contacts that failed transiently: retried next run even if HubSpot did not change them."""
        return [str(r[0]) for r in self.conn.execute(
            "SELECT hubspot_id FROM problems WHERE kind='failed' ORDER BY hubspot_id")]

    def unheld_duplicates(self) -> List[str]:
        """Contacts recorded as duplicates of an address that no other synced contact holds any more (one
        handed the address's subscriber over by its owner's departure holds it itself: State.hand_over)."""
        return [str(r[0]) for r in self.conn.execute(
            "SELECT hubspot_id FROM problems p WHERE duplicate_of IS NOT NULL AND email IS NOT NULL AND email != '' "
            "AND NOT EXISTS (SELECT 1 FROM contacts c WHERE c.email = p.email AND c.hubspot_id != p.hubspot_id) "
            "ORDER BY hubspot_id")]

    def problems(self) -> List[Dict[str, object]]:
        cur = self.conn.execute("SELECT hubspot_id, email, kind, reason, attempts, first_seen, last_seen "
                                "FROM problems ORDER BY kind, hubspot_id")
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, row)) for row in cur]

    def synced_ids(self, after: int = -1, limit: int = 1000) -> List[int]:
        """Synced contacts' ids above `after`, in order, a page at a time."""
        return [int(r[0]) for r in self.conn.execute(
            "SELECT hubspot_id FROM contacts WHERE hubspot_id > ? ORDER BY hubspot_id LIMIT ?", (after, limit))]

    def association_signatures(self, hubspot_ids: Sequence[int]) -> Dict[int, str]:
        ids = [int(i) for i in hubspot_ids]
        if not ids:
            return {}
        return {int(r[0]): str(r[1]) for r in self.conn.execute(
            f"SELECT hubspot_id, signature FROM associations WHERE hubspot_id IN ({','.join('?' * len(ids))})", ids)}

    def save_association_signatures(self, rows: Iterable[Tuple[int, str]]) -> None:
        with self.transaction():
            self.conn.executemany("INSERT OR REPLACE INTO associations(hubspot_id, signature) VALUES (?, ?)", rows)

    def drop_unsynced_signatures(self) -> None:
        """Signatures of contacts no longer synced (they left, were forgotten)."""
        with self.transaction():
            self.conn.execute("DELETE FROM associations WHERE hubspot_id NOT IN (SELECT hubspot_id FROM contacts)")

    def count_contacts(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM contacts").fetchone()[0])

    # -- runs --------------------------------------------------------------------------------------
    def start_run(self, mode: str, dry_run: bool) -> int:
        try:
            with self.transaction():
                # Recorded as aborted until finish_run says otherwise: a killed run never reads "exit 0".
                cur = self.conn.execute("INSERT INTO runs(started_at, mode, dry_run, exit_code, message) "
                                        "VALUES (?,?,?,?,?)", (_now(), mode, int(dry_run), EXIT_ABORTED,
                                                               "did not finish (killed or crashed)"))
        except StateWriteError as exc:
            raise StateError(str(exc)) from None  # nothing has been done yet: a setup problem
        self.current_run = int(cur.lastrowid or 0)
        return self.current_run

    def finish_run(self, run_id: int, counts: Dict[str, int], exit_code: int, message: str = "") -> None:
        sets = ", ".join(f"{k}=?" for k in RUN_COUNTS)
        with self.transaction():
            self.conn.execute(f"UPDATE runs SET finished_at=?, {sets}, exit_code=?, message=? WHERE id=?",
                              (_now(), *[int(counts.get(k, 0)) for k in RUN_COUNTS], exit_code, clip(message, 500),
                               run_id))

    def runs(self, limit: int = 20) -> List[Dict[str, object]]:
        cur = self.conn.execute("SELECT * FROM runs ORDER BY id DESC LIMIT ?", (limit,))
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, row)) for row in cur]


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any error; SQLite errors become StateError."""

    def __init__(self, state: State) -> None:
        self.state = state

    def __enter__(self) -> None:
        try:
            if self.state.conn.in_transaction:
                # Left open by a signal (SIGTERM, Ctrl-C) that landed between an earlier BEGIN and its
                # body: `with` never ran that one's __exit__. Nothing of it was written; drop it, or
                # recording how the run ended would fail.
                self.state.conn.execute("ROLLBACK")
            self.state.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as exc:
            raise StateWriteError(self.state._explain(exc)) from None

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        conn = self.state.conn
        if exc_type is None:
            try:
                conn.execute("COMMIT")
                return
            except sqlite3.DatabaseError as err:
                exc, exc_type = err, type(err)
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.DatabaseError:
                pass  # SQLite already rolled back (a full disk does that)
        if isinstance(exc, sqlite3.DatabaseError):
            raise StateWriteError(self.state._explain(exc)) from None
