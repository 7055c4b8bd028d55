"""A stored departure is decided from what an earlier run read. Tried again at the start of the next
run, before anything is read, it acted on stale evidence: a contact back in the list in that very run
was left (groups taken away, or with on_leave = "unsubscribe" unsubscribed for good) and then created
again. Stored departures are tried after the pass, once the run has read who is back."""

from __future__ import annotations

import pytest

from tests.conftest import seed_contacts
from tests.test_consent import groups_of, mapping_file, state_rows
from tests.test_consent_action_merges import LISTED, leaves_the_list_while_mailerlite_fails


@pytest.mark.parametrize("on_leave", ["remove_from_groups", "unsubscribe"])
def test_a_departure_due_again_is_void_when_its_contact_is_back_in_that_run(run, hubspot_fake, mailerlite_fake,
                                                                            on_leave):
    ids, path = leaves_the_list_while_mailerlite_fails(run, hubspot_fake, mailerlite_fake, on_leave)  # failed once
    mailerlite_fake.faults.script.clear()
    mailerlite_fake.failing_emails.clear()
    hubspot_fake.lists["55"] = [int(i) for i in ids]  # back in the list before that run
    mark = len(mailerlite_fake.log)
    back = run("--mapping", path)
    assert back.code == 0 and back.summary["consent_pending"] == 0, back.err
    assert back.summary["unsubscribed"] == 0 and back.summary["created"] == 0, back.summary
    assert not [r for r in mailerlite_fake.log[mark:] if r.method == "DELETE"]
    assert groups_of(mailerlite_fake, "person0@example.com") == ["Stage: lead", "Synced"]
    assert mailerlite_fake.subscriber("person0@example.com")["status"] == "active"
    assert state_rows(run, "SELECT COUNT(*) FROM contacts WHERE hubspot_id = 1001") == [(1,)]


def test_a_departure_due_again_is_applied_after_the_pass_when_its_contact_stays_out(run, hubspot_fake,
                                                                                    mailerlite_fake):
    """The other side: a contact still out of the list leaves in that run, as before (after the pass)."""
    ids = seed_contacts(hubspot_fake, 20, lifecyclestage="lead")
    hubspot_fake.lists["55"] = [int(i) for i in ids]
    path = mapping_file(run, 'on_leave = "unsubscribe"\n' + LISTED)
    assert run("--mapping", path).code == 0
    mailerlite_fake.failing_emails["person0@example.com"] = 10 ** 6
    hubspot_fake.lists["55"] = [int(i) for i in ids[1:]]
    assert run("--mapping", path).code == 1
    mailerlite_fake.failing_emails.clear()
    again = run("--mapping", path)
    assert again.code == 0 and again.summary["unsubscribed"] == 1 and again.summary["consent_pending"] == 0, again.err
    assert mailerlite_fake.subscriber("person0@example.com")["status"] == "unsubscribed"
    assert state_rows(run, "SELECT COUNT(*) FROM contacts WHERE hubspot_id = 1001") == [(0,)]
