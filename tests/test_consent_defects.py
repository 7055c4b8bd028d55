"""Issue 22 item 8: smaller consent defects, end to end through main.py against the fakes."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import replace

import pytest

from sync import engagement, write_back
from sync import mailerlite_answers as answers
from sync.clock_skew import clamp_future_times
from sync.mailerlite_answers import classify_upsert
from sync.sandbox.fakes.hubspot import SCHEMA_WRITE_SCOPE, WRITE_SCOPE
from sync.state import PendingAction, State
from tests.conftest import FAST, seed_contacts

UPDATE = "/crm/objects/2026-09/contacts/batch/update"


def recorded_ids(run) -> dict:
    """email -> the MailerLite subscriber id the state file recorded for it."""
    with sqlite3.connect(run.state_db) as conn:
        return {e: s for e, s in conn.execute("SELECT email, subscriber_id FROM contacts")}


# -- (a) a batch answer is matched to its request by address ----------------------------------------
@pytest.mark.parametrize("disorder", ["reversed", "foreign"])
def test_a_batch_answer_is_matched_by_address_never_by_position(run, hubspot_fake, mailerlite_fake, disorder):
    seed_contacts(hubspot_fake, 50)
    mailerlite_fake.batch_disorder.append(disorder)
    result = run()
    assert result.code == 0, result.err
    assert result.summary["created"] + result.summary["updated"] == 50
    ids = recorded_ids(run)
    assert len(ids) == 50
    for email, sid in ids.items():  # each contact holds its own subscriber's id, never another's
        assert sid == mailerlite_fake.subscriber(email)["id"], email
    stranger = mailerlite_fake.subscriber("stranger@elsewhere.example")
    assert stranger is None or stranger["id"] not in ids.values()
    assert result.err.count("does not understand") == 1  # said once; the rest of the run sends singles
    # Only the items whose answer did not name their own address went again, on their own.
    singles = mailerlite_fake.requests_to("POST", "/api/subscribers")
    assert len(singles) == {"reversed": 50, "foreign": 1}[disorder]


SUB = {"id": "7", "email": "a@example.com"}


@pytest.mark.parametrize("body,batch_item,kind", [
    ({"data": SUB}, True, answers.WRITTEN),
    ({"data": {**SUB, "email": " A@Example.com "}}, True, answers.WRITTEN),  # the same address, as MailerLite writes it
    ({"data": {**SUB, "email": "b@example.com"}}, True, answers.NOT_UNDERSTOOD),  # someone else's subscriber
    ({"data": {**SUB, "email": "a@xn--bcher-kva.example"}}, True, answers.NOT_UNDERSTOOD),
    ({"data": {**SUB, "email": "b@example.com"}}, False, answers.RETRY),
    ({"data": {"id": "7"}}, True, answers.NOT_UNDERSTOOD),  # a batch item must say whose it is
    ({"data": {"id": "7"}}, False, answers.WRITTEN),  # a single request's answer can only be its own
])
def test_a_success_is_about_the_address_sent(body, batch_item, kind):
    assert classify_upsert(200, body, batch_item=batch_item, email="a@example.com").kind == kind


@pytest.mark.parametrize("sent,answered", [
    ("a@bücher.example", "a@xn--bcher-kva.example"),  # an international domain, as punycode
    ("a@xn--bcher-kva.example", "A@Bücher.example"),
    ("a@" + "x" * 70 + ".example", "a@" + "x" * 70 + ".example"),  # a label IDNA refuses: compared as it is
])
def test_one_address_in_another_spelling_is_the_same_address(sent, answered):
    body = {"data": {"id": "7", "email": answered}}
    assert classify_upsert(200, body, batch_item=True, email=sent).kind == answers.WRITTEN


# -- (d) engagement figures for a contact HubSpot no longer has are dropped, not retried for ever -----
@pytest.mark.parametrize("batch_errors", ["207", "400"])
def test_engagement_of_a_deleted_contact_is_dropped_not_retried(run, hubspot_fake, mailerlite_fake, monkeypatch,
                                                               batch_errors):
    hubspot_fake.tokens["hs-test-token"] |= {WRITE_SCOPE, SCHEMA_WRITE_SCOPE}
    hubspot_fake.batch_errors = batch_errors  # both readings: a per-item error, or the batch refused
    monkeypatch.setenv("SYNC_ENGAGEMENT", "true")
    ids = seed_contacts(hubspot_fake, 3)
    assert run().summary["engagement_updated"] == 3
    hubspot_fake.archive_contact(ids[1])  # deleted in HubSpot; the daily archived check has not run yet
    for i in range(3):
        mailerlite_fake.set_engagement(f"person{i}@example.com", sent=2, opens=1, clicks=0)
    with sqlite3.connect(run.state_db) as db:
        db.execute("UPDATE meta SET value='0' WHERE key=?", (engagement.DUE_KEY,))  # the interval has passed
    second = run()
    assert second.code == 0 and second.summary["engagement_updated"] == 2
    assert "no longer exist" in second.err
    with sqlite3.connect(run.state_db) as db:
        assert db.execute("SELECT COUNT(*) FROM engagement WHERE pending IS NOT NULL").fetchone()[0] == 0
    updates = len(hubspot_fake.requests_to("POST", UPDATE))
    third = run()
    assert third.summary["engagement_requests"] == 0  # nothing retried, nothing due
    assert len(hubspot_fake.requests_to("POST", UPDATE)) == updates


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


# -- (c) a dry run does the reads a real run does, and meets the guards it meets -----------------------
def mailerlite_writes(ml) -> int:
    return sum(1 for r in ml.log if r.method in ("POST", "PUT", "DELETE"))


@pytest.mark.parametrize("archived", [1, 30])
def test_a_dry_run_reads_the_archived_contacts_as_the_real_run_would(run, hubspot_fake, mailerlite_fake, archived):
    ids = seed_contacts(hubspot_fake, 40)
    assert run().code == 0
    for cid in ids[:archived]:
        hubspot_fake.archive_contact(cid)
    due = replace(FAST, archived_check_ms=0)  # the daily archived check is due
    writes = mailerlite_writes(mailerlite_fake)
    dry = run("--dry-run", tunables=due)
    assert mailerlite_writes(mailerlite_fake) == writes, "a dry run writes nothing"
    assert all(mailerlite_fake.subscriber(f"person{i}@example.com")["status"] == "active" for i in range(40))
    real = run(tunables=due)
    assert (dry.code, dry.summary["left_scope"], dry.summary["mass_leave_held"]) == \
        (real.code, real.summary["left_scope"], real.summary["mass_leave_held"])
    if archived == 30:  # the mass-leave guard stops both, with the same line
        assert dry.code == 3 and dry.summary["mass_leave_held"] == 30 and "would leave the sync" in dry.err
    else:
        assert dry.code == 0 and dry.summary["left_scope"] == 1


# -- (b) two contacts that swap addresses between runs are not "duplicates" for ever --------------------
@pytest.mark.parametrize("same_page", [True, False])
def test_two_contacts_that_swap_addresses_are_resolved_in_one_run(run, hubspot_fake, mailerlite_fake, same_page):
    ids = seed_contacts(hubspot_fake, 4)
    assert run().code == 0
    a, b = ids[0], ids[3]
    hubspot_fake.update_contact(a, {"email": "person3@example.com", "firstname": "Was0"})
    hubspot_fake.update_contact(b, {"email": "person0@example.com", "firstname": "Was3"})
    # A page of one: each contact meets an owner the run has not read yet (or, in one page, has).
    page = FAST if same_page else replace(FAST, state_page=1)
    swapped = run(tunables=page)
    assert swapped.code == 0, swapped.err
    assert swapped.summary["rejected"] == 0
    assert mailerlite_fake.subscriber("person3@example.com")["fields"]["name"] == "Was0"
    assert mailerlite_fake.subscriber("person0@example.com")["fields"]["name"] == "Was3"
    assert [mailerlite_fake.subscriber(f"person{i}@example.com")["status"] for i in range(4)] == ["active"] * 4
    with sqlite3.connect(run.state_db) as db:
        held = dict(db.execute("SELECT email, hubspot_id FROM contacts"))
        assert db.execute("SELECT COUNT(*) FROM problems").fetchone()[0] == 0
    assert (held["person3@example.com"], held["person0@example.com"]) == (int(a), int(b))
    again = run()
    assert again.code == 0 and again.summary["rejected"] == 0


def test_a_real_duplicate_stays_a_duplicate(run, hubspot_fake, mailerlite_fake):
    ids = seed_contacts(hubspot_fake, 2)
    assert run().code == 0
    hubspot_fake.update_contact(ids[1], {"email": "person0@example.com"})  # the owner still holds it
    second = run()
    assert second.code == 1 and second.summary["rejected"] == 1
    assert mailerlite_fake.subscriber("person0@example.com")["fields"]["name"] == "First0"  # the first keeps it


def test_a_dry_run_reports_an_unsubscribe_it_would_send_on_its_own(run, hubspot_fake, mailerlite_fake):
    ids = seed_contacts(hubspot_fake, 2)
    assert run().code == 0
    # The second contact takes the first one's address and opts out: a duplicate, whose opt-out wins.
    hubspot_fake.update_contact(ids[1], {"email": "person0@example.com", "hs_email_optout": "true"})
    writes = mailerlite_writes(mailerlite_fake)
    dry = run("--dry-run")
    assert mailerlite_writes(mailerlite_fake) == writes
    assert dry.summary["would_send"] == 1 and dry.summary["left_scope"] == 1
    real = run()
    assert (real.summary["unsubscribed"], real.summary["left_scope"]) == (2, 1), real.err
    assert mailerlite_fake.subscriber("person0@example.com")["status"] == "unsubscribed"


def test_a_dry_run_reads_and_counts_the_write_back_as_the_real_run_would(run, hubspot_fake, mailerlite_fake,
                                                                         monkeypatch):
    hubspot_fake.tokens["hs-test-token"] |= {WRITE_SCOPE, SCHEMA_WRITE_SCOPE}
    monkeypatch.setenv("SYNC_WRITE_BACK", "true")
    seed_contacts(hubspot_fake, 3)
    assert run().code == 0  # the first pass: nothing inactive yet
    mailerlite_fake.add_subscriber("elsewhere@example.com", status="unsubscribed")  # no HubSpot contact
    mailerlite_fake.subscriber("person1@example.com")["status"] = "unsubscribed"
    with sqlite3.connect(run.state_db) as db:
        db.execute("UPDATE meta SET value='0' WHERE key=?", (write_back.DUE_KEY,))  # the interval has passed
    updates = len(hubspot_fake.requests_to("POST", UPDATE))
    dry = run("--dry-run")
    assert len(hubspot_fake.requests_to("POST", UPDATE)) == updates, "a dry run writes nothing to HubSpot"
    real = run()
    assert (dry.summary["write_back_unmatched"], real.summary["write_back_unmatched"]) == (1, 1)
    assert real.summary["written_back"] == 1
