"""Hostile contact data end to end: whatever HubSpot holds, a valid subscriber, a skip, or a
reported rejection; never a crash, never a silent drop."""

from __future__ import annotations

import csv
import io

from tests.conftest import seed_contacts


def test_hostile_values_arrive_clean(run, hubspot_fake, mailerlite_fake):
    cases = {
        "rtl@example.com": {"firstname": "مرحبا", "lastname": "שלום"},
        "nul@example.com": {"firstname": "Ze\x00ro\x07", "city": "\x00"},
        "huge@example.com": {"company": "A" * 1_000_000},
        "first.last+newsletter@example.com": {"firstname": "Plus"},
        "unicode@exämple.de": {"firstname": "IDN"},
        "emoji@example.com": {"firstname": "🎉 Party", "lastname": "Zoe\u0308"},  # decomposed umlaut
        "  SHOUTING@EXAMPLE.COM  ": {"firstname": "Loud"},
    }
    for email, props in cases.items():
        hubspot_fake.add_contact({"email": email, **props}, modified_ms=1)
    result = run()
    assert result.code == 0, result.err
    assert mailerlite_fake.subscriber("rtl@example.com")["fields"]["name"] == "مرحبا"
    nul = mailerlite_fake.subscriber("nul@example.com")["fields"]
    assert nul["name"] == "Zero" and nul["city"] is None
    assert len(mailerlite_fake.subscriber("huge@example.com")["fields"]["company"]) == 1024
    assert "truncated" in result.err or result.err == ""  # a warning, shown when logging warnings
    assert mailerlite_fake.subscriber("first.last+newsletter@example.com") is not None
    assert mailerlite_fake.subscriber("unicode@exämple.de")["fields"]["name"] == "IDN"
    assert mailerlite_fake.subscriber("emoji@example.com")["fields"]["last_name"] == "Zoë"
    assert mailerlite_fake.subscriber("shouting@example.com") is not None
    assert run("--full").summary["unchanged"] == len(cases)  # cleaned values are stable


def test_one_address_in_two_contacts_first_synced_wins_other_reported(run, hubspot_fake, mailerlite_fake):
    seed_contacts(hubspot_fake, 3)
    first = hubspot_fake.add_contact({"email": "shared@example.com", "firstname": "First"}, modified_ms=1)
    second = hubspot_fake.add_contact({"email": "Shared@Example.com", "firstname": "Second"}, modified_ms=2)
    result = run()
    assert result.code == 1 and result.summary["rejected"] == 1 and result.summary["created"] == 4
    assert mailerlite_fake.subscriber("shared@example.com")["fields"]["name"] == "First"
    rows = list(csv.DictReader(io.StringIO(run("--rejected").out)))
    assert [(r["hubspot_id"], r["reason"]) for r in rows] == [
        (second, f"email shared@example.com is already synced from HubSpot contact {first}")]
    # Changing the second contact does not let it take the address over.
    hubspot_fake.update_contact(second, {"firstname": "Second again"})
    again = run()
    assert (again.summary["rejected"], again.summary["unchanged"]) == (0, 1)  # known, not reported twice
    assert mailerlite_fake.subscriber("shared@example.com")["fields"]["name"] == "First"
    assert len(list(csv.DictReader(io.StringIO(run("--rejected").out)))) == 1
    # Once the first one is gone from HubSpot, the second one gets the address.
    hubspot_fake.archive_contact(first)
    run("--full")
    freed = run("--full")
    assert freed.code == 0 and freed.summary["updated"] == 1
    assert mailerlite_fake.subscriber("shared@example.com")["fields"]["name"] == "Second again"
