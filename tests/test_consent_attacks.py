"""Attacks on the merged sync's consent promise, end to end through cli.main against the fakes.

Each test is one attack: an opt-out lost, someone unsubscribed or re-subscribed by mistake, a
pending action forgotten, a token leaked, a traceback. Those that broke the program failed
before the commit that added them (named there); the others held and stay as regression tests.
Assertions are on what MailerLite ends up with and on the exit codes, after the runs a cron would make."""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Dict, Set

import pytest
from werkzeug.wrappers import Request, Response

from sync.consent import actions
from tests.conftest import seed_contacts
from tests.test_consent import consent_only, groups_of, mapping_file, state_rows, upserts
from tests.test_hubspot_paging import _set_bookmark


def _bodies(request: Request):
    body = json.loads(request.get_data() or b"null")
    if request.path.endswith("/subscribers"):
        return [body]
    if request.path.endswith("/batch") and isinstance(body, dict):
        return [i.get("body") for i in body.get("requests") or [] if isinstance(i, dict)]
    return []


class _ConsentFaults:
    """Full upserts (with fields) of `refused` addresses get a 422 about their data; consent-only
    upserts ({email, status}) get `consent_answer` while it is set (503: an outage; 402: the account)."""

    def __init__(self, refused: Set[str]) -> None:
        self.refused = refused
        self.consent_answer: int = 0

    def __call__(self, request: Request):
        bodies = [b for b in _bodies(request) if isinstance(b, dict)]
        if any(b.get("email") in self.refused and "fields" in b for b in bodies):
            return Response(json.dumps({"message": "The given data was invalid.",
                                        "errors": {"fields.name": ["The fields.name is invalid."]}}),
                            status=422, content_type="application/json")
        consent = [b for b in bodies if set(b) == {"email", "status"}]
        if consent and self.consent_answer:
            message: Dict[str, str] = {"message": "Payment required." if self.consent_answer == 402
                                       else "Server Error"}
            return Response(json.dumps(message), status=self.consent_answer, content_type="application/json")
        return None


# -- an outage (or an account refusal, or a stop) while the opt-outs of one answer are applied ------------

@pytest.mark.parametrize("consent_answer", [503, 402], ids=["outage", "account-refused"])
def test_optouts_of_one_answer_survive_a_stop_while_the_first_is_applied(run, hubspot_fake, mailerlite_fake,
                                                                        consent_answer):
    """Five opted-out contacts whose data MailerLite refuses come back in one answer; their
    opt-outs go on their own, and MailerLite stops taking them after the first ones. The run
    stops (exit 3), but every opt-out is kept: the next run delivers all five."""
    ids = seed_contacts(hubspot_fake, 5)
    emails = {f"person{i}@example.com" for i in range(5)}
    assert run().code == 0
    for cid in ids:
        hubspot_fake.update_contact(cid, {"hs_email_optout": "true", "firstname": "Changed"})
    faults = _ConsentFaults(emails)
    faults.consent_answer = consent_answer
    mailerlite_fake.faults.only_paths = ("/api/subscribers", "/api/batch")
    mailerlite_fake.faults.script.extend([faults] * 2000)
    stopped = run()
    # An outage of the consent-only upserts is no account-level failure (issue 22, item 5): the run
    # goes on, exit 1, the actions kept; a refused account stops it.
    assert stopped.code == (1 if consent_answer == 503 else 3), stopped.err
    faults.consent_answer = 0  # MailerLite is back; the data is still refused
    later = run()  # the pending opt-outs go first; the data, refused as before, is not news
    assert later.code == 0 and later.summary["failed"] == 0, later.err
    assert state_rows(run, "SELECT COUNT(*) FROM pending_actions") == [(0,)]
    assert {e: mailerlite_fake.subscriber(e)["status"] for e in sorted(emails)} == \
        {e: "unsubscribed" for e in sorted(emails)}


# -- addresses MailerLite itself refuses must not block everyone else's opt-outs ---------------------------

def test_optouts_mailerlite_cannot_take_do_not_stop_every_later_run(run, hubspot_fake, mailerlite_fake):
    """Three opted-out contacts at a domain MailerLite refuses (422 on the address): their
    unsubscribes can never be taken. That is their problem (failed, kept), not an outage: the
    runs go on, and a fourth contact's opt-out is delivered."""
    mailerlite_fake.undeliverable_domains.add("dead.example")
    for i in range(3):
        hubspot_fake.add_contact({"email": f"gone{i}@dead.example", "hs_email_optout": "true"}, modified_ms=1 + i)
    ok = hubspot_fake.add_contact({"email": "ok@example.com", "firstname": "Ok"}, modified_ms=10)
    first = run()
    assert first.code == 1, first.err
    hubspot_fake.update_contact(ok, {"hs_email_optout": "true"})
    second = run()
    assert second.code == 1, second.err
    assert mailerlite_fake.subscriber("ok@example.com")["status"] == "unsubscribed"
    assert len(consent_only(mailerlite_fake, "ok@example.com")) == 0  # it went with its own full upsert


# -- an opt-out while leaving a list, read by a full pass --------------------------------------------------

@pytest.mark.parametrize("second_run", [["--full"], []], ids=["full", "incremental"])
def test_optout_while_leaving_the_list_reaches_mailerlite_in_a_full_pass(run, hubspot_fake, mailerlite_fake,
                                                                       second_run):
    """A list-scoped full pass reads the list's members only: a contact that left the list and
    opted out in the same change was never read, so it left by absence and its opt-out was lost
    for good (forgotten, never read again)."""
    ids = seed_contacts(hubspot_fake, 3)
    hubspot_fake.lists["55"] = [int(i) for i in ids]
    path = mapping_file(run, '[groups]\nall = ["Synced"]\n[scope]\nlists = ["55"]\n')
    assert run("--mapping", path).code == 0
    hubspot_fake.update_contact(ids[0], {"hs_email_optout": "true"})
    hubspot_fake.lists["55"] = [int(i) for i in ids[1:]]
    result = run("--mapping", path, *second_run)
    assert result.code == 0 and result.summary["left_scope"] == 1, result.err
    run("--mapping", path, "--full")  # any later pass cannot make up for it: the contact is forgotten
    assert mailerlite_fake.subscriber("person0@example.com")["status"] == "unsubscribed"
    assert mailerlite_fake.subscriber("person1@example.com")["status"] == "active"


# -- an opt-out made together with an address change or removal --------------------------------------------

@pytest.mark.parametrize("new_email", ["new@example.com", ""], ids=["changed", "removed"])
def test_optout_with_a_new_or_no_address_unsubscribes_the_old_one(run, hubspot_fake, mailerlite_fake, new_email):
    """The person opts out and, in the same change, their address is replaced or emptied: the
    old address left with on_leave (groups only) and kept getting mail."""
    cid = hubspot_fake.add_contact({"email": "old@example.com", "firstname": "Ann"}, modified_ms=1)
    path = mapping_file(run, '[groups]\nall = ["Synced"]\n')
    assert run("--mapping", path).code == 0
    hubspot_fake.update_contact(cid, {"email": new_email, "hs_email_optout": "true"})
    result = run("--mapping", path)
    assert result.code == 0, result.err
    assert mailerlite_fake.subscriber("old@example.com")["status"] == "unsubscribed"
    if new_email:
        assert mailerlite_fake.subscriber(new_email)["status"] == "unsubscribed"


def test_optout_with_a_new_address_leaves_the_old_one_to_the_contact_still_holding_it(run, hubspot_fake,
                                                                                    mailerlite_fake):
    """The old address is another live contact's too (a shared inbox): its consent is that contact's."""
    cid = hubspot_fake.add_contact({"email": "shared@example.com", "firstname": "Ann"}, modified_ms=1)
    hubspot_fake.add_contact({"email": "shared@example.com", "firstname": "Bob"}, modified_ms=2)
    assert run().code == 1  # the second is a duplicate
    hubspot_fake.update_contact(cid, {"email": "ann@example.com", "hs_email_optout": "true"})
    run()
    assert mailerlite_fake.subscriber("shared@example.com")["status"] == "active"
    assert mailerlite_fake.subscriber("ann@example.com")["status"] == "unsubscribed"


@pytest.mark.parametrize("new_email", ["new\u200b@example.com", "bad\ud800@example.com", "taken@example.com"],
                         ids=["zero-width", "lone-surrogate", "another-contacts"])
def test_optout_with_a_refused_new_address_unsubscribes_the_old_one(run, hubspot_fake, mailerlite_fake,
                                                                   new_email):
    """Opted out while the address changed to one that is refused (invalid text, or already
    another contact's): the refusal hid the change, and the old address kept getting mail."""
    cid = hubspot_fake.add_contact({"email": "old@example.com", "firstname": "Ann"}, modified_ms=1)
    hubspot_fake.add_contact({"email": "taken@example.com", "firstname": "Tom"}, modified_ms=2)
    assert run().code == 0
    hubspot_fake.update_contact(cid, {"email": new_email, "hs_email_optout": "true"})
    result = run()
    assert result.code == 1 and result.summary["rejected"] == 1, result.err
    assert mailerlite_fake.subscriber("old@example.com")["status"] == "unsubscribed"
    taken = mailerlite_fake.subscriber("taken@example.com")["status"]
    assert taken == ("unsubscribed" if new_email == "taken@example.com" else "active")
    assert run().code == 0  # said once


def test_sigterm_while_the_optouts_of_one_answer_are_applied_keeps_them_all(run, hubspot_fake, mailerlite_fake,
                                                                           monkeypatch):
    """SIGTERM arrives while the first of five opt-outs (their data refused) goes on its own."""
    ids = seed_contacts(hubspot_fake, 5)
    emails = {f"person{i}@example.com" for i in range(5)}
    assert run().code == 0
    for cid in ids:
        hubspot_fake.update_contact(cid, {"hs_email_optout": "true", "firstname": "Changed"})
    mailerlite_fake.faults.only_paths = ("/api/subscribers", "/api/batch")
    mailerlite_fake.faults.script.extend([_ConsentFaults(emails)] * 2000)
    original = actions.ConsentWriter._unsubscribe
    calls = []

    def terminated_once(self, email):
        calls.append(email)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # the handler raises as soon as this returns
        return original(self, email)

    monkeypatch.setattr(actions.ConsentWriter, "_unsubscribe", terminated_once)
    stopped = run()
    assert stopped.code == 143 and calls, stopped.err
    monkeypatch.setattr(actions.ConsentWriter, "_unsubscribe", original)
    run()
    assert {e: mailerlite_fake.subscriber(e)["status"] for e in sorted(emails)} == \
        {e: "unsubscribed" for e in sorted(emails)}


# -- attacks that held: kept as regression tests -------------------------------------------------------------

@pytest.mark.parametrize("shape", ["import", "summary"])
def test_optouts_in_batches_answered_in_an_unknown_shape_are_delivered(run, hubspot_fake, mailerlite_fake, shape):
    ids = seed_contacts(hubspot_fake, 60)
    assert run().code == 0
    for cid in ids[::10]:
        hubspot_fake.update_contact(cid, {"hs_email_optout": "true", "firstname": "Changed"})
    for cid in ids[1::10]:
        hubspot_fake.update_contact(cid, {"firstname": "Changed"})
    mailerlite_fake.batch_item_shape = shape
    result = run()
    assert result.code == 0, result.err
    statuses = {i: mailerlite_fake.subscriber(f"person{i}@example.com")["status"] for i in range(60)}
    assert {i for i, s in statuses.items() if s == "unsubscribed"} == set(range(0, 60, 10))


@pytest.mark.parametrize("per_item", [False, True], ids=["batch-refused", "items-refused"])
def test_optouts_survive_an_account_refusal_in_a_batch(run, hubspot_fake, mailerlite_fake, per_item):
    ids = seed_contacts(hubspot_fake, 60)
    assert run().code == 0
    for cid in ids[::7]:
        hubspot_fake.update_contact(cid, {"hs_email_optout": "true", "firstname": "Changed"})
    for cid in ids[1::7]:
        hubspot_fake.update_contact(cid, {"firstname": "Changed"})
    mailerlite_fake.account_refusal, mailerlite_fake.account_refusal_per_item = "403-plan", per_item
    refused = run()
    assert refused.code == 3, refused.err
    mailerlite_fake.account_refusal = None
    assert run().code == 0
    statuses = {i: mailerlite_fake.subscriber(f"person{i}@example.com")["status"] for i in range(60)}
    assert {i for i, s in statuses.items() if s == "unsubscribed"} == set(range(0, 60, 7))


def test_optout_with_a_cleared_field_when_null_does_not_clear(run, hubspot_fake, mailerlite_fake):
    """The writer learns "" instead of null on an upsert that carries status unsubscribed."""
    mailerlite_fake.null_clears = False
    cid = hubspot_fake.add_contact({"email": "ann@example.com", "firstname": "Ann", "city": "Kranj"},
                                   modified_ms=1)
    assert run().code == 0
    hubspot_fake.update_contact(cid, {"hs_email_optout": "true", "city": ""})
    assert run().code == 0
    subscriber = mailerlite_fake.subscriber("ann@example.com")
    assert subscriber["status"] == "unsubscribed" and not subscriber["fields"].get("city")


@pytest.mark.parametrize("refuse_inactive", [False, True])
def test_full_force_never_resubscribes(run, hubspot_fake, mailerlite_fake, refuse_inactive):
    seed_contacts(hubspot_fake, 5)
    assert run().code == 0
    mailerlite_fake.subscriber("person1@example.com")["status"] = "unsubscribed"  # its own link
    mailerlite_fake.subscriber("person2@example.com")["status"] = "bounced"
    mailerlite_fake.refuse_inactive_upserts = refuse_inactive
    forced = run("--full", "--force")
    assert forced.code == 0, forced.err
    assert [mailerlite_fake.subscriber(f"person{i}@example.com")["status"] for i in range(5)] == \
        ["active", "unsubscribed", "bounced", "active", "active"]
    assert not [b for i in range(5) for b in upserts(mailerlite_fake, f"person{i}@example.com")
                if b.get("status") not in (None, "unsubscribed")]


def test_optouts_go_through_while_the_mass_leave_guard_holds_the_departures(run, hubspot_fake, mailerlite_fake):
    ids = seed_contacts(hubspot_fake, 100, lifecyclestage="customer")
    path = mapping_file(run, 'on_leave = "unsubscribe"\n[scope.where]\nlifecyclestage = ["customer"]\n')
    assert run("--mapping", path).code == 0
    for cid in ids[:40]:
        hubspot_fake.update_contact(cid, {"lifecyclestage": "lead"})  # a scope typed wrong, say
    hubspot_fake.update_contact(ids[50], {"hs_email_optout": "true"})
    hubspot_fake.update_contact(ids[0], {"hs_email_optout": "true"})  # leaving and opting out
    held = run("--mapping", path)
    assert held.code == 3 and "--allow-mass-leave" in held.err, held.err
    statuses = [mailerlite_fake.subscriber(f"person{i}@example.com")["status"] for i in range(100)]
    assert {i for i, s in enumerate(statuses) if s == "unsubscribed"} == {0, 50}
    again = run("--mapping", path)  # nothing moved on: held again, nobody else unsubscribed
    assert again.code == 3
    statuses = [mailerlite_fake.subscriber(f"person{i}@example.com")["status"] for i in range(100)]
    assert {i for i, s in enumerate(statuses) if s == "unsubscribed"} == {0, 50}


@pytest.mark.parametrize("new_id", [True, False], ids=["merge-gives-new-id", "survivor-keeps-id"])
def test_a_merge_into_an_opted_out_record_unsubscribes_the_merged_away_address(run, hubspot_fake, mailerlite_fake,
                                                                             new_id):
    """Two records of one person, the primary opted out: the merged record is opted out, and the
    other record's address (now one of its addresses) must not stay subscribed."""
    a = hubspot_fake.add_contact({"email": "main@example.com", "hs_email_optout": "true"}, modified_ms=1)
    b = hubspot_fake.add_contact({"email": "work@example.com", "hs_email_optout": "false"}, modified_ms=2)
    path = mapping_file(run, '[groups]\nall = ["Synced"]\n')
    assert run("--mapping", path).code == 0
    assert mailerlite_fake.subscriber("work@example.com")["status"] == "active"
    hubspot_fake.merge_contacts(a, b, new_id=new_id)
    result = run("--mapping", path)
    assert result.code == 0, result.err
    assert mailerlite_fake.subscriber("main@example.com")["status"] == "unsubscribed"
    assert mailerlite_fake.subscriber("work@example.com")["status"] == "unsubscribed"


@pytest.mark.parametrize("lag_minutes", [0, 3])
def test_optouts_made_while_the_search_pages_are_delivered(run, hubspot_fake, mailerlite_fake, monkeypatch,
                                                           lag_minutes):
    """Opt-outs made during an incremental run (one on a page already read, one on a later page),
    with a search index that is current or minutes late: delivered by this run or the next."""
    mailerlite_fake.limits_enabled = False
    seed_contacts(hubspot_fake, 5, age_ms=180 * 60_000)
    assert run().code == 0
    _set_bookmark(run.state_db, int(time.time() * 1000) - 120 * 60_000)
    ids = seed_contacts(hubspot_fake, 350, start=100, age_ms=30 * 60_000)
    hubspot_fake.search_lag_ms = lag_minutes * 60_000
    searches = []
    original = hubspot_fake.on_search

    def opt_out_after_first_page(request, **kwargs):
        searches.append(request.path)
        if len(searches) == 2:
            hubspot_fake.update_contact(ids[5], {"hs_email_optout": "true"})
            hubspot_fake.update_contact(ids[300], {"hs_email_optout": "true"})
        return original(request, **kwargs)

    monkeypatch.setattr(hubspot_fake, "on_search", opt_out_after_first_page)
    assert run().code == 0
    hubspot_fake.search_lag_ms = 0  # the index caught up
    assert run().code == 0
    assert mailerlite_fake.subscriber("person105@example.com")["status"] == "unsubscribed"
    assert mailerlite_fake.subscriber("person400@example.com")["status"] == "unsubscribed"
    assert sum(s["status"] == "unsubscribed" for s in mailerlite_fake.subscribers.values()) == 2


@pytest.mark.parametrize("name", ["bad\ud800x", "Ann\u202eevil", "Ann\x1b]0;title\x07"],
                         ids=["lone-surrogate", "bidi", "escape"])
def test_optout_with_hostile_text_in_a_name_is_delivered(run, hubspot_fake, mailerlite_fake, name):
    cid = hubspot_fake.add_contact({"email": "ann@example.com", "firstname": "Ann"}, modified_ms=1)
    assert run().code == 0
    hubspot_fake.update_contact(cid, {"firstname": name, "hs_email_optout": "true"})
    result = run()
    assert result.code in (0, 1) and "Traceback" not in result.err, result.err
    assert mailerlite_fake.subscriber("ann@example.com")["status"] == "unsubscribed"
    assert "\x1b" not in result.out + result.err


def test_a_dry_run_shows_the_departures_a_real_run_would_make_or_hold(run, hubspot_fake, mailerlite_fake):
    """A dry run after a held pass said "exit 0, nobody leaves": it never counted departures by
    absence, and the mass-leave guard never looked. It must forecast what the real run does."""
    ids = seed_contacts(hubspot_fake, 100)
    path = mapping_file(run, 'on_leave = "unsubscribe"\n')
    assert run("--mapping", path).code == 0
    for cid in ids[:40]:
        hubspot_fake.archive_contact(cid)
    assert run("--mapping", path, "--full").code == 3
    before = {s["email"]: dict(s) for s in mailerlite_fake.subscribers.values()}
    dry = run("--mapping", path, "--dry-run")
    assert dry.code == 3 and "--allow-mass-leave" in dry.err and dry.summary["mass_leave_held"] == 40, dry.err
    allowed = run("--mapping", path, "--dry-run", "--allow-mass-leave")
    assert allowed.code == 0 and allowed.summary["left_scope"] == 40, allowed.err
    assert {s["email"]: dict(s) for s in mailerlite_fake.subscribers.values()} == before  # wrote nothing
    held = run("--mapping", path)  # the held full pass is still pending, and still held
    assert held.code == 3 and state_rows(run, "SELECT COUNT(*) FROM contacts") == [(100,)]
    assert run("--mapping", path, "--allow-mass-leave").summary["left_scope"] == 40


@pytest.mark.parametrize("batch_errors", ["207", "400"])
def test_optouts_with_write_back_failing_in_the_same_run(run, hubspot_fake, mailerlite_fake, monkeypatch,
                                                         batch_errors):
    """HubSpot refuses the write-back of some statuses in the run that delivers opt-outs: the
    opt-outs stand, the failure is exit 1 and retried, and nothing ping-pongs back to MailerLite."""
    from sync.sandbox.fakes.hubspot import SCHEMA_WRITE_SCOPE, WRITE_SCOPE

    hubspot_fake.tokens["hs-test-token"] |= {WRITE_SCOPE, SCHEMA_WRITE_SCOPE}
    monkeypatch.setenv("SYNC_WRITE_BACK", "true")
    hubspot_fake.batch_errors = batch_errors
    ids = seed_contacts(hubspot_fake, 4)
    hubspot_fake.update_contact(ids[0], {"hs_email_optout": "true"})
    hubspot_fake.update_contact(ids[1], {"hs_email_optout": "true"})
    hubspot_fake.failing_update_ids = {ids[1]}
    first = run()
    assert first.code == 1 and first.summary["write_back_failed"] == 1, first.err
    hubspot_fake.failing_update_ids = set()
    second = run()
    assert second.code == 0 and second.summary["written_back"] == 1, second.err
    third = run()
    assert third.code == 0 and third.summary["created"] + third.summary["updated"] == 0
    statuses = [mailerlite_fake.subscriber(f"person{i}@example.com")["status"] for i in range(4)]
    assert statuses == ["unsubscribed", "unsubscribed", "active", "active"]
    assert [hubspot_fake.contacts[int(i)]["properties"].get("mailerlite_status") for i in ids[:2]] == \
        ["unsubscribed", "unsubscribed"]


@pytest.mark.parametrize("refuse_inactive", [False, True])
def test_duplicate_optout_while_the_owner_waits_in_a_batch(run, hubspot_fake, mailerlite_fake, refuse_inactive):
    """The owner of an address is still queued (batches fill up) when a second contact with the
    address opts out: the opt-out goes at once, and the owner's upsert later must not undo it."""
    mailerlite_fake.refuse_inactive_upserts = refuse_inactive
    seed_contacts(hubspot_fake, 10)
    hubspot_fake.add_contact({"email": "twin@example.com", "firstname": "One"}, modified_ms=1000)
    seed_contacts(hubspot_fake, 10, start=10)
    hubspot_fake.add_contact({"email": "TWIN@example.com", "hs_email_optout": "true"}, modified_ms=1001)
    seed_contacts(hubspot_fake, 30, start=20)
    first = run()
    assert first.code == 1 and first.summary["rejected"] == 1, first.err
    assert mailerlite_fake.subscriber("twin@example.com")["status"] == "unsubscribed"
    assert run("--full").code in (0, 1)
    assert mailerlite_fake.subscriber("twin@example.com")["status"] == "unsubscribed"
    assert not [b for b in upserts(mailerlite_fake, "twin@example.com") if b.get("status") == "active"]


# -- an opt-out, an opt-in, and a second opt-out, while the data is refused ---------------------------------

TYPED = 'create_missing_fields = true\n[fields]\nnumemployees = { field = "employees", type = "number" }\n'


def test_a_second_optout_of_a_rejected_contact_is_delivered_again(run, hubspot_fake, mailerlite_fake):
    """The opt-out of a contact with refused data goes on its own, once. The person opts in again
    (and re-subscribes with a MailerLite form), then opts out again, the data still refused: the
    second opt-out was taken for the first one ("already delivered") and never sent."""
    path = mapping_file(run, TYPED)
    cid = hubspot_fake.add_contact({"email": "ann@example.com", "numemployees": "5"}, modified_ms=1)
    assert run("--mapping", path).code == 0
    hubspot_fake.update_contact(cid, {"hs_email_optout": "true", "numemployees": "lots"})
    assert run("--mapping", path).code == 1
    assert mailerlite_fake.subscriber("ann@example.com")["status"] == "unsubscribed"
    hubspot_fake.update_contact(cid, {"hs_email_optout": "false"})
    run("--mapping", path)
    mailerlite_fake.subscriber("ann@example.com")["status"] = "active"  # a MailerLite form, say
    hubspot_fake.update_contact(cid, {"hs_email_optout": "true"})
    again = run("--mapping", path)
    assert again.code == 1, again.err
    assert mailerlite_fake.subscriber("ann@example.com")["status"] == "unsubscribed"
    assert len(consent_only(mailerlite_fake, "ann@example.com")) == 2


# -- a kill between recording MailerLite's refusal and storing the opt-out it implies ----------------------

class _Killed(BaseException):
    """Stands for SIGKILL: nothing in the program catches it (finally blocks do run, unlike a real kill)."""


def test_a_kill_after_a_refusal_is_recorded_loses_no_optout(run, hubspot_fake, mailerlite_fake, monkeypatch):
    """MailerLite refuses the data of an opted-out contact; the process dies after the refusal is
    recorded and before the opt-out it implies is stored. The next run read the contact as
    "rejected as before" and never delivered the opt-out."""
    from sync.state import State

    cid = hubspot_fake.add_contact({"email": "cy@example.com", "firstname": "Cy"}, modified_ms=1)
    assert run().code == 0
    hubspot_fake.update_contact(cid, {"hs_email_optout": "true", "firstname": "Cyrus"})
    mailerlite_fake.faults.only_paths = ("/api/subscribers", "/api/batch")
    mailerlite_fake.faults.script.extend([_ConsentFaults({"cy@example.com"})] * 100)
    original = State.save_action

    def killed(self, action):
        raise _Killed()

    monkeypatch.setattr(State, "save_action", killed)
    with pytest.raises(_Killed):
        run()
    monkeypatch.setattr(State, "save_action", original)
    again = run()
    assert again.code in (0, 1), again.err
    assert mailerlite_fake.subscriber("cy@example.com")["status"] == "unsubscribed"
    assert len(consent_only(mailerlite_fake, "cy@example.com")) == 1
    assert run("--full").code == 0 and len(consent_only(mailerlite_fake, "cy@example.com")) == 1  # once


# -- a token echoed by MailerLite into the reasons of a pending opt-out ---------------------------------------

def test_an_echoed_token_never_reaches_a_pending_action(run, hubspot_fake, mailerlite_fake):
    """MailerLite echoes the Authorization header in its refusals of an opted-out contact's data and
    of the unsubscribe itself: the pending action's reason and last error are state rows too."""
    echo = "Authorization: Bearer ml-test-token"

    def refuse_echoing(request: Request):
        if any(isinstance(b, dict) and b.get("email") == "cy@example.com" for b in _bodies(request)):
            return Response(json.dumps({"message": "The given data was invalid.",
                                        "errors": {"fields.name": [f"not taken ({echo})"],
                                                   "status": [f"not taken ({echo})"]}}),
                            status=422, content_type="application/json")
        return None

    cid = hubspot_fake.add_contact({"email": "cy@example.com", "firstname": "Cy"}, modified_ms=1)
    assert run().code == 0
    hubspot_fake.update_contact(cid, {"hs_email_optout": "true", "firstname": "Cyrus"})
    mailerlite_fake.faults.only_paths = ("/api/subscribers", "/api/batch")
    mailerlite_fake.faults.script.extend([refuse_echoing] * 100)
    result = run()
    assert result.code == 1 and "ml-test-token" not in result.out + result.err, result.err
    assert state_rows(run, "SELECT COUNT(*) FROM pending_actions") == [(1,)]  # kept, to be tried again
    written = b"".join(p.read_bytes() for p in run.state_db.parent.glob("*") if p.is_file())
    assert b"ml-test-token" not in written


# -- a signal after the run finished ---------------------------------------------------------------------------

@pytest.mark.parametrize("ending", ["finished", "failed"])
def test_sigterm_during_the_final_healthcheck_ping_is_no_traceback(run, hubspot_fake, mailerlite_fake, monkeypatch,
                                                                   ending):
    """The run is over and recorded; SIGTERM comes while the health check is pinged (up to 15 s):
    it escaped cli.main as a traceback."""
    from sync import cli

    seed_contacts(hubspot_fake, 3)
    if ending == "failed":
        monkeypatch.setenv("MAILERLITE_API_KEY", "wrong")
    pinged = []

    def ping_interrupted(url, success, *args):
        pinged.append(success)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)  # the handler runs here, mid-ping

    monkeypatch.setattr(cli, "ping", ping_interrupted)
    result = run()
    assert pinged == [ending == "finished"] and result.code == 143, result.err
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == (1 if ending == "finished" else 2) and "SIGTERM" in lines[-1], result.err
    assert result.summary["exit_code"] == (0 if ending == "finished" else 2)  # what was printed stands
    assert state_rows(run, "SELECT exit_code FROM runs") == [(0 if ending == "finished" else 2,)]


# -- the run's time limit reached while consent actions are applied ---------------------------------------------

@pytest.mark.parametrize("stop", ["deadline", "wait-too-long"])
def test_the_time_limit_reached_during_pending_actions_stops_the_run_with_its_own_line(run, hubspot_fake,
                                                                                     mailerlite_fake, monkeypatch,
                                                                                     stop):
    """SYNC_MAX_RUNTIME (or a Retry-After beyond 15 minutes) while pending unsubscribes are retried:
    each one was counted failed and the run went on, to stop with "MailerLite keeps refusing
    unsubscribes" - a wrong line and wrong counts."""
    from sync.retrying import RunDeadline, WaitTooLong

    ids = seed_contacts(hubspot_fake, 4)
    emails = {f"person{i}@example.com" for i in range(4)}
    assert run().code == 0
    for cid in ids:
        hubspot_fake.update_contact(cid, {"hs_email_optout": "true", "firstname": "Changed"})
    faults = _ConsentFaults(emails)
    faults.consent_answer = 503
    mailerlite_fake.faults.only_paths = ("/api/subscribers", "/api/batch")
    mailerlite_fake.faults.script.extend([faults] * 2000)
    assert run().code == 1  # the unsubscribes are pending (issue 22, item 5: one address never stops the run)
    pending = state_rows(run, "SELECT COUNT(*) FROM pending_actions")
    assert pending[0][0] >= 3

    def out_of_time(self, email):
        raise (RunDeadline("the run reached its time limit (SYNC_MAX_RUNTIME) at a test; stopped")
               if stop == "deadline" else WaitTooLong("asked to wait 60 minutes; stopped"))

    monkeypatch.setattr(actions.ConsentWriter, "_unsubscribe", out_of_time)
    stopped = run()
    assert stopped.code == 3 and stopped.summary["failed"] == 0, stopped.err
    assert ("SYNC_MAX_RUNTIME" if stop == "deadline" else "60 minutes") in stopped.summary["message"]
    assert "keeps refusing" not in stopped.err
    assert state_rows(run, "SELECT COUNT(*) FROM pending_actions") == pending


# -- an opt-out whose full upsert MailerLite refuses, but not for its data ----------------------------------------

@pytest.mark.parametrize("code, body", [(400, {"message": "Bad request."}), (404, {"message": "Not found."})],
                         ids=["400", "404"])
def test_optout_with_an_upsert_refused_not_for_its_data_is_delivered_in_the_same_run(run, hubspot_fake,
                                                                                   mailerlite_fake, code, body):
    """A refusal that names no field is "failed, tried again" for up to three runs before it is
    rejected: the opt-out it carried waited those hours. It goes on its own at once."""
    cid = hubspot_fake.add_contact({"email": "cy@example.com", "firstname": "Cy"}, modified_ms=1)
    assert run().code == 0
    hubspot_fake.update_contact(cid, {"hs_email_optout": "true", "firstname": "Cyrus"})

    def refuse(request: Request):
        if any(isinstance(b, dict) and b.get("email") == "cy@example.com" and "fields" in b
               for b in _bodies(request)):
            return Response(json.dumps(body), status=code, content_type="application/json")
        return None

    mailerlite_fake.faults.only_paths = ("/api/subscribers", "/api/batch")
    mailerlite_fake.faults.script.extend([refuse] * 100)
    result = run()
    assert result.code == 1 and result.summary["failed"] == 1, result.err  # the data is tried again next run
    assert mailerlite_fake.subscriber("cy@example.com")["status"] == "unsubscribed"
    assert len(consent_only(mailerlite_fake, "cy@example.com")) == 1
    for _ in range(3):
        run()
    assert len(consent_only(mailerlite_fake, "cy@example.com")) == 1  # once


@pytest.mark.parametrize("reading", ["text-limit", "date-with-time"])
def test_optout_in_a_payload_the_writer_must_adapt(run, hubspot_fake, mailerlite_fake, reading):
    """The writer learns another reading of an unconfirmed behaviour (a shorter text limit, dates
    with a time) from the refusal of an upsert that carries status unsubscribed."""
    text = 'create_missing_fields = true\n[fields]\nborn = { field = "born", type = "date" }\n'
    path = mapping_file(run, text)
    hubspot_fake.add_property("born", "date", field_type="date")  # a property the mapping names must exist
    cid = hubspot_fake.add_contact({"email": "ann@example.com", "firstname": "Ann", "born": "1990-01-02"},
                                   modified_ms=1)
    assert run("--mapping", path).code == 0
    if reading == "text-limit":
        mailerlite_fake.text_max = 20
        change = {"firstname": "A" * 40}
    else:
        mailerlite_fake.date_with_time = True
        change = {"born": "1991-03-04"}
    hubspot_fake.update_contact(cid, {"hs_email_optout": "true", **change})
    result = run("--mapping", path)
    assert result.code == 0 and result.summary["rejected"] == 0, result.err
    assert mailerlite_fake.subscriber("ann@example.com")["status"] == "unsubscribed"
    assert consent_only(mailerlite_fake, "ann@example.com") == []  # the adapted full upsert carried it


def test_a_kill_after_an_upsert_is_recorded_loses_no_group_removal(run, hubspot_fake, mailerlite_fake, monkeypatch):
    """The stage changes: the upsert adds the new stage's group, and the old one must be left. The
    process dies after the upsert is recorded and before the removal is stored: the state said the
    groups were already right, and the subscriber stayed in the old stage's group for good."""
    from sync.state import State

    cid = hubspot_fake.add_contact({"email": "ann@example.com", "lifecyclestage": "customer"}, modified_ms=1)
    path = mapping_file(run, '[groups]\nproperty = { lifecyclestage = "Stage: {label}" }\n')
    assert run("--mapping", path).code == 0
    hubspot_fake.update_contact(cid, {"lifecyclestage": "lead"})
    original = State.save_action

    def killed(self, action):
        raise _Killed()

    monkeypatch.setattr(State, "save_action", killed)
    with pytest.raises(_Killed):
        run("--mapping", path)
    monkeypatch.setattr(State, "save_action", original)
    assert run("--mapping", path).code == 0
    assert groups_of(mailerlite_fake, "ann@example.com") == ["Stage: Lead"]
