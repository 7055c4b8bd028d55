"""Review of the consent refactor (issue 22: sync/consent/ owns consent by address) and attacks on
consent by address, through main.py against the fakes. A test whose docstring names a defect failed
before its fix; the others are attacks that found none, kept as guards."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from werkzeug.wrappers import Response

from tests.conftest import FAST, HS_TOKEN, seed_contacts
from tests.test_consent import groups_of, mapping_file, state_rows
from tests.test_consent_by_address import a_day_later, without_consent_scope

GROUPS = '[groups]\nall = ["Synced"]\nproperty = { lifecyclestage = "Stage: {value}" }\n'


def _refuse_the_key_on_group_removals(ml) -> None:
    """Every group removal answered 401 (the key revoked mid-run): the run must stop there."""
    ml.faults.only_paths = ("/api/subscribers/",)
    refuse = [lambda request: Response(json.dumps({"message": "Unauthenticated."}), status=401,
                                       content_type="application/json") if request.method == "DELETE" else None]
    ml.faults.script.extend(refuse * 20)


def test_a_repair_is_counted_even_when_the_run_stops_at_the_group_removal_it_implies(run, hubspot_fake,
                                                                                  mailerlite_fake):
    """Before the refactor "repaired" was counted as soon as MailerLite's answer was recorded; after
    it, only once the consent actions that answer implies had been tried: a run stopped there (a key
    refused, SIGTERM, the time limit) reported the repair it had written as not made."""
    seed_contacts(hubspot_fake, 3, lifecyclestage="lead")
    path = mapping_file(run, GROUPS)
    assert run("--mapping", path).summary["created"] == 3
    customer = mailerlite_fake.add_group("Stage: customer")["id"]  # managed by the mapping's pattern
    mailerlite_fake.subscriber("person1@example.com")["groups"].append(customer)  # drift made in MailerLite
    _refuse_the_key_on_group_removals(mailerlite_fake)
    stopped = run("--mapping", path, "--full")
    assert stopped.code == 2, stopped.err
    assert stopped.summary["updated"] == 1  # the repair was written and recorded...
    assert stopped.summary["repaired"] == 1  # ...and is counted as one


# -- attacks ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("page", [100, 1])
@pytest.mark.parametrize("swap", [True, False])
def test_an_address_taken_by_another_contact_keeps_its_groups(run, hubspot_fake, mailerlite_fake, page, swap):
    ids = seed_contacts(hubspot_fake, 4, lifecyclestage="lead")
    path = mapping_file(run, GROUPS)
    assert run("--mapping", path).code == 0
    a, b = ids[0], ids[3]
    hubspot_fake.update_contact(a, {"email": "person3@example.com" if swap else "new0@example.com"})
    hubspot_fake.update_contact(b, {"email": "person0@example.com"})
    moved = run("--mapping", path, tunables=replace(FAST, state_page=page))
    assert moved.code == 0, moved.err
    for email in ("person0@example.com", "person3@example.com") if swap else ("person0@example.com",):
        assert groups_of(mailerlite_fake, email) == ["Stage: lead", "Synced"], email


@pytest.mark.parametrize("how", ["leaves the list", "changes address"])
def test_a_duplicate_is_synced_once_the_owner_lets_the_address_go(run, hubspot_fake, mailerlite_fake, how):
    """A second contact with an address another one syncs is reported as a duplicate "until the first
    one lets it go"; when the owner then left (its groups removed from the address) the duplicate,
    unchanged itself, was never read again: an in-scope person kept a subscriber without its groups
    and with the owner's data until someone edited the contact or ran --full."""
    ids = seed_contacts(hubspot_fake, 3)
    dup = hubspot_fake.add_contact({"email": "person0@example.com", "firstname": "Dup"}, modified_ms=1)
    hubspot_fake.lists["55"] = [int(i) for i in ids] + [int(dup)]
    path = mapping_file(run, '[groups]\nall = ["Synced"]\n[scope]\nlists = ["55"]\n')
    first = run("--mapping", path)
    assert first.code == 1 and first.summary["rejected"] == 1
    if how == "leaves the list":
        hubspot_fake.lists["55"] = [int(i) for i in ids[1:]] + [int(dup)]
    else:
        hubspot_fake.update_contact(ids[0], {"email": "moved0@example.com"})
    let_go = run("--mapping", path)
    assert let_go.code == 0 and let_go.summary["left_scope"] == 1, let_go.err
    after = run("--mapping", path)
    assert after.code == 0 and after.summary["rejected"] == 0, after.err
    assert groups_of(mailerlite_fake, "person0@example.com") == ["Synced"]
    assert mailerlite_fake.subscriber("person0@example.com")["fields"]["name"] == "Dup"
    assert mailerlite_fake.subscriber("person0@example.com")["status"] == "active"
    mark = len(hubspot_fake.log)
    quiet = run("--mapping", path)  # now synced: read again only when it changes
    assert quiet.code == 0 and quiet.summary["read"] == quiet.summary["unchanged"]
    assert not [r for r in hubspot_fake.log[mark:] if r.path.endswith("/contacts/batch/read")]


def test_a_dry_run_plan_lists_the_stored_actions_the_real_run_tries_first(run, hubspot_fake, mailerlite_fake):
    """An unsubscribe and a group removal MailerLite did not take are stored; the next real run tries
    them before anything else. A dry run's plan left them out, while saying "consent pending"."""
    ids = seed_contacts(hubspot_fake, 3, lifecyclestage="lead")
    path = mapping_file(run, GROUPS)
    assert run("--mapping", path).code == 0
    hubspot_fake.update_contact(ids[0], {"hs_email_optout": "true"})
    hubspot_fake.archive_contact(ids[1])
    mailerlite_fake.failing_emails["person0@example.com"] = 1000
    mailerlite_fake.faults.only_paths = ("/api/subscribers/",)
    mailerlite_fake.faults.script.extend(["503"] * 40)  # the group removal's DELETEs
    failed = run("--mapping", path, "--full")
    assert failed.code == 1 and failed.summary["consent_pending"] == 2, failed.err
    mailerlite_fake.failing_emails.clear()
    mailerlite_fake.faults.script.clear()
    dry = run("--mapping", path, "--dry-run", "--verbose")
    planned = [line.split("dry run: ")[1] for line in dry.err.splitlines() if "dry run: would" in line]
    real = run("--mapping", path)
    assert real.code == 0 and real.summary["consent_pending"] == 0, real.err
    assert mailerlite_fake.subscriber("person0@example.com")["status"] == "unsubscribed"
    assert groups_of(mailerlite_fake, "person1@example.com") == []
    assert any(p.startswith("would unsubscribe person0@example.com") for p in planned), planned
    assert any(p.startswith("would leave groups person1@example.com") for p in planned), planned


def test_addresses_answered_503_for_ever_do_not_hold_back_the_actions_stored_behind_them(run, hubspot_fake,
                                                                                         mailerlite_fake):
    """Three unsubscribes MailerLite answers 503 for ever pause the rest of that run (an outage, as far
    as it can tell): the others are stored untried. The next run tried the stored actions in id order,
    so the same three failed first, paused it again, and the others waited behind them, run after run
    while those three were due."""
    ids = seed_contacts(hubspot_fake, 10)
    hubspot_fake.lists["55"] = [int(i) for i in ids]
    path = mapping_file(run, 'on_leave = "unsubscribe"\n[scope]\nlists = ["55"]\n')
    assert run("--mapping", path).code == 0
    stuck = {f"person{i}@example.com" for i in range(3)}
    mailerlite_fake.failing_emails.update({e: 10 ** 6 for e in stuck})  # 503 for ever
    hubspot_fake.lists["55"] = [int(i) for i in ids[5:]]  # five leave: the three stuck ones come first
    leaving = run("--mapping", path)
    assert leaving.code == 1 and leaving.summary["consent_pending"] == 5, leaving.err
    assert [mailerlite_fake.subscriber(f"person{i}@example.com")["status"] for i in (3, 4)] == ["active"] * 2
    retried = run("--mapping", path)  # the three stuck ones are due again (their first retry)
    assert retried.code == 1 and retried.summary["consent_pending"] == 3, retried.err
    assert [mailerlite_fake.subscriber(f"person{i}@example.com")["status"] for i in (3, 4)] == ["unsubscribed"] * 2
    assert all(mailerlite_fake.subscriber(e)["status"] == "active" for e in stuck)


def test_contacts_read_for_a_list_change_never_move_the_bookmark_back(run, hubspot_fake, mailerlite_fake):
    """Found while attacking: contacts read by id (a list joined or left, a failed one retried) carry
    their own, older lastmodifieddate; an incremental run that read only those set the bookmark back
    to it, so the next hourly run read again every contact modified since (the whole database, for a
    contact last edited years ago)."""
    ids = seed_contacts(hubspot_fake, 10, age_ms=400 * 24 * 3_600_000)  # last edited over a year ago
    hubspot_fake.lists["55"] = [int(i) for i in ids]
    path = mapping_file(run, '[scope]\nlists = ["55"]\n')
    assert run("--mapping", path).code == 0
    hubspot_fake.lists["55"] = [int(i) for i in ids[1:]]  # a membership change: the contact itself is old
    left = run("--mapping", path)
    assert left.code == 0 and left.summary["left_scope"] == 1, left.err
    idle = run("--mapping", path)
    assert idle.code == 0 and idle.summary["read"] == 0, idle.err


def _address_taken_by_a_contact_a_batch_before_its_owner_moves_on(run, hubspot_fake, moving_on):
    """70 synced contacts; the first takes the last one's address, a batch or more of other changes
    come in between, then the last one moves on to new69@example.com (with `moving_on` too)."""
    ids = seed_contacts(hubspot_fake, 70, lifecyclestage="lead")
    path = mapping_file(run, GROUPS)
    assert run("--mapping", path).code == 0
    hubspot_fake.update_contact(ids[0], {"email": "person69@example.com"})  # takes the address of...
    for n, cid in enumerate(ids[1:69]):  # a batch or more of other changes in between
        hubspot_fake.update_contact(cid, {"firstname": f"Edit{n}"})
    hubspot_fake.update_contact(ids[69], {"email": "new69@example.com", **moving_on})  # ...the last one
    return path


def test_an_address_taken_over_keeps_its_groups_when_its_old_owner_comes_a_batch_later(run, hubspot_fake,
                                                                                     mailerlite_fake):
    path = _address_taken_by_a_contact_a_batch_before_its_owner_moves_on(run, hubspot_fake, {})
    moved = run("--mapping", path)
    assert moved.code == 0 and moved.summary["rejected"] == 0, moved.err
    assert groups_of(mailerlite_fake, "person69@example.com") == ["Stage: lead", "Synced"]
    assert groups_of(mailerlite_fake, "new69@example.com") == ["Stage: lead", "Synced"]


def test_an_outage_of_hubspots_consent_api_stops_nobody_elses_optout(run, hubspot_fake, mailerlite_fake):
    """HubSpot's Communication Preferences API failing past the retries (its other APIs fine) stopped
    every run at the first address let go of, before the page's contacts were written: another
    contact's opt-out waited as long as the outage lasted. Now the run goes on with the records'
    opt-outs, keeps the address as a tombstone and sweeps it on the next run."""
    ids = seed_contacts(hubspot_fake, 4)
    assert run().code == 0
    hubspot_fake.update_contact(ids[0], {"email": "renamed@example.com"})  # its old address is read by address
    hubspot_fake.update_contact(ids[2], {"hs_email_optout": "true"})
    hubspot_fake.faults.only_paths = ("/communication-preferences/",)
    hubspot_fake.faults.script.extend(["503"] * 200)
    outage = run()
    assert outage.code == 0, outage.err
    assert "HubSpot kept failing on reading consent by address" in outage.err
    assert mailerlite_fake.subscriber("person2@example.com")["status"] == "unsubscribed"
    assert mailerlite_fake.subscriber("renamed@example.com")["status"] == "active"
    hubspot_fake.faults.script.clear()
    hubspot_fake.set_address_consent("person0@example.com", unsubscribed_all=True)  # the old address opted out
    after = run()  # an hourly run: the sweep is due again at once
    assert after.code == 0 and after.summary["consent_checked"] >= 1, after.err
    assert mailerlite_fake.subscriber("person0@example.com")["status"] == "unsubscribed"
    assert "HubSpot kept failing" not in after.err


def test_the_sweep_goes_on_past_addresses_mailerlite_refuses_or_keeps_failing(run, hubspot_fake, mailerlite_fake):
    """Tombstones opted out later: one address MailerLite now refuses (422), one it answers 503 for
    ever. The others are unsubscribed in the same sweep; the two stay pending (exit 1), keep their
    tombstones, and go once MailerLite takes them."""
    ids = seed_contacts(hubspot_fake, 6)
    hubspot_fake.update_contact(ids[0], {"email": "person0@refusing.example"})
    assert run().code == 0
    for cid in ids[:5]:
        hubspot_fake.archive_contact(cid)
    assert run("--full").summary["left_scope"] == 5
    gone = ["person0@refusing.example"] + [f"person{i}@example.com" for i in range(1, 5)]
    for email in gone:
        hubspot_fake.set_address_consent(email, unsubscribed_all=True)
    mailerlite_fake.undeliverable_domains.add("refusing.example")
    mailerlite_fake.failing_emails["person1@example.com"] = 10 ** 6
    swept = run("--full")
    assert swept.code == 1 and swept.summary["consent_pending"] == 2, swept.err
    assert [mailerlite_fake.subscriber(e)["status"] for e in gone] == ["active"] * 2 + ["unsubscribed"] * 3
    tombstones = [e for (e,) in state_rows(run, "SELECT email FROM tombstones ORDER BY email")]
    assert tombstones == ["person0@refusing.example", "person1@example.com"]
    mailerlite_fake.undeliverable_domains.clear()
    mailerlite_fake.failing_emails.clear()
    done = run()  # the next run retries them first
    assert done.code == 0 and done.summary["consent_pending"] == 0, done.err
    assert all(mailerlite_fake.subscriber(e)["status"] == "unsubscribed" for e in gone)


def test_a_duplicate_that_leaves_the_sync_with_its_owner_is_not_read_every_run(run, hubspot_fake, mailerlite_fake):
    ids = seed_contacts(hubspot_fake, 3)
    dup = hubspot_fake.add_contact({"email": "person0@example.com", "firstname": "Dup"}, modified_ms=1)
    hubspot_fake.lists["55"] = [int(i) for i in ids] + [int(dup)]
    path = mapping_file(run, '[scope]\nlists = ["55"]\n')
    assert run("--mapping", path).summary["rejected"] == 1
    hubspot_fake.lists["55"] = [int(i) for i in ids[1:]]  # both leave
    assert run("--mapping", path).summary["left_scope"] == 1
    run("--mapping", path)
    quiet = run("--mapping", path)
    assert quiet.code == 0 and quiet.summary["read"] == 0, quiet.summary
    assert state_rows(run, "SELECT hubspot_id FROM problems") == []


def test_a_failed_contact_that_leaves_the_sync_is_not_retried_every_run(run, hubspot_fake, mailerlite_fake):
    ids = seed_contacts(hubspot_fake, 3)
    hubspot_fake.lists["55"] = [int(i) for i in ids]
    path = mapping_file(run, '[scope]\nlists = ["55"]\n')
    mailerlite_fake.failing_emails["person0@example.com"] = 10 ** 6
    assert run("--mapping", path).summary["failed"] == 1
    hubspot_fake.lists["55"] = [int(i) for i in ids[1:]]  # it leaves the list before MailerLite took it
    run("--mapping", path)
    quiet = run("--mapping", path)
    assert quiet.code == 0 and quiet.summary["read"] == 0, quiet.summary
    assert mailerlite_fake.subscriber("person0@example.com") is None  # never created, nothing to leave


def test_addresses_let_go_while_the_consent_scope_was_missing_are_followed_once_it_is_added(run, hubspot_fake,
                                                                                            mailerlite_fake):
    ids = seed_contacts(hubspot_fake, 3)
    assert run().code == 0
    scopes = set(hubspot_fake.tokens[HS_TOKEN])
    without_consent_scope(hubspot_fake)
    hubspot_fake.set_address_consent("person0@example.com", unsubscribed_all=True)
    hubspot_fake.update_contact(ids[0], {"email": "renamed@example.com", "hs_email_optout": "false"})
    blind = run()  # the old address's opt-out cannot be read: it is kept as a tombstone
    assert blind.code == 0 and mailerlite_fake.subscriber("person0@example.com")["status"] == "active", blind.err
    assert state_rows(run, "SELECT email FROM tombstones") == [("person0@example.com",)]
    hubspot_fake.tokens[HS_TOKEN] = scopes  # the scope is added
    swept = run(tunables=a_day_later())
    assert swept.code == 0 and swept.summary["consent_checked"] == 1, swept.err
    assert mailerlite_fake.subscriber("person0@example.com")["status"] == "unsubscribed"
    assert mailerlite_fake.subscriber("renamed@example.com")["status"] == "active"


def test_an_old_owner_that_opts_out_as_it_moves_on_never_unsubscribes_the_new_holder(run, hubspot_fake,
                                                                                   mailerlite_fake):
    # The old owner moves on and opts out with its new address (the old one is not opted out).
    path = _address_taken_by_a_contact_a_batch_before_its_owner_moves_on(run, hubspot_fake, {"hs_email_optout": "true"})
    moved = run("--mapping", path)
    assert moved.code == 0, moved.err
    assert mailerlite_fake.subscriber("person69@example.com")["status"] == "active"
    assert groups_of(mailerlite_fake, "person69@example.com") == ["Stage: lead", "Synced"]
    assert mailerlite_fake.subscriber("new69@example.com")["status"] == "unsubscribed"
