"""Issue 22, items 4-6: a destructive action needs positive evidence about the record, one
failing address never blocks the run, and customised opt-out properties must exist.

Every case runs main.py over HTTP against the fake HubSpot and MailerLite servers."""

from __future__ import annotations

import pytest

from tests.conftest import seed_contacts
from tests.test_consent import _DropPagingOnce, mapping_file, state_rows

# -- item 6: customised opt-out properties must exist ---------------------------------------------------

TYPO = '[consent]\noptout_properties = ["hs_email_optout", "hs_email_optout_1234567"]\n'


def test_customised_optouts_without_the_schema_scope_stop_before_any_write(run, hubspot_fake, mailerlite_fake):
    hubspot_fake.add_optout_property("12345678")  # the mapping names ..._1234567: a typo
    seed_contacts(hubspot_fake, 2)
    hubspot_fake.tokens["hs-test-token"] = {"crm.objects.contacts.read"}
    result = run("--mapping", mapping_file(run, TYPO))
    assert result.code == 2, result.err
    assert "crm.schemas.contacts.read" in result.err and "optout_properties" in result.err
    assert "Traceback" not in result.err
    assert not mailerlite_fake.subscribers  # nothing written


def test_customised_optouts_with_the_schema_scope_name_the_missing_property(run, hubspot_fake, mailerlite_fake):
    hubspot_fake.add_optout_property("12345678")
    seed_contacts(hubspot_fake, 2)
    result = run("--mapping", mapping_file(run, TYPO))
    assert result.code == 2 and "hs_email_optout_1234567" in result.err, result.err
    assert not mailerlite_fake.subscribers


def test_the_default_optout_list_needs_no_schema_scope(run, hubspot_fake, mailerlite_fake):
    seed_contacts(hubspot_fake, 2)
    hubspot_fake.tokens["hs-test-token"] = {"crm.objects.contacts.read"}
    result = run()
    assert result.code == 0 and result.summary["created"] == 2, result.err


# -- item 4: never act on absence ------------------------------------------------------------------------

LIST_SCOPED = ('on_leave = "unsubscribe"\nmass_leave_percent = 50\n[groups]\nall = ["Synced"]\n'
               '[scope]\nlists = ["55"]\n')


def _list_members(hubspot_fake, n):
    ids = seed_contacts(hubspot_fake, n)
    hubspot_fake.lists["55"] = [int(i) for i in ids]
    return ids


def _statuses(mailerlite_fake):
    return sorted({s["status"] for s in mailerlite_fake.subscribers.values()})


def test_a_membership_listing_short_of_the_list_size_is_an_incomplete_read(run, hubspot_fake, mailerlite_fake):
    _list_members(hubspot_fake, 300)
    path = mapping_file(run, LIST_SCOPED)
    assert run("--mapping", path).code == 0
    hubspot_fake.short_membership_reads["55"] = 1000  # every read stops after its first page (250 of 300)
    result = run("--mapping", path)
    assert result.code == 3 and "incomplete read" in result.err, result.err
    assert result.summary["left_scope"] == 0 and _statuses(mailerlite_fake) == ["active"]
    assert state_rows(run, "SELECT COUNT(*) FROM contacts") == [(300,)]
    assert state_rows(run, "SELECT COUNT(*) FROM list_members") == [(300,)]  # the short read was not kept
    hubspot_fake.short_membership_reads["55"] = 0
    after = run("--mapping", path)
    assert (after.code, after.summary["left_scope"]) == (0, 0), after.err


def test_a_short_membership_listing_is_read_again(run, hubspot_fake, mailerlite_fake):
    _list_members(hubspot_fake, 300)
    path = mapping_file(run, LIST_SCOPED)
    assert run("--mapping", path).code == 0
    hubspot_fake.short_membership_reads["55"] = 1  # only the first read is cut short
    result = run("--mapping", path)
    assert (result.code, result.summary["left_scope"]) == (0, 0), result.err
    assert _statuses(mailerlite_fake) == ["active"]


@pytest.mark.parametrize("unknown", ["207", "empty"])
def test_leaving_a_list_needs_the_records_own_memberships(run, hubspot_fake, mailerlite_fake, unknown):
    """While HubSpot processes a list its size lags: a short listing is not caught by the size, so
    each synced contact it misses is asked about by id; only the one that really left leaves."""
    hubspot_fake.unknown_record_memberships = unknown
    ids = _list_members(hubspot_fake, 300)
    path = mapping_file(run, LIST_SCOPED)
    assert run("--mapping", path).code == 0
    hubspot_fake.lists["55"].remove(int(ids[0]))  # really left (listed first: inside the short page's reach)
    hubspot_fake.processing_lists["55"] = 250
    hubspot_fake.short_membership_reads["55"] = 1000
    for full in ((), ("--full",)):
        result = run("--mapping", path, *full)
        assert result.code == 0, result.err
        assert mailerlite_fake.subscriber("person0@example.com")["status"] == "unsubscribed"
        active = [s for s in mailerlite_fake.subscribers.values() if s["status"] == "active"]
        assert len(active) == 299
    assert state_rows(run, "SELECT COUNT(*) FROM contacts") == [(299,)]


def test_a_full_listing_that_ends_early_makes_nobody_leave(run, hubspot_fake, mailerlite_fake):
    ids = seed_contacts(hubspot_fake, 300)
    path = mapping_file(run, 'on_leave = "unsubscribe"\nmass_leave_percent = 90\n[groups]\nall = ["Synced"]\n')
    assert run("--mapping", path).code == 0
    hubspot_fake.archive_contact(ids[-1])  # really gone: the batch read by id does not find it
    glitch = _DropPagingOnce(hubspot_fake)
    hubspot_fake.faults.only_paths = ("/crm/",)
    hubspot_fake.faults.script.extend([glitch] * 400)
    result = run("--mapping", path, "--full")
    assert glitch.done and result.code == 0, result.err
    assert result.summary["left_scope"] == 1
    assert mailerlite_fake.subscriber("person299@example.com")["status"] == "unsubscribed"
    assert len([s for s in mailerlite_fake.subscribers.values() if s["status"] == "active"]) == 299
    assert state_rows(run, "SELECT COUNT(*) FROM contacts") == [(299,)]
