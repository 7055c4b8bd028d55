"""Issue 32: nothing proportional to the database lives in a Python collection for a whole run.

Each kind of run that reads every contact (a full pass, an incremental run after a mass edit, a
dry full pass, a first run adopting what MailerLite holds) is stopped at the end of its pass, just
before the departures are worked out, and every collection reachable from the engine is measured:
none may hold anything like one entry per contact read. (Peak RSS itself is the benchmark's
memory guard: python benchmarks/bench_sync.py --guard.)
"""

from __future__ import annotations

from collections import deque
from typing import Any, List, Set, Tuple

import pytest

from sync import engine as engine_module
from tests.conftest import seed_contacts
from tests.test_adoption import fill_mailerlite

CONTACTS = 600  # six pages of 100: a per-page collection holds at most 100


def largest_collections(root: Any, limit: int = 3) -> List[Tuple[int, str]]:
    """The biggest containers reachable from `root` through the sync's own objects (attributes of
    instances of sync.* classes, and the containers they hold), as (size, path)."""
    found: List[Tuple[int, str]] = []
    seen: Set[int] = set()
    todo: deque = deque([(root, "engine")])
    while todo:
        obj, path = todo.popleft()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, (dict, set, frozenset, list, tuple, deque)):
            found.append((len(obj), path))
            if len(obj) <= 200:  # small ones may hold objects that hold big ones
                items = obj.items() if isinstance(obj, dict) else enumerate(obj)
                todo.extend((value, f"{path}[{key!r}]") for key, value in items)
        elif type(obj).__module__.startswith("sync.") and hasattr(obj, "__dict__"):
            todo.extend((value, f"{path}.{name}") for name, value in vars(obj).items())
    return sorted(found, reverse=True)[:limit]


@pytest.fixture
def measured(monkeypatch):
    """The largest collections reachable from the engine at the end of each run's pass."""
    sizes: List[List[Tuple[int, str]]] = []
    original = engine_module.Engine._warn_if_state_mismatch

    def at_pass_end(self):
        sizes.append(largest_collections(self))
        return original(self)

    monkeypatch.setattr(engine_module.Engine, "_warn_if_state_mismatch", at_pass_end)
    return sizes


def assert_flat(sizes: List[List[Tuple[int, str]]]) -> None:
    assert sizes, "the pass never ended"
    biggest = sizes[-1][0]
    assert biggest[0] < CONTACTS // 2, f"{biggest[1]} holds {biggest[0]} entries after a pass of {CONTACTS} contacts"


def test_a_full_pass_keeps_nothing_per_contact(run, hubspot_fake, measured):
    seed_contacts(hubspot_fake, CONTACTS)
    result = run("--full")
    assert result.code == 0 and result.summary["created"] == CONTACTS
    assert_flat(measured)


def test_a_dry_full_pass_keeps_nothing_per_contact(run, hubspot_fake, measured):
    seed_contacts(hubspot_fake, CONTACTS)
    assert run().code == 0
    result = run("--dry-run", "--full")
    assert result.code == 0 and result.summary["unchanged"] == CONTACTS and result.summary["left_scope"] == 0
    assert_flat(measured)


def test_an_incremental_run_after_a_mass_edit_keeps_nothing_per_contact(run, hubspot_fake, measured):
    ids = seed_contacts(hubspot_fake, CONTACTS)
    assert run().code == 0
    for cid in ids:
        hubspot_fake.update_contact(cid, {"city": "Maribor"})
    result = run()
    assert result.code == 0 and result.summary["updated"] == CONTACTS
    assert_flat(measured)


def test_a_first_run_adopting_mailerlite_keeps_nothing_per_contact(run, hubspot_fake, mailerlite_fake, measured):
    seed_contacts(hubspot_fake, CONTACTS)
    fill_mailerlite(mailerlite_fake, CONTACTS)
    result = run()
    assert result.code == 0 and result.summary["adopted"] == CONTACTS
    assert_flat(measured)
