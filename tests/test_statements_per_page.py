"""Issue 32: a pass costs a constant number of SQLite statements per page, not one or more per contact.

Every statement the sync hands SQLite (each `execute` and `executemany` call on any connection it
opens: the state, the run's scratch database, a dry run's listing) is counted over one run at N
and at 2N contacts. The difference may grow with the pages (100 contacts each), never with the
contacts: one statement per contact adds 100 a page, far above the bound. A count, not a time.
"""

from __future__ import annotations

import re
import sqlite3
from collections import Counter
from typing import Callable, Iterator, List, Tuple

import pytest

from sync.sandbox.fakes.hubspot import FakeHubSpot
from sync.sandbox.fakes.mailerlite import FakeMailerLite
from tests.conftest import TIME_SCALE, Runner, seed_contacts
from tests.test_adoption import fill_mailerlite

N = 300  # three pages of 100; 2N is six
PAGE = 100
PER_PAGE = 50  # statements a page of 100 may add (one statement per contact would add 100)


class Counted:
    """The statements handed to every SQLite connection opened while counting."""

    def __init__(self) -> None:
        self.on = False
        self.statements: Counter = Counter()  # by the statement's text, its parameter lists shortened

    def add(self, sql: str) -> None:
        if self.on:
            self.statements[re.sub(r"\?(,\s*\?)+", "?...", " ".join(sql.split()))[:90]] += 1


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counted]:
    counter = Counted()

    class Counting(sqlite3.Connection):
        def execute(self, sql, *args, **kwargs):  # type: ignore[no-untyped-def]
            counter.add(sql)
            return super().execute(sql, *args, **kwargs)

        def executemany(self, sql, *args, **kwargs):  # type: ignore[no-untyped-def]
            counter.add(sql)
            return super().executemany(sql, *args, **kwargs)

    real_connect = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect", lambda *a, **k: real_connect(*a, factory=Counting, **k))
    yield counter


def first_run(run: Runner, ml: FakeMailerLite, hs: FakeHubSpot, n: int) -> List[str]:
    return []  # nothing before: the first run creates every subscriber


def adopting(run: Runner, ml: FakeMailerLite, hs: FakeHubSpot, n: int) -> List[str]:
    fill_mailerlite(ml, n)  # the first run adopts what MailerLite already holds
    return []


def synced_then(*args: str) -> Callable[[Runner, FakeMailerLite, FakeHubSpot, int], List[str]]:
    def prepare(run: Runner, ml: FakeMailerLite, hs: FakeHubSpot, n: int) -> List[str]:
        assert run().code == 0
        return list(args)
    return prepare


def mass_edit(run: Runner, ml: FakeMailerLite, hs: FakeHubSpot, n: int) -> List[str]:
    assert run().code == 0
    for cid in list(hs.contacts):
        hs.update_contact(str(cid), {"city": "Maribor"})
    return []


SCENARIOS = {
    "a first run (creates)": (first_run, "created"),
    "a first run adopting MailerLite": (adopting, "adopted"),
    "--full, nothing changed (compared with the listing)": (synced_then("--full"), "unchanged"),
    "--full --force (re-sends)": (synced_then("--full", "--force"), "updated"),
    "--dry-run --full": (synced_then("--dry-run", "--full"), "unchanged"),
    "an incremental run after a mass edit": (mass_edit, "updated"),
}


def statements_of(scenario: str, n: int, tmp_path, monkeypatch, capsys, counted: Counted) -> Counter:
    prepare, kind = SCENARIOS[scenario]
    hs = FakeHubSpot(time_scale=TIME_SCALE).start()
    ml = FakeMailerLite(time_scale=TIME_SCALE).start()
    ml.limits_enabled = False  # batches of 50 throughout: an answer a request, recorded as it comes
    try:
        folder = tmp_path / str(n)
        folder.mkdir()
        run = Runner(folder, monkeypatch, capsys, hs, ml)
        seed_contacts(hs, n)
        args = prepare(run, ml, hs, n)
        counted.statements, counted.on = Counter(), True
        result = run(*args)
        counted.on = False
        assert result.code == 0 and result.summary is not None, result.err
        assert result.summary[kind] == n, result.summary
        return counted.statements
    finally:
        hs.stop()
        ml.stop()


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_statements_grow_by_the_page_not_by_the_contact(scenario, tmp_path, monkeypatch, capsys, counted):
    small = statements_of(scenario, N, tmp_path, monkeypatch, capsys, counted)
    large = statements_of(scenario, 2 * N, tmp_path, monkeypatch, capsys, counted)
    pages = N // PAGE
    grown: List[Tuple[int, str]] = sorted(((large[s] - small[s], s) for s in large), reverse=True)[:3]
    added = sum(large.values()) - sum(small.values())
    assert added <= PER_PAGE * pages, (
        f"{scenario}: {sum(small.values())} SQLite statements at {N} contacts, {sum(large.values())} at "
        f"{2 * N}: {added / pages:.0f} a page of {PAGE} (at most {PER_PAGE}); grown most: {grown}")
