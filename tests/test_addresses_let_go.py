"""An address a contact lets go of (HubSpot refuses it, the consent scope was missing) is still
followed by address."""

from __future__ import annotations

from tests.conftest import HS_TOKEN, seed_contacts
from tests.test_consent import state_rows
from tests.test_consent_by_address import a_day_later, without_consent_scope


def test_an_address_left_for_one_hubspot_refuses_is_followed_by_address(run, hubspot_fake, mailerlite_fake):
    """A contact changes its address to one that cannot be sent (rejected): HubSpot no longer holds the
    old address on any record, so the old address is let go as on any address change (read, then kept
    as a tombstone), and its later opt-out by address reaches MailerLite."""
    ids = seed_contacts(hubspot_fake, 3)
    assert run().code == 0
    hubspot_fake.update_contact(ids[0], {"email": "new address@example.com"})
    changed = run()
    assert changed.code == 1 and changed.summary["rejected"] == 1, changed.err
    hubspot_fake.set_address_consent("person0@example.com", unsubscribed_all=True)  # later, by address
    swept = run("--full")  # the consent sweep runs with every --full
    assert swept.code in (0, 1), swept.err
    assert mailerlite_fake.subscriber("person0@example.com")["status"] == "unsubscribed"
    assert mailerlite_fake.subscriber("person1@example.com")["status"] == "active"


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
