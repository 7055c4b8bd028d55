"""Stored consent actions (unsubscribes, group removals) are tried, counted and retried without one
failing address or a consent-API outage holding up anyone else."""

from __future__ import annotations

import json

from werkzeug.wrappers import Response

from tests.common import GROUPS
from tests.conftest import seed_contacts
from tests.test_consent import mapping_file, state_rows


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
