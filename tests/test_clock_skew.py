"""Times an earlier run stored with its clock ahead are set back to now."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import replace

from sync.clock_skew import clamp_future_times
from sync.state import PendingAction, State
from tests.conftest import FAST, seed_contacts


# -- (e) times an earlier run stored with its clock ahead are set back, once, with one line -------------
def clock(days: float):
    return replace(FAST, wall_clock=lambda: time.time() + days * 86_400)


def test_times_left_in_the_future_by_a_clock_ahead_are_clamped_to_now(run, hubspot_fake, mailerlite_fake):
    ids = seed_contacts(hubspot_fake, 3)
    assert run(tunables=clock(30)).code == 0  # the machine's clock was a month ahead
    hubspot_fake.update_contact(ids[1], {"hs_email_optout": "true"})
    hubspot_fake.archive_contact(ids[1])  # opted out, then deleted
    corrected = run()  # the clock is right again
    assert corrected.code == 0
    assert corrected.err.count("times in the future") == 1, corrected.err
    assert "archived_checked_ms" in corrected.err and "consent_sweep_due_ms" in corrected.err
    with sqlite3.connect(run.state_db) as db:
        stored = dict(db.execute("SELECT key, value FROM meta WHERE key IN ('archived_checked_ms', 'bookmark_ms')"))
    assert all(int(v) <= time.time() * 1000 for v in stored.values())
    daily = run(tunables=clock(1.01))  # a day later the archived check is due again, not a month later
    assert "times in the future" not in daily.err
    assert daily.code == 0 and daily.summary["unsubscribed"] == 1
    assert mailerlite_fake.subscriber("person1@example.com")["status"] == "unsubscribed"


def test_clamping_sets_back_each_kind_of_time_and_leaves_right_ones_alone(tmp_path, caplog):
    state = State(tmp_path / "state.db")
    now = 1_000_000_000_000
    day = 86_400_000
    state.set_json("last_done", now + 5)
    state.set_json("next_due", now + 30 * day)
    state.set_json("due_soon", now + day // 2)  # within its interval: a right clock stores this
    state.set_bookmark(now + day)
    waiting = PendingAction("1", "a@example.com", "7", True, frozenset(), False, "opted out")
    soon = PendingAction("2", "b@example.com", "8", True, frozenset(), False, "opted out")
    for action, next_try in ((waiting, now + 365 * day), (soon, now + 1000)):
        state.save_action(action)
        state.action_failed(action, "HTTP 503", next_try=next_try)
    clamped = clamp_future_times(state, now, {"last_done": 0, "next_due": day, "due_soon": day}, day)
    assert clamped == ["last_done", "next_due", "bookmark", "the back-off of 1 consent action(s)"]
    assert (state.get_json("last_done"), state.get_json("next_due"), state.get_json("due_soon")) == \
        (now, now + day, now + day // 2)
    assert state.bookmark() == now
    assert (state.action_next_try(waiting), state.action_next_try(soon)) == (now + day, now + 1000)
    assert [r.message.count("times in the future") for r in caplog.records] == [1]
    assert clamp_future_times(state, now, {"last_done": 0, "next_due": day}, day) == []  # once
    state.close()
