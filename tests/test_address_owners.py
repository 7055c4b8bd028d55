"""One owner per address: take-overs, swaps, duplicates and old owners moving on never cost the
holder its groups or its subscription."""

from __future__ import annotations

import sqlite3
from dataclasses import replace

import pytest

from tests.common import GROUPS, matching_subscribers
from tests.conftest import FAST, seed_contacts
from tests.test_consent import groups_of, mapping_file


def test_adoption_keeps_one_owner_per_address(run, hubspot_fake, mailerlite_fake):
    """Two HubSpot contacts with one address: a first run that sends reports the second as a duplicate
    (--rejected); a first run that adopts must do the same, never record both as owning the address
    (they would then fight over it, and a departure of one would be blocked by the other)."""
    seed_contacts(hubspot_fake, 3)
    seed_contacts(hubspot_fake, 1, start=1)  # a second contact with person1's address
    matching_subscribers(mailerlite_fake, 3, unsubscribed=-1)
    first = run()
    s = first.summary
    assert (s["adopted"], s["rejected"]) == (3, 1), first.err
    assert first.code == 1




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


def test_an_old_owner_that_opts_out_as_it_moves_on_never_unsubscribes_the_new_holder(run, hubspot_fake,
                                                                                   mailerlite_fake):
    # The old owner moves on and opts out with its new address (the old one is not opted out).
    path = _address_taken_by_a_contact_a_batch_before_its_owner_moves_on(run, hubspot_fake, {"hs_email_optout": "true"})
    moved = run("--mapping", path)
    assert moved.code == 0, moved.err
    assert mailerlite_fake.subscriber("person69@example.com")["status"] == "active"
    assert groups_of(mailerlite_fake, "person69@example.com") == ["Stage: lead", "Synced"]
    assert mailerlite_fake.subscriber("new69@example.com")["status"] == "unsubscribed"


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
