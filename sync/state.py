"""Durable sync state in one SQLite file: bookmark, what each contact last looked like in
MailerLite, contacts with problems, and a row per run. Never holds a secret.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, FrozenSet, Iterable, List, Optional, Sequence

from .errors import StateError

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- One row per HubSpot contact MailerLite has accepted (or refused to reactivate).
CREATE TABLE IF NOT EXISTS contacts (
    hubspot_id INTEGER PRIMARY KEY,
    email TEXT NOT NULL,
    fingerprint TEXT NOT NULL,      -- hash of the mapped subscriber last accepted
    fields_set TEXT NOT NULL,       -- field keys the sync filled, comma-separated (to clear later)
    subscriber_id TEXT,
    outcome TEXT NOT NULL,          -- created | updated | not_reactivated
    synced_at INTEGER NOT NULL
);
-- Contacts currently rejected (bad data: retried when they change) or failed (retried next run).
CREATE TABLE IF NOT EXISTS problems (
    hubspot_id INTEGER PRIMARY KEY,
    email TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('rejected', 'failed')),
    reason TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at INTEGER NOT NULL,
    finished_at INTEGER,
    mode TEXT NOT NULL,
    dry_run INTEGER NOT NULL,
    read INTEGER, created INTEGER, updated INTEGER, unchanged INTEGER, skipped INTEGER,
    rejected INTEGER, failed INTEGER, not_reactivated INTEGER,
    exit_code INTEGER,
    message TEXT
);
"""

RUN_COUNTS = ("read", "created", "updated", "unchanged", "skipped", "rejected", "failed", "not_reactivated")


@dataclass(frozen=True)
class Known:
    """What the state knows of one contact."""

    fingerprint: Optional[str]  # of the last accepted subscriber
    fields_set: FrozenSet[str]
    subscriber_id: Optional[str]
    problem_kind: Optional[str]
    problem_fingerprint: Optional[str]
    problem_attempts: int


@dataclass(frozen=True)
class Result:
    """One contact's outcome in this run, to be recorded."""

    hubspot_id: str
    email: str
    outcome: str  # created | updated | not_reactivated | rejected | failed
    fingerprint: str
    fields_set: FrozenSet[str] = frozenset()
    subscriber_id: Optional[str] = None
    reason: str = ""


def _now() -> int:
    return int(time.time())


class State:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(str(path), timeout=10.0, isolation_level=None)
            self._prepare()
        except sqlite3.DatabaseError as exc:
            raise StateError(self._explain(exc)) from None
        except OSError as exc:
            raise StateError(f"cannot open the state database {path}: {exc.strerror or exc}") from None

    def _explain(self, exc: sqlite3.DatabaseError) -> str:
        text = str(exc).lower()
        if "not a database" in text or "malformed" in text or "corrupt" in text:
            return (f"the state database {self.path} is damaged; move it aside and the next run "
                    f"will be a full pass (nothing in MailerLite is lost)")
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
            if version < 1:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
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
    def known(self, hubspot_ids: Sequence[str]) -> Dict[str, Known]:
        """What is recorded for these contacts (one query per call: pass a page at a time)."""
        ids = [int(i) for i in hubspot_ids if str(i).isdigit()]
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        out: Dict[str, Known] = {}
        rows = self.conn.execute(
            f"SELECT c.hubspot_id, c.fingerprint, c.fields_set, c.subscriber_id, p.kind, p.fingerprint, p.attempts "
            f"FROM contacts c LEFT JOIN problems p USING (hubspot_id) WHERE c.hubspot_id IN ({marks}) "
            f"UNION ALL SELECT p.hubspot_id, NULL, '', NULL, p.kind, p.fingerprint, p.attempts FROM problems p "
            f"WHERE p.hubspot_id IN ({marks}) AND p.hubspot_id NOT IN (SELECT hubspot_id FROM contacts)",
            ids + ids)
        for hid, fp, fields, sid, kind, pfp, attempts in rows:
            out[str(hid)] = Known(fp, frozenset(f for f in (fields or "").split(",") if f), sid, kind, pfp,
                                  int(attempts or 0))
        return out

    def record(self, results: Iterable[Result]) -> None:
        """Record outcomes in one transaction (called once per MailerLite answer)."""
        now = _now()
        with self.transaction():
            for r in results:
                hid = int(r.hubspot_id)
                if r.outcome in ("created", "updated", "not_reactivated"):
                    self.conn.execute(
                        "INSERT INTO contacts(hubspot_id, email, fingerprint, fields_set, subscriber_id, outcome, "
                        "synced_at) VALUES (?,?,?,?,?,?,?) ON CONFLICT(hubspot_id) DO UPDATE SET "
                        "email=excluded.email, fingerprint=excluded.fingerprint, fields_set=excluded.fields_set, "
                        "subscriber_id=COALESCE(excluded.subscriber_id, contacts.subscriber_id), "
                        "outcome=excluded.outcome, synced_at=excluded.synced_at",
                        (hid, r.email, r.fingerprint, ",".join(sorted(r.fields_set)), r.subscriber_id,
                         r.outcome, now))
                    self.conn.execute("DELETE FROM problems WHERE hubspot_id=?", (hid,))
                else:
                    self.conn.execute(
                        "INSERT INTO problems(hubspot_id, email, kind, reason, fingerprint, attempts, first_seen, "
                        "last_seen) VALUES (?,?,?,?,?,1,?,?) ON CONFLICT(hubspot_id) DO UPDATE SET "
                        "email=excluded.email, kind=excluded.kind, reason=excluded.reason, "
                        "fingerprint=excluded.fingerprint, attempts=problems.attempts+1, last_seen=excluded.last_seen",
                        (hid, r.email, r.outcome, r.reason[:1000], r.fingerprint, now, now))

    def failed_ids(self) -> List[str]:
        """Contacts that failed transiently: retried next run even if HubSpot did not change them."""
        return [str(r[0]) for r in self.conn.execute(
            "SELECT hubspot_id FROM problems WHERE kind='failed' ORDER BY hubspot_id")]

    def problems(self) -> List[Dict[str, object]]:
        cur = self.conn.execute("SELECT hubspot_id, email, kind, reason, attempts, first_seen, last_seen "
                                "FROM problems ORDER BY kind, hubspot_id")
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, row)) for row in cur]

    def count_contacts(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM contacts").fetchone()[0])

    # -- runs --------------------------------------------------------------------------------------
    def start_run(self, mode: str, dry_run: bool) -> int:
        with self.transaction():
            cur = self.conn.execute("INSERT INTO runs(started_at, mode, dry_run) VALUES (?,?,?)",
                                    (_now(), mode, int(dry_run)))
        return int(cur.lastrowid)

    def finish_run(self, run_id: int, counts: Dict[str, int], exit_code: int, message: str = "") -> None:
        sets = ", ".join(f"{k}=?" for k in RUN_COUNTS)
        with self.transaction():
            self.conn.execute(f"UPDATE runs SET finished_at=?, {sets}, exit_code=?, message=? WHERE id=?",
                              (_now(), *[int(counts.get(k, 0)) for k in RUN_COUNTS], exit_code, message[:500],
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
            self.state.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as exc:
            raise StateError(self.state._explain(exc)) from None

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        conn = self.state.conn
        if exc_type is None:
            try:
                conn.execute("COMMIT")
                return
            except sqlite3.DatabaseError as err:
                exc, exc_type = err, type(err)
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        if isinstance(exc, sqlite3.DatabaseError):
            raise StateError(self.state._explain(exc)) from None
