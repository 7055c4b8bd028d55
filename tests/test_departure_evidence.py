"""Issue 22, items 4-6: a destructive action needs positive evidence about the record, one
failing address never blocks the run, and customised opt-out properties must exist.

Every case runs main.py over HTTP against the fake HubSpot and MailerLite servers."""

from __future__ import annotations

from tests.conftest import seed_contacts
from tests.test_consent import mapping_file, state_rows  # noqa: F401

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
