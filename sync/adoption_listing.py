"""MailerLite's subscriber listing for adoption and drift repair, read across as many runs as it takes.

A big account's listing does not fit in one run: 1,000,000 subscribers at 100 a page are 10,000
requests, 83 minutes at MailerLite's 120 a minute, against SYNC_MAX_RUNTIME's 50. So the listing is
read page by page into the state file (table `listing_held`, schema 11), each page in one
transaction with the listing's progress (its cursor, the pages and subscribers read: meta key
`mailerlite_listing`), and the next run continues from the cursor. One run reads until its share of
the run's time is used (`Tunables.listing_share`), and leaves the rest to the pass that compares.

A listing ends one of two ways:
- **complete**: a page without a next cursor. An address it lacks is one MailerLite does not hold.
- **incomplete**: it returned a subscriber id it had already returned (a loop, however fresh its
  cursors look), read past the account's count by more than the margin, or one page kept failing
  through its retries in two runs (FAILING_PAGE_RUNS). What it read is compared as usual; what it
  lacks is evidence of nothing (the engine sends those contacts as an hourly run would: an upsert
  never reactivates anyone).
Until it ends it is **reading**: contacts whose address it has not reached wait for it.

A listing begun more than a day ago, or whose account's count moved by more than the sync's own
creations and ordinary churn explain, is begun again from the first page.

Memory stays flat: rows go to SQLite a page at a time, and a loop is caught by an indexed look-up
of the page's ids, never by a set in memory. The state grows by one `listing_held` row per
subscriber while a listing is kept (about 150 bytes with the default fields; emptied when the full
pass that used it is done).
"""

from __future__ import annotations

import json
import logging
import sqlite3
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, Callable, ContextManager, Dict, Iterator, List, Optional, Sequence, Tuple

from .mailerlite import MailerLiteClient
from .retrying import Transient

log = logging.getLogger(__name__)

PROGRESS_KEY = "mailerlite_listing"  # state meta: the listing's progress (Progress, as JSON)
MAX_AGE_MS = 24 * 3_600_000  # a listing begun longer ago than this is begun again: too stale to compare with
# A page that keeps failing through its retries in this many runs ends the listing as incomplete. Not
# in the first: an outage that happens to begin at the listing must not turn into sending the whole
# rest of the account blind; the contacts it has not reached wait one run.
FAILING_PAGE_RUNS = 2
READING, COMPLETE, INCOMPLETE = "reading", "complete", "incomplete"


def past_total_margin(total: int) -> int:
    """How far past the account's count a listing may read before it is taken for a loop: subscribers
    that arrive while it is read are listed too (newest first, so mostly before the cursor)."""
    return max(1000, total // 10)


def churn_allowed(total: int) -> int:
    """How far the account's count may move between runs without the listing being begun again
    (forms, imports, deletions in MailerLite's app), besides the subscribers the sync itself created."""
    return max(1000, total // 20)


Row = Tuple[str, Optional[str], str, str, Optional[str]]  # email, id, status, fields JSON, groups JSON


@dataclass
class Progress:
    started_ms: int
    total: Optional[int]  # the account's count (limit=0) when the listing began
    cursor: Optional[str] = None  # the next page (None with pages 0: the first)
    pages: int = 0
    read: int = 0  # subscribers stored
    status: str = READING
    reason: str = ""  # why an incomplete listing ended
    created: int = 0  # subscribers the sync created since it began: they explain a count that grew
    failed_runs: int = 0  # runs in which the page at `cursor` kept failing through its retries


@dataclass(frozen=True)
class Held:
    """One subscriber as MailerLite's listing shows it."""

    subscriber_id: Optional[str]
    status: str
    fields: Dict[str, Any]
    groups: Optional[Dict[str, str]]  # group id -> name; None when the listing did not include them


def _row(subscriber: Dict[str, Any]) -> Optional[Row]:
    email = subscriber.get("email")
    if not isinstance(email, str) or not email.strip():
        return None  # nothing to match a contact with
    sid = subscriber.get("id")
    fields = subscriber.get("fields")
    groups = subscriber.get("groups")
    ids: Optional[Dict[str, str]] = None
    if isinstance(groups, list):
        ids = {str(g["id"]): str(g.get("name") or "") for g in groups if isinstance(g, dict) and g.get("id")}
    return (email.strip().lower(), None if sid is None else str(sid), str(subscriber.get("status") or ""),
            json.dumps(fields if isinstance(fields, dict) else {}, ensure_ascii=False),
            None if ids is None else json.dumps(ids, ensure_ascii=False))


@contextmanager
def _plain_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def temporary_store() -> Tuple[sqlite3.Connection, Callable[[], ContextManager[None]]]:
    """A private temporary database with the state's two listing tables (a dry run, which writes no
    state): on disk, deleted on close."""
    conn = sqlite3.connect("", isolation_level=None)
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute("CREATE TABLE listing_held (email TEXT PRIMARY KEY, subscriber_id TEXT, status TEXT NOT NULL, "
                 "fields TEXT NOT NULL, groups TEXT)")
    conn.execute("CREATE INDEX listing_held_by_id ON listing_held(subscriber_id)")
    return conn, lambda: _plain_transaction(conn)


class Listing:
    """The listing kept in `conn` (the state's, or a temporary one), with its progress."""

    def __init__(self, conn: sqlite3.Connection, transaction: Callable[[], ContextManager[None]],
                 own_conn: bool = False) -> None:
        self.conn = conn
        self.transaction = transaction
        self.own_conn = own_conn  # a temporary database, closed with the listing
        self.progress: Optional[Progress] = self._load()
        self.account_total: Optional[int] = None  # the count this run read
        self.begun_now = False  # begun by this run (not one kept from an earlier run)
        # The copies of the page `get` was last handed (read in one query); any write to the kept
        # listing forgets them.
        self._page: Sequence[str] = ()
        self._page_rows: Dict[str, Optional[Held]] = {}

    # -- progress ------------------------------------------------------------------------------------
    def _load(self) -> Optional[Progress]:
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (PROGRESS_KEY,)).fetchone()
        if row is None:
            return None
        data = json.loads(row[0])
        return Progress(**{k: data[k] for k in Progress.__dataclass_fields__ if k in data})

    def _save(self) -> None:
        assert self.progress is not None
        self.conn.execute("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET "
                          "value=excluded.value", (PROGRESS_KEY, json.dumps(asdict(self.progress), sort_keys=True)))

    @property
    def status(self) -> str:
        return self.progress.status if self.progress else READING

    @property
    def settled(self) -> bool:
        """Read to its end, or ended incomplete: nothing waits for it any more."""
        return self.status in (COMPLETE, INCOMPLETE)

    @property
    def complete(self) -> bool:
        return self.status == COMPLETE

    @property
    def read_count(self) -> int:
        return self.progress.read if self.progress else 0

    def begin(self, mailerlite: MailerLiteClient, now_ms: int, total: Optional[int] = None) -> None:
        """Continue the kept listing, or begin it again when it is a day old or its account's count
        moved by more than it can explain. One request: the count (`limit=0`), unless the caller
        has just read it (`total`)."""
        self.account_total = mailerlite.count_subscribers() if total is None else total
        reason = self._stale(now_ms)
        if reason:
            log.warning("MailerLite's subscriber listing is read again from the start: %s", reason)
        if reason or self.progress is None:
            with self.transaction():
                self.conn.execute("DELETE FROM listing_held")
                self._page = ()
                self.progress = Progress(started_ms=now_ms, total=self.account_total)
                self._save()
            self.begun_now = True

    def _stale(self, now_ms: int) -> str:
        progress = self.progress
        if progress is None:
            return ""
        if now_ms - progress.started_ms > MAX_AGE_MS or now_ms < progress.started_ms:
            return "it was begun more than a day ago"
        if progress.total is not None and self.account_total is not None:
            moved = abs(self.account_total - progress.total - progress.created)
            if moved > churn_allowed(progress.total):
                return (f"the account's subscriber count moved from {progress.total:,} to {self.account_total:,} "
                        f"since it was begun")
        return ""

    # -- reading -------------------------------------------------------------------------------------
    def read(self, mailerlite: MailerLiteClient, time_left: Callable[[], bool],
             seen: Optional[Callable[[List[Tuple[str, str]]], None]] = None) -> None:
        """Pages from the kept cursor, each stored with the progress in one transaction, while
        `time_left()` and the listing is not settled; one page at least, so that every run moves it on
        (the run's own deadline still holds: the retry layer checks it before each request). `seen`:
        handed each stored page's (address, status), for the consent ledger (consent.seen_in_listing)."""
        assert self.progress is not None, "begin() first"
        pages = 0
        while self.progress.status == READING and (pages == 0 or time_left()):
            pages += 1
            try:
                items, following = mailerlite.subscriber_page(self.progress.cursor)
            except Transient as exc:
                self._page_failed(exc.reason)
                return
            if not items and following is not None:  # empty pages with fresh cursors would go on for ever
                self._end("served an empty page that leads to another")
                return
            rows = [row for row in map(_row, items) if row is not None]
            again = self._returned_before(rows)
            if again is not None:
                self._end(f"returned subscriber {again} a second time (a listing that loops)")
                return
            with self.transaction():
                self.conn.executemany("INSERT OR REPLACE INTO listing_held VALUES (?,?,?,?,?)", rows)
                self._page = ()
                self.progress.cursor = following
                self.progress.pages += 1
                self.progress.read += len(rows)
                self.progress.failed_runs = 0
                if following is None:
                    self.progress.status = COMPLETE
                self._save()
            if seen is not None and rows:
                seen([(email, status) for email, _, status, _, _ in rows])
            total = max(self.progress.total or 0, self.account_total or 0)
            if following is not None and (self.progress.total is not None or self.account_total is not None) \
                    and self.progress.read > total + past_total_margin(total):
                self._end(f"read {self.progress.read:,} subscribers, past the account's {total:,}")
                return
        if self.progress.status == COMPLETE:
            log.info("read MailerLite's listing: %d subscribers", self.progress.read)

    def _returned_before(self, rows: List[Row]) -> Optional[str]:
        """A subscriber id this listing already returned (in an earlier page, or twice in this one)."""
        ids = [row[1] for row in rows if row[1] is not None]
        if len(set(ids)) != len(ids):
            return next(i for n, i in enumerate(ids) if i in ids[:n])
        for start in range(0, len(ids), 500):  # SQLite's bound-parameter limit
            chunk = ids[start:start + 500]
            found = self.conn.execute(f"SELECT subscriber_id FROM listing_held WHERE subscriber_id IN "
                                      f"({','.join('?' * len(chunk))}) LIMIT 1", chunk).fetchone()
            if found is not None:
                return str(found[0])
        return None

    def _page_failed(self, reason: str) -> None:
        assert self.progress is not None
        self.progress.failed_runs += 1
        if self.progress.failed_runs >= FAILING_PAGE_RUNS:
            self._end(f"kept failing on one page in {self.progress.failed_runs} runs ({reason})")
            return
        with self.transaction():
            self._save()
        log.warning("MailerLite's subscriber listing kept failing on one page (%s); the next run tries it again",
                    reason)

    def _end(self, reason: str) -> None:
        assert self.progress is not None
        with self.transaction():
            self.progress.status, self.progress.reason = INCOMPLETE, reason
            self._save()

    # -- answers -------------------------------------------------------------------------------------
    def get(self, email: str, page: Sequence[str] = ()) -> Optional[Held]:
        """MailerLite's copy of this address. `page`: the addresses of the page it belongs to, whose
        copies are all read in one query at the first of them (one per page, not one per contact)."""
        key = email.strip().lower()
        if page and page is not self._page:
            self._page, self._page_rows = page, self._read(sorted({e.strip().lower() for e in page if e}))
        if page and key in self._page_rows:
            return self._page_rows[key]
        return self._read([key]).get(key)

    def _read(self, emails: List[str]) -> Dict[str, Optional[Held]]:
        """These addresses' copies, None for those the listing lacks (SQLite's bound-parameter limit:
        500 a statement)."""
        out: Dict[str, Optional[Held]] = dict.fromkeys(emails)
        for start in range(0, len(emails), 500):
            chunk = emails[start:start + 500]
            for email, sid, status, fields, groups in self.conn.execute(
                    f"SELECT email, subscriber_id, status, fields, groups FROM listing_held WHERE email IN "
                    f"({','.join('?' * len(chunk))})", chunk):
                out[email] = Held(sid, status, json.loads(fields),
                                  None if groups is None else dict(json.loads(groups)))
        return out

    def begun_before(self, synced_at_s: Optional[int]) -> bool:
        """Whether a contact recorded as synced at `synced_at_s` (epoch seconds) by an earlier run was
        written after this kept listing began: the listing, newest first, had passed where MailerLite
        put it, so its absence from the listing is no sign that MailerLite lost it. Never for a listing
        this run began: it was read before this run wrote anything."""
        if self.begun_now or synced_at_s is None or self.progress is None:
            return False
        return synced_at_s >= self.progress.started_ms // 1000  # whole seconds: the same second counts

    def note_created(self, created: int) -> None:
        """Subscribers this run created while the listing is kept: the count grows by them."""
        if self.progress is not None and created and not self.settled:
            with self.transaction():
                self.progress.created += created
                self._save()

    def progress_line(self) -> str:
        """The one line a run says while the listing is still being read."""
        total = self.account_total if self.account_total is not None else (self.progress.total if self.progress
                                                                             else None)
        of = f" of {total:,}" if total is not None else ""
        return f"adopting MailerLite's subscribers: {self.read_count:,}{of} read; the next runs continue"

    def incomplete_line(self) -> str:
        """The one line a run says when the listing ended incomplete."""
        reason = self.progress.reason if self.progress else ""
        return (f"MailerLite's subscriber listing {reason}: it is taken as incomplete; the {self.read_count:,} "
                f"subscribers read were compared, the other contacts are sent as an hourly run sends them")

    def clear(self) -> None:
        """Done with it (the full pass that used it finished): the state no longer keeps it."""
        with self.transaction():
            self.conn.execute("DELETE FROM listing_held")
            self.conn.execute("DELETE FROM meta WHERE key=?", (PROGRESS_KEY,))
        self._page = ()
        self.progress = None

    def close(self) -> None:
        if self.own_conn:
            self.conn.close()


def open_listing(state_conn: sqlite3.Connection, state_transaction: Callable[[], ContextManager[None]],
                 dry_run: bool) -> Listing:
    """The state's kept listing; a dry run (which writes no state) reads into a temporary one."""
    if dry_run:
        conn, transaction = temporary_store()
        return Listing(conn, transaction, own_conn=True)
    return Listing(state_conn, state_transaction)


def time_for_listing(started: float, deadline: Optional[float], share: float,
                     clock: Callable[[], float]) -> Callable[[], bool]:
    """Whether the listing may read another page: until `share` of the run's time (SYNC_MAX_RUNTIME,
    from `started` to `deadline` on `clock`'s scale) is used, so the pass has the rest."""
    if deadline is None:
        return lambda: True
    until = started + share * (deadline - started)
    return lambda: clock() < until
