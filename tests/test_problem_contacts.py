"""Contacts known only by a problem (a duplicate, a failure) are read again when that can change,
and forgotten when they leave the sync."""

from __future__ import annotations

import pytest

from tests.conftest import seed_contacts
from tests.test_consent import groups_of, mapping_file, state_rows


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
