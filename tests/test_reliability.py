"""Whatever happens during a run, MailerLite ends exactly right, nobody is re-subscribed, and the
state stays whole. Fast subset here; `-m slow` and benchmarks/reliability.py run the full sets."""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import replace

import pytest
from werkzeug.wrappers import Response

from sync import state as state_module
from tests.conftest import FAST, seed_contacts
from tests.reliability import FAULTS, trial


@pytest.mark.parametrize("fault", list(FAULTS))
def test_each_fault_ends_exactly_right(fault):
    # A MailerLite minute of 60 ms: the storm's 25 waits for the window's end take 1.5 s, not 7.5.
    result = trial(fault, seed=11, time_scale=0.001)
    assert result.exact, (result.codes, result.problems[:5], result.messages)


@pytest.mark.slow
@pytest.mark.parametrize("fault", list(FAULTS))
def test_each_fault_ten_trials(fault):
    failures = [t for t in (trial(fault, seed=s) for s in range(10)) if not t.exact]
    assert not failures, [(t.codes, t.problems[:3]) for t in failures]


# -- odd answers ------------------------------------------------------------------------------------

def _json(body, status=200):
    return lambda request: Response(json.dumps(body), status=status, content_type="application/json")


class _OddListingPageOnce:
    """The first contact listing page of a run is replaced by an odd answer (any HubSpot path version)."""

    def __init__(self, body) -> None:
        self.body = body
        self.done = False

    def __call__(self, request):
        listing = (request.method == "GET" and "/objects/" in request.path
                   and request.path.rstrip("/").endswith("/contacts") and request.args.get("archived") != "true")
        if self.done or not listing:
            return None
        self.done = True
        return _json(self.body)(request)


@pytest.mark.parametrize("odd", [
    {"results": None},
    {"results": [{"id": "1"}], "paging": None},  # a contact without properties
    {"results": [{"id": None, "properties": {"email": None}}]},
    {"results": "not a list"},
    {"unexpected": True},
    ["a", "list"],
    None,
], ids=["null-results", "no-properties", "null-id", "string-results", "no-results", "list", "null"])
def test_odd_hubspot_pages_never_crash_nor_make_contacts_leave(run, hubspot_fake, mailerlite_fake, odd):
    seed_contacts(hubspot_fake, 30)
    path = run.tmp_path / "mapping.toml"
    path.write_text('on_leave = "unsubscribe"\n')
    assert run("--mapping", str(path)).code == 0
    odd_page = _OddListingPageOnce(odd)
    hubspot_fake.faults.only_paths = ("/crm/",)
    hubspot_fake.faults.script.extend([odd_page] * 200)
    result = run("--mapping", str(path), "--full")
    assert odd_page.done and "Traceback" not in result.err
    # A listing cut short is never taken for a complete one: either the run read everything
    # (the odd page was retried) or it stopped with 3. Nobody leaves either way.
    if result.code in (0, 1):
        assert result.summary["read"] >= 30, result.err
    else:
        assert result.code == 3, result.err
    assert result.summary["left_scope"] == 0
    assert all(s["status"] == "active" for s in mailerlite_fake.subscribers.values())
    hubspot_fake.faults.script.clear()
    after = run("--mapping", str(path))
    assert after.code == 0 and after.summary["left_scope"] == 0
    assert len(mailerlite_fake.subscribers) == 30


@pytest.mark.parametrize("odd", [
    {"total": 1, "responses": "nope"},
    {"total": 1, "responses": [None] * 50},
    {"total": 1, "responses": [{"code": "201", "body": None}] * 50},
    {"message": "ok"},
], ids=["string-responses", "null-items", "string-codes", "no-responses"])
def test_odd_mailerlite_batch_answers_never_crash(run, hubspot_fake, mailerlite_fake, odd):
    seed_contacts(hubspot_fake, 60)
    mailerlite_fake.faults.only_paths = ("/api/batch",)
    mailerlite_fake.faults.script.append(_json(odd))
    result = run()
    assert "Traceback" not in result.err and result.code in (0, 1, 3), result.err
    mailerlite_fake.faults.script.clear()
    for _ in range(3):
        if run().code == 0:
            break
    assert len(mailerlite_fake.subscribers) == 60


# -- clocks -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("offset_h", [-1, +1], ids=["clock-back-an-hour", "clock-ahead-an-hour"])
def test_a_jumping_clock_loses_no_change(run, hubspot_fake, mailerlite_fake, monkeypatch, offset_h):
    ids = seed_contacts(hubspot_fake, 20)
    run()
    hubspot_fake.update_contact(ids[3], {"firstname": "Before"})
    jumped = run(tunables=replace(FAST, wall_clock=lambda: time.time() + offset_h * 3600))
    assert jumped.code == 0 and mailerlite_fake.subscriber("person3@example.com")["fields"]["name"] == "Before"
    hubspot_fake.update_contact(ids[4], {"firstname": "After"})  # after the jumped run
    assert run().code == 0
    assert mailerlite_fake.subscriber("person4@example.com")["fields"]["name"] == "After"


# -- the state database under stress ----------------------------------------------------------------------

def test_state_locked_by_another_program(run, hubspot_fake, mailerlite_fake, monkeypatch):
    seed_contacts(hubspot_fake, 5)
    run()
    other = sqlite3.connect(run.state_db, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        result = run(tunables=replace(FAST, state_busy_timeout_s=0.2))
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert result.code == 2 and "locked by another program" in result.err and "Traceback" not in result.err
    assert run().code == 0


def test_full_disk_mid_run_aborts_cleanly_and_loses_nothing(run, hubspot_fake, mailerlite_fake, monkeypatch):
    seed_contacts(hubspot_fake, 400)
    original = state_module.State._prepare

    def tiny_disk(self):
        original(self)
        self.conn.execute("PRAGMA max_page_count = 12")  # "database or disk is full" soon

    monkeypatch.setattr(state_module.State, "_prepare", tiny_disk)
    result = run()
    assert result.code == 3 and "disk is full" in result.err and "Traceback" not in result.err
    monkeypatch.setattr(state_module.State, "_prepare", original)
    assert run().code == 0
    db = sqlite3.connect(run.state_db)
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert len(mailerlite_fake.subscribers) == 400
    assert mailerlite_fake.upsert_count <= 400 + 50, "only what was in flight is sent again"


def test_read_only_state_is_a_clear_error(run, hubspot_fake, mailerlite_fake, monkeypatch):
    # Root ignores file modes, so the read-only file is opened read-only the way SQLite would
    # find it: the error SQLite raises is the same.
    seed_contacts(hubspot_fake, 3)
    run()
    real_connect = sqlite3.connect
    monkeypatch.setattr(state_module.sqlite3, "connect",
                        lambda path, **kw: real_connect(f"file:{path}?mode=ro", uri=True, **kw))
    hubspot_fake.add_contact({"email": "new@example.com"})
    result = run()
    lines = [line for line in result.err.splitlines() if line.startswith("ERROR")]
    assert result.code == 2 and len(lines) == 1 and "read-only" in lines[0], result.err
    assert mailerlite_fake.subscriber("new@example.com") is None  # nothing was written


def test_unwritable_state_folder_is_a_clear_error(run, monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("SYNC_STATE_DB", str(blocker / "state.db"))
    result = run()
    assert result.code == 2 and "cannot create the lock file" in result.err and "Traceback" not in result.err
