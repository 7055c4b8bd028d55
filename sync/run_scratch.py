"""What one run must remember about every contact it reads, kept in SQLite, not in Python.

A run over a million contacts that kept a set or a dict of every id or address it read would grow
by about 170 bytes a contact (210 MB at a million, issue 32). What the engine needs for the whole
run goes here instead: a private temporary SQLite database ("" is SQLite's own: on disk, deleted on
close, never the state file), whose page cache is bounded (a couple of MB) whatever the size, and
which a dry run may write as freely as a real one. One statement per page of contacts, never one
per contact; lookups are asked only for the few ids a page needs.
"""

from __future__ import annotations

import sqlite3
from collections.abc import MutableSet
from contextlib import contextmanager
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Set, Tuple

CHUNK = 500  # ids per lookup statement (well under SQLite's limit of bound parameters)


def _ints(ids: Iterable[str]) -> List[int]:
    return [int(i) for i in ids if str(i).isdigit()]


@contextmanager
def _batch(conn: sqlite3.Connection) -> Iterator[None]:
    """One transaction around a page's rows: autocommit would make each row its own (twice the CPU)."""
    conn.execute("BEGIN")
    try:
        yield
    finally:
        conn.execute("COMMIT")


class ScratchIds(MutableSet[str]):
    """A set of HubSpot record ids in one table of the scratch database; `among` asks for many at once."""

    def __init__(self, scratch: RunScratch, table: str) -> None:
        self.scratch = scratch
        self.table = table

    @property
    def conn(self) -> sqlite3.Connection:
        return self.scratch.conn

    def add(self, hubspot_id: str) -> None:
        self.update([hubspot_id])

    def update(self, hubspot_ids: Iterable[str]) -> None:
        with _batch(self.conn):
            self.conn.executemany(f"INSERT OR IGNORE INTO {self.table} VALUES (?)",
                                  ((i,) for i in _ints(hubspot_ids)))

    def discard(self, hubspot_id: str) -> None:
        if str(hubspot_id).isdigit():
            self.conn.execute(f"DELETE FROM {self.table} WHERE hubspot_id=?", (int(hubspot_id),))

    def __iter__(self) -> Iterator[str]:
        return (str(r[0]) for r in self.conn.execute(f"SELECT hubspot_id FROM {self.table} ORDER BY hubspot_id"))

    def __len__(self) -> int:
        return int(self.conn.execute(f"SELECT COUNT(*) FROM {self.table}").fetchone()[0])

    def __contains__(self, hubspot_id: object) -> bool:
        if not str(hubspot_id).isdigit():
            return False
        return self.conn.execute(f"SELECT 1 FROM {self.table} WHERE hubspot_id=?",
                                 (int(str(hubspot_id)),)).fetchone() is not None

    def among(self, hubspot_ids: Sequence[str]) -> Set[str]:
        """Which of these ids are in the set (one query per CHUNK ids)."""
        found: Set[str] = set()
        ids = _ints(hubspot_ids)
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start:start + CHUNK]
            found.update(str(r[0]) for r in self.conn.execute(
                f"SELECT hubspot_id FROM {self.table} WHERE hubspot_id IN ({','.join('?' * len(chunk))})", chunk))
        return found


class RunScratch:
    """One run's per-contact bookkeeping: the address each contact was read with, and what a dry full
    pass read (a real one marks it in the state's contacts table instead)."""

    def __init__(self) -> None:
        self._conn: Optional[sqlite3.Connection] = None
        self.dry_seen = ScratchIds(self, "dry_seen")

    @property
    def conn(self) -> sqlite3.Connection:
        """Opened at first use: a run stopped before it reads a contact (a refused token, a state it
        cannot write) never makes one, and its own error is the one said."""
        if self._conn is None:
            # Autocommit with no journal: nothing here outlives the run or needs rolling back.
            conn = sqlite3.connect("", isolation_level=None)
            conn.execute("PRAGMA journal_mode=OFF")
            conn.execute("CREATE TABLE addresses (hubspot_id INTEGER PRIMARY KEY, email TEXT NOT NULL)")
            conn.execute(f"CREATE TABLE {self.dry_seen.table} (hubspot_id INTEGER PRIMARY KEY)")
            self._conn = conn
        return self._conn

    def remember_addresses(self, pairs: Iterable[Tuple[str, str]]) -> None:
        """(HubSpot id, the address it was read with in this run), a page at a time."""
        with _batch(self.conn):
            self.conn.executemany("INSERT OR REPLACE INTO addresses VALUES (?,?)",
                                  ((int(i), e) for i, e in pairs if str(i).isdigit()))

    def addresses_of(self, hubspot_ids: Iterable[str]) -> Dict[str, str]:
        """id -> the address it was read with in this run, for those of these ids this run has read."""
        out: Dict[str, str] = {}
        ids = _ints(hubspot_ids)
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start:start + CHUNK]
            out.update((str(h), e) for h, e in self.conn.execute(
                f"SELECT hubspot_id, email FROM addresses WHERE hubspot_id IN ({','.join('?' * len(chunk))})", chunk))
        return out

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
