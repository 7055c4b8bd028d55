"""Attacks on the consent ledger's schema-13 rules (issue 28), end to end through main.py against the
fakes: HubSpot's time of an opt-out, departures of an address another contact holds, out-of-scope
opt-outs of an address the sync wrote, problem-only written addresses as tombstones. Each docstring
says what a person would see if the attack finds a defect."""

from __future__ import annotations

import pytest

from tests.conftest import seed_contacts
from tests.consent_model import SCOPE_LIST, WEBINAR_GROUP, WEBINAR_LIST
from tests.test_consent import consent_only, state_rows
from tests.test_consent_by_address import a_day_later
from tests.test_consent_model_regressions import ANN, BAD_NUMBER, BOB, GROUP, contact, groups_of, with_mapping


@pytest.fixture
def mapped(run, tmp_path, hubspot_fake):
    """`run` with the model's mapping (on_leave = "remove_from_groups", not scoped); keywords go to
    `run` (tunables=...)."""
    with_mapping(run, tmp_path, hubspot_fake)  # writes tmp_path / "mapping.toml"
    path = str(tmp_path / "mapping.toml")
    return lambda *args, **kw: run("--mapping", path, *args, **kw)


def test_a_refused_contact_deleted_in_hubspot_leaves_the_address_it_had_unsubscribed_followed(
        mapped, hubspot_fake, mailerlite_fake):
    """P's data is refused and P opts out: the unsubscribe goes on its own (the sync wrote the
    address). The person signs up again through a MailerLite form and opts back in in HubSpot; then P
    is deleted there, so nobody in HubSpot holds ann. Later ann opts out of all email by address.
    The sweep (--full) must follow the address the sync wrote and let go of. A person would see ann
    active in MailerLite, run after run, though HubSpot holds it opted out: P's problem row outlived
    P (a full pass that does not list a refused contact never forgets it), so ann never became a
    tombstone."""
    p = contact(hubspot_fake, numemployees=BAD_NUMBER, hs_email_optout="true")
    assert mapped().summary["rejected"] == 1
    assert mailerlite_fake.subscriber(ANN)["status"] == "unsubscribed"
    mailerlite_fake.resubscribe_by_form(ANN)  # she signs up again in MailerLite...
    hubspot_fake.set_address_consent(ANN, unsubscribed_all=False)  # ...and in HubSpot
    mapped()
    hubspot_fake.archive_contact(p)  # P deleted: nobody in HubSpot holds the address now
    mapped("--full")
    assert mailerlite_fake.subscriber(ANN)["status"] == "active"
    hubspot_fake.set_address_consent(ANN, unsubscribed_all=True)  # ann opts out again, by address
    mapped("--full")  # the sweep is due on every --full
    assert mailerlite_fake.subscriber(ANN)["status"] == "unsubscribed"


def test_a_contact_deleted_in_hubspot_leaves_its_groups_though_a_deleted_refused_one_had_its_address(
        mapped, hubspot_fake, mailerlite_fake):
    """P (data refused) and C (synced, in the group) hold ann. P is deleted in HubSpot, then C is
    too: nobody live holds ann, so C's departure must apply on_leave (remove_from_groups). A person
    would see ann, gone from HubSpot, still in the "From HubSpot" group, mailed as its member."""
    p = contact(hubspot_fake, numemployees=BAD_NUMBER)
    c = contact(hubspot_fake)
    mapped()
    assert GROUP in groups_of(mailerlite_fake, ANN)
    hubspot_fake.archive_contact(p)
    mapped("--full")
    hubspot_fake.archive_contact(c)
    mapped("--full")
    assert mailerlite_fake.subscriber(ANN)["status"] == "active"  # on_leave is remove_from_groups
    assert GROUP not in groups_of(mailerlite_fake, ANN)


def test_a_scoped_full_pass_forgets_a_refused_contact_deleted_and_so_gone_from_the_list(
        run, tmp_path, hubspot_fake, mailerlite_fake):
    """The scoped variant: HubSpot takes a deleted contact out of its lists, so a --full pass does not
    get P back from the list either. P (refused, opted out: the sync unsubscribed ann) opted back in,
    signed up again through a MailerLite form, then was deleted; ann opts out later by address. The
    sweep must follow ann; a person would see it active."""
    sync = with_mapping(run, tmp_path, hubspot_fake, scoped=True)
    p = contact(hubspot_fake, numemployees=BAD_NUMBER, hs_email_optout="true", lifecyclestage="lead")
    hubspot_fake.lists[SCOPE_LIST].append(int(p))
    assert sync().summary["rejected"] == 1
    assert mailerlite_fake.subscriber(ANN)["status"] == "unsubscribed"
    mailerlite_fake.resubscribe_by_form(ANN)
    hubspot_fake.set_address_consent(ANN, unsubscribed_all=False)
    sync()
    hubspot_fake.archive_contact(p)
    hubspot_fake.lists[SCOPE_LIST].remove(int(p))  # HubSpot drops a deleted contact from its lists
    sync("--full")
    hubspot_fake.set_address_consent(ANN, unsubscribed_all=True)
    sync("--full")
    assert mailerlite_fake.subscriber(ANN)["status"] == "unsubscribed"


def test_an_address_the_sweep_unsubscribed_then_signed_up_again_is_followed_when_it_opts_out_again(
        mapped, hubspot_fake, mailerlite_fake):
    """X is synced and deleted: ann is a tombstone. It opts out by address; the sweep unsubscribes it
    (and drops the tombstone). The person signs up again through a MailerLite form (a --full pass's
    listing shows it active) and opts back in, then out again, by address in HubSpot. Nobody in
    HubSpot holds ann; the ledger shows the sync wrote it and MailerLite holds it active. A person
    would see ann active for good, HubSpot holding it opted out: nothing reads it any more."""
    contact(hubspot_fake, BOB)  # someone else stays synced (a --full pass reads MailerLite's listing)
    x = contact(hubspot_fake)
    assert mapped().code == 0
    hubspot_fake.archive_contact(x)
    assert mapped("--full").code == 0
    hubspot_fake.set_address_consent(ANN, unsubscribed_all=True)
    assert mapped("--full").summary["unsubscribed"] == 1  # the sweep
    mailerlite_fake.resubscribe_by_form(ANN)
    hubspot_fake.set_address_consent(ANN, unsubscribed_all=False)
    mapped("--full")  # the listing shows ann active again
    assert mailerlite_fake.subscriber(ANN)["status"] == "active"
    hubspot_fake.set_address_consent(ANN, unsubscribed_all=True)
    mapped("--full")
    assert mailerlite_fake.subscriber(ANN)["status"] == "unsubscribed"


def test_an_out_of_scope_opt_out_of_a_written_address_is_sent_once_not_every_full_pass(
        run, tmp_path, hubspot_fake, mailerlite_fake):
    """Guard (found nothing): rule (c)'s unsubscribe of an out-of-scope contact's address the sync
    wrote is sent once; later --full passes reading the same opt-out send nothing more (HubSpot's
    time of it is no later than the one delivered)."""
    sync = with_mapping(run, tmp_path, hubspot_fake, scoped=True)
    x = contact(hubspot_fake, lifecyclestage="lead")
    hubspot_fake.lists[SCOPE_LIST].append(int(x))
    assert sync().code == 0
    hubspot_fake.lists[SCOPE_LIST].remove(int(x))  # X leaves the scope: ann let go of (a tombstone)
    sync()
    contact(hubspot_fake, hs_email_optout="true", lifecyclestage="customer")  # Z, out of scope, opted out
    sync("--full")
    assert mailerlite_fake.subscriber(ANN)["status"] == "unsubscribed"
    sent = len(consent_only(mailerlite_fake, ANN))
    sync("--full")
    sync("--full")
    assert len(consent_only(mailerlite_fake, ANN)) == sent


def test_a_dry_full_pass_forgets_no_problem_and_makes_no_tombstone(mapped, run, hubspot_fake, mailerlite_fake):
    """Guard: the full pass's read of problem-only contacts it did not list is a real run's; a dry
    run reads nothing more and writes nothing (the real run after it still makes the tombstone)."""
    p = contact(hubspot_fake, numemployees=BAD_NUMBER, hs_email_optout="true")
    mapped()
    hubspot_fake.archive_contact(p)
    assert mapped("--full", "--dry-run").code in (0, 1)
    assert state_rows(run, "SELECT hubspot_id FROM problems") == [(int(p),)]
    assert state_rows(run, "SELECT email FROM tombstones") == []
    mapped("--full")
    assert state_rows(run, "SELECT hubspot_id FROM problems") == []


def test_hourly_runs_take_a_deleted_contact_out_of_its_groups_though_a_deleted_refused_one_had_its_address(
        mapped, hubspot_fake, mailerlite_fake):
    """The same without a --full pass: P (data refused) and C (synced, in the group) hold ann; both
    are deleted in HubSpot. The next day's hourly run finds them in the archived listing; nobody live
    holds ann, so C's departure applies on_leave. A person would see ann still in "From HubSpot"
    for good: P's problem row counted as a live holder, and C was forgotten with nothing taken."""
    p = contact(hubspot_fake, numemployees=BAD_NUMBER)
    c = contact(hubspot_fake)
    mapped()
    assert GROUP in groups_of(mailerlite_fake, ANN)
    hubspot_fake.archive_contact(p)
    hubspot_fake.archive_contact(c)
    mapped("--verbose", tunables=a_day_later())  # the archived check is due
    assert GROUP not in groups_of(mailerlite_fake, ANN)


def test_a_list_group_the_new_holder_is_not_in_is_left_when_the_old_holder_is_deleted(
        mapped, hubspot_fake, mailerlite_fake):
    """C (synced, in the webinar list: in its group) and D (the same address, a duplicate, not in the
    list) hold ann. C is deleted: D, live and in scope, holds ann, so C's departure takes nothing and
    D takes the subscriber over. D is not in the webinar list. A person would see ann kept in
    "Webinar" (mailed as an attendee) after the hourly run that syncs D."""
    c = contact(hubspot_fake)
    hubspot_fake.lists[WEBINAR_LIST].append(int(c))
    mapped()
    assert WEBINAR_GROUP in groups_of(mailerlite_fake, ANN)
    contact(hubspot_fake)  # D: a duplicate of C's address
    mapped()
    hubspot_fake.archive_contact(c)
    hubspot_fake.lists[WEBINAR_LIST].remove(int(c))  # HubSpot drops a deleted contact from its lists
    mapped("--full")  # C leaves; D, read as C's duplicate, holds ann
    mapped()  # D, its duplicate owner gone, is read again and synced
    assert mailerlite_fake.subscriber(ANN)["status"] == "active"
    assert GROUP in groups_of(mailerlite_fake, ANN)
    assert WEBINAR_GROUP not in groups_of(mailerlite_fake, ANN)


def email_searches(hubspot_fake) -> int:
    """HubSpot searches for the contacts with one address (departures' "another live contact holds it")."""
    return sum(1 for r in hubspot_fake.requests_to("POST", "/crm/objects/2026-09/contacts/search")
               if any(f.get("propertyName") == "email" for g in (r.body or {}).get("filterGroups", [])
                      for f in g.get("filters", [])))


def searches_for_a_domain_move(sync, hubspot_fake) -> int:
    """30 synced contacts given new addresses between two runs of `sync`: the email searches it cost."""
    ids = seed_contacts(hubspot_fake, 30)
    assert sync().code == 0
    for i, cid in enumerate(ids):
        hubspot_fake.update_contact(cid, {"email": f"person{i}@example.org"})
    before = email_searches(hubspot_fake)
    assert sync().code == 0
    return email_searches(hubspot_fake) - before


def test_contacts_given_new_addresses_cost_no_search_each_with_remove_from_groups(run, hubspot_fake):
    """Cost: 30 synced contacts change address (a domain move); on_leave is the default
    remove_from_groups, nobody opted out. Each old address leaves, and rule (b) now asks HubSpot,
    one search per contact (searches are rate-limited: a bulk change of 50,000 addresses would spend
    hours on them), whether another live contact holds it, though the state already knows every
    contact the run read and none holds it. Before b9b3462 no search was made for these."""
    assert searches_for_a_domain_move(run, hubspot_fake) <= 1


def test_contacts_in_a_group_given_new_addresses_cost_no_search_each(mapped, hubspot_fake, mailerlite_fake):
    """The same with a group every synced subscriber joins: each departure takes that group (nobody
    else holds the old address, which the state knows: every contact read is recorded), yet rule (b)
    asks HubSpot once per contact. Before b9b3462 no search was made for these."""
    assert searches_for_a_domain_move(mapped, hubspot_fake) <= 1


def test_a_refused_contact_changing_address_while_its_old_one_is_a_tombstone_does_not_stop_every_run(
        mapped, hubspot_fake, mailerlite_fake):
    """Found by the model (-m slow, seeds 31-34): C (synced) and P (data refused) hold ann; C is
    deleted, so ann is a tombstone (P's problem holds it: C's departure takes nothing). P is then
    given another address, its data still refused. Recording P's problem moves it to bob, and the
    trigger keeping ann as a tombstone (schema 13) inserts a tombstone ann already has: inside the
    problems upsert SQLite's INSERT OR REPLACE aborts instead. A person would see every run stop
    (exit 3, "the state database ... cannot be used (IntegrityError: UNIQUE constraint failed:
    tombstones.email)"), nothing synced and no opt-out delivered."""
    c = contact(hubspot_fake)
    mapped()  # C synced
    p = contact(hubspot_fake, numemployees=BAD_NUMBER)
    assert mapped().summary["rejected"] == 1  # P refused, holding ann
    hubspot_fake.archive_contact(c)
    mapped("--full")  # C leaves; ann is a tombstone
    hubspot_fake.update_contact(p, {"email": BOB})
    again = mapped()
    assert again.code == 1, again.err  # P still refused (reported), nothing stopped
    contact(hubspot_fake, "cy@example.com")
    assert mapped().summary["created"] == 1
