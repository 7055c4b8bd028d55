"""Attacks on the consent ledger (issue 28), end to end through main.py against the fakes: paths
nobody named that could leave an opted-out address active, make an inactive one active, take
someone out without evidence, or lose what the ledger knows. Each docstring says whether the attack
found a defect (the test then failed before its fix) or is kept as a guard (it found none)."""

from __future__ import annotations

import pytest

from tests.conftest import seed_contacts
from tests.test_consent import consent_only, mapping_file, state_rows
from tests.test_consent_by_address import a_day_later, status

TYPED = 'create_missing_fields = true\n[fields]\nnumemployees = { field = "employees", type = "number" }\n'


def ledger_row(run, email: str):
    return state_rows(run, "SELECT hubspot_opted_out, sent, mailerlite_status FROM consent_ledger "
                           f"WHERE email='{email}'")


def test_an_address_whose_case_changes_in_hubspot_is_still_never_made_active(run, hubspot_fake, mailerlite_fake):
    """Guard (found nothing): MailerLite held the address unsubscribed (adoption saw it), then deleted
    it; the contact's address is retyped in HubSpot in other case with spaces around it. The ledger is
    keyed by the normalised address, so the hourly run still looks it up and does not create it."""
    mailerlite_fake.add_subscriber("person0@example.com", status="unsubscribed")
    ids = seed_contacts(hubspot_fake, 2)
    assert run().code == 0
    mailerlite_fake.delete_subscriber("person0@example.com")
    hubspot_fake.update_contact(ids[0], {"email": "  Person0@Example.COM ", "city": "Ptuj"})
    again = run()
    assert again.code == 0, again.err
    assert mailerlite_fake.subscriber("person0@example.com") is None
    assert again.summary["not_reactivated"] == 1 and again.summary["created"] == 0


def test_an_inactive_address_whose_contact_was_deleted_is_not_created_for_the_next_contact(run, hubspot_fake,
                                                                                       mailerlite_fake):
    """Guard (found nothing): the ledger row outlives the contact. X is synced, unsubscribes in
    MailerLite (a full run's listing sees it), X is deleted in HubSpot and leaves; MailerLite deletes
    the subscriber; a new contact Y comes with the same address. An hourly run does not create it."""
    ids = seed_contacts(hubspot_fake, 3)
    assert run().code == 0
    mailerlite_fake.subscriber("person0@example.com")["status"] = "unsubscribed"
    assert run("--full").code == 0  # the listing shows it unsubscribed
    hubspot_fake.archive_contact(ids[0])
    assert run("--full").code == 0  # X leaves; its row stays
    assert ledger_row(run, "person0@example.com")[0][2] == "unsubscribed"
    mailerlite_fake.delete_subscriber("person0@example.com")
    hubspot_fake.add_contact({"email": "person0@example.com", "firstname": "Y"})
    again = run()
    assert again.code == 0, again.err
    assert mailerlite_fake.subscriber("person0@example.com") is None
    assert again.summary["not_reactivated"] == 1


def test_a_dry_run_then_the_real_run_delivers_the_optout(run, hubspot_fake, mailerlite_fake):
    """Guard (found nothing): a dry run reads the opt-out (its data refused) and writes nothing to
    the ledger or MailerLite; the real run after it still sends the unsubscribe, once."""
    path = mapping_file(run, TYPED)
    x = hubspot_fake.add_contact({"email": "ann@example.com", "numemployees": "50"})
    assert run("--mapping", path).code == 0
    hubspot_fake.update_contact(x, {"hs_email_optout": "true", "numemployees": "about fifty"})
    dry = run("--mapping", path, "--dry-run")
    assert dry.code in (0, 1) and dry.summary["would_send"] >= 1, dry.err
    assert consent_only(mailerlite_fake, "ann@example.com") == []
    assert status(mailerlite_fake, "ann@example.com") == "active"
    real = run("--mapping", path)
    assert real.code == 1 and real.summary["rejected"] == 1, real.err
    assert status(mailerlite_fake, "ann@example.com") == "unsubscribed"
    assert len(consent_only(mailerlite_fake, "ann@example.com")) == 1


@pytest.mark.parametrize("answer", ["ignored", "omitted"])
def test_an_unsubscribe_answered_without_the_unsubscribed_status(run, hubspot_fake, mailerlite_fake, answer):
    """MailerLite answers the sync's own unsubscribe 200 but the subscriber it shows is still active
    ("ignored"), or it shows no status at all ("omitted"). DEFECT found ("ignored"): the ledger
    recorded the address as unsubscribed whatever the answer said and the action was dropped as taken,
    so the address stayed active in MailerLite with HubSpot holding it opted out, and every later run
    judged the opt-out "already delivered" and sent nothing. Now an answer showing the subscriber
    active is not taken: what MailerLite said is kept in the ledger, the action stays pending and goes
    again next run. An answer without a status ("omitted", a 200 to a status change) is taken as
    MailerLite did it (guard)."""
    path = mapping_file(run, TYPED)
    x = hubspot_fake.add_contact({"email": "ann@example.com", "numemployees": "50"})
    assert run("--mapping", path).code == 0
    mailerlite_fake.status_answers["ann@example.com"] = answer
    hubspot_fake.update_contact(x, {"hs_email_optout": "true", "numemployees": "about fifty"})
    first = run("--mapping", path)
    assert first.code == 1, first.err
    assert len(consent_only(mailerlite_fake, "ann@example.com")) == 1
    if answer == "omitted":
        assert status(mailerlite_fake, "ann@example.com") == "unsubscribed"
        assert first.summary["consent_pending"] == 0
        assert ledger_row(run, "ann@example.com") == [(1, "unsubscribe", "unsubscribed")]
        return
    assert status(mailerlite_fake, "ann@example.com") == "active"
    assert first.summary["consent_pending"] == 1, first.summary
    assert ledger_row(run, "ann@example.com")[0][2] != "unsubscribed"  # never "delivered" on that answer
    del mailerlite_fake.status_answers["ann@example.com"]
    second = run("--mapping", path)
    assert status(mailerlite_fake, "ann@example.com") == "unsubscribed", second.err
    assert second.summary["consent_pending"] == 0
    assert ledger_row(run, "ann@example.com") == [(1, "unsubscribe", "unsubscribed")]
    # Delivered now: a run reading the record again as it was sends nothing more...
    run("--mapping", path, "--full")
    assert len(consent_only(mailerlite_fake, "ann@example.com")) == 2
    # ...while a later edit of the still opted-out record sends it once more: HubSpot's record cannot
    # tell that edit from a new opt-out made after a MailerLite form sign-up, and no mail is the safe side.
    hubspot_fake.update_contact(x, {"numemployees": "around fifty"})
    run("--mapping", path)
    assert len(consent_only(mailerlite_fake, "ann@example.com")) == 3
    assert status(mailerlite_fake, "ann@example.com") == "unsubscribed"


def test_an_optout_upsert_answered_still_active_is_not_left_there(run, hubspot_fake, mailerlite_fake):
    """The same through the full upsert of an opted-out contact (its data valid, sent with status
    "unsubscribed"): MailerLite answers 200 with the subscriber still active. The answer is no
    delivery: the unsubscribe on its own is stored and tried until MailerLite shows it taken."""
    ids = seed_contacts(hubspot_fake, 2)
    assert run().code == 0
    mailerlite_fake.status_answers["person0@example.com"] = "ignored"
    hubspot_fake.update_contact(ids[0], {"hs_email_optout": "true"})
    first = run()
    assert status(mailerlite_fake, "person0@example.com") == "active"
    assert first.code == 1 and first.summary["consent_pending"] == 1, (first.summary, first.err)
    del mailerlite_fake.status_answers["person0@example.com"]
    second = run()  # the contact unchanged in HubSpot: only the stored unsubscribe goes
    assert second.code == 0, second.err
    assert status(mailerlite_fake, "person0@example.com") == "unsubscribed"
    assert second.summary["consent_pending"] == 0
    assert ledger_row(run, "person0@example.com") == [(1, "unsubscribe", "unsubscribed")]


def test_the_sweep_meeting_an_outage_mid_way_reads_the_rest_next_run(run, hubspot_fake, mailerlite_fake):
    """Guard (found nothing): 150 tombstones, swept a hundred a request. The first batch is read
    (its opt-out unsubscribed, the ledger keeps it), then HubSpot answers 503 for good: the run goes on
    without claiming anything of the rest, the sweep is due again next run, which unsubscribes the
    opt-out of the second batch. Nobody is unsubscribed who did not opt out."""
    ids = seed_contacts(hubspot_fake, 150)
    assert run().code == 0
    for cid in ids:
        hubspot_fake.archive_contact(cid)
    assert run("--full", "--allow-mass-leave").code == 0  # all leave, kept as tombstones
    assert state_rows(run, "SELECT COUNT(*) FROM tombstones") == [(150,)]
    hubspot_fake.set_address_consent("person0@example.com", unsubscribed_all=True)  # first batch
    hubspot_fake.set_address_consent("person99@example.com", unsubscribed_all=True)  # second batch
    hubspot_fake.consent_refusals.extend(["", *["503"] * 40])
    first = run(tunables=a_day_later())
    assert first.summary["consent_checked"] == 100, (first.summary, first.err)
    assert status(mailerlite_fake, "person0@example.com") == "unsubscribed"
    assert status(mailerlite_fake, "person99@example.com") == "active"
    hubspot_fake.consent_refusals.clear()
    second = run(tunables=a_day_later(1.02))
    assert second.code == 0, second.err
    assert status(mailerlite_fake, "person99@example.com") == "unsubscribed"
    assert sorted(e for e, sid in mailerlite_fake.by_email.items()
                  if mailerlite_fake.subscribers[sid]["status"] != "active") == [
        "person0@example.com", "person99@example.com"]
    assert ledger_row(run, "person99@example.com") == [(1, "unsubscribe", "unsubscribed")]
