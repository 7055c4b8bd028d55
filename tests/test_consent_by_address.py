"""Consent follows the ADDRESS (issue 22, items 1, 2, 3 and 7), end to end through main.py against
the fakes: HubSpot keeps an opt-out with the email address, so an address the sync wrote to
MailerLite is read by address before it is let go (deleted, merged away, changed, out of scope),
and the consent sweep follows the addresses it let go of. Plus the answer-matching table."""

from __future__ import annotations

import json
import time
from dataclasses import replace

import pytest
import requests

from sync.consent.by_address import unsubscribed_addresses
from sync.sandbox.fakes.hubspot import CONSENT_READ_SCOPE
from tests.conftest import FAST, HS_TOKEN, seed_contacts
from tests.test_consent import consent_only, mapping_file, state_rows

ARCHIVED_DUE = replace(FAST, archived_check_ms=0)  # the daily archived check is due on this run
CONSENT_PATH = "/communication-preferences/"


def consent_requests(hs):
    return [r for r in hs.log if r.path.startswith(CONSENT_PATH)]


def status(ml, email):
    return ml.subscriber(email)["status"]


def without_consent_scope(hs):
    hs.tokens[HS_TOKEN] = hs.tokens[HS_TOKEN] - {CONSENT_READ_SCOPE}


def a_day_later(days: float = 1.01):
    return replace(FAST, wall_clock=lambda: time.time() + days * 86_400)


# -- item 1: opt-out, then delete ---------------------------------------------------------------------

@pytest.mark.parametrize("consent_scope", [True, False])
def test_optout_then_delete_unsubscribes_the_address(run, hubspot_fake, mailerlite_fake, consent_scope):
    if not consent_scope:  # the records' opt-out properties alone: the archived record's are read
        without_consent_scope(hubspot_fake)
    ids = seed_contacts(hubspot_fake, 3)
    assert run().code == 0
    hubspot_fake.update_contact(ids[1], {"hs_email_optout": "true"})
    hubspot_fake.archive_contact(ids[1])  # both before the next run
    hourly = run()  # the archived check is not due: the address is kept, not forgotten
    assert hourly.code == 0 and status(mailerlite_fake, "person1@example.com") == "active"
    assert state_rows(run, "SELECT hubspot_id FROM contacts WHERE email='person1@example.com'")
    daily = run(tunables=ARCHIVED_DUE)
    assert daily.code == 0 and daily.summary["unsubscribed"] == 1
    assert status(mailerlite_fake, "person1@example.com") == "unsubscribed"
    assert [status(mailerlite_fake, f"person{i}@example.com") for i in (0, 2)] == ["active", "active"]
    # Unsubscribed on the way out: forgotten, and no tombstone left to sweep.
    assert not state_rows(run, "SELECT * FROM contacts WHERE email='person1@example.com'")
    assert not state_rows(run, "SELECT * FROM tombstones")


def test_optout_then_delete_is_followed_by_a_full_pass_without_the_consent_scope(run, hubspot_fake,
                                                                              mailerlite_fake):
    without_consent_scope(hubspot_fake)  # the archived record's opt-out is all there is to read
    ids = seed_contacts(hubspot_fake, 3)
    assert run().code == 0
    hubspot_fake.update_contact(ids[0], {"hs_email_optout": "true"})
    hubspot_fake.archive_contact(ids[0])
    hubspot_fake.archive_contact(ids[1])  # deleted without an opt-out: left per on_leave, not unsubscribed
    full = run("--full")
    assert full.code == 0 and full.summary["left_scope"] == 2
    assert status(mailerlite_fake, "person0@example.com") == "unsubscribed"
    assert status(mailerlite_fake, "person1@example.com") == "active"


def test_delete_then_optout_is_read_by_address_before_it_is_forgotten(run, hubspot_fake, mailerlite_fake):
    ids = seed_contacts(hubspot_fake, 2)
    assert run().code == 0
    hubspot_fake.archive_contact(ids[0])
    hubspot_fake.address_consent["person0@example.com"] = {"all": "UNSUBSCRIBED"}  # only the address knows
    result = run(tunables=ARCHIVED_DUE)
    assert result.code == 0 and status(mailerlite_fake, "person0@example.com") == "unsubscribed"
    assert status(mailerlite_fake, "person1@example.com") == "active"
    assert len(consent_requests(hubspot_fake)) == 1  # one batch read for the departures


def test_a_deleted_address_not_opted_out_is_kept_as_a_tombstone(run, hubspot_fake, mailerlite_fake):
    ids = seed_contacts(hubspot_fake, 2)
    assert run().code == 0
    hubspot_fake.archive_contact(ids[0])
    assert run(tunables=ARCHIVED_DUE).code == 0
    assert status(mailerlite_fake, "person0@example.com") == "active"
    assert state_rows(run, "SELECT email, hubspot_id FROM tombstones") == [("person0@example.com", int(ids[0]))]
    # Opted out a week later, long after the contact was forgotten: the sweep follows the address.
    hubspot_fake.set_address_consent("person0@example.com", unsubscribed_all=True)
    swept = run(tunables=a_day_later())
    assert swept.code == 0 and swept.summary["consent_checked"] == 1 and swept.summary["unsubscribed"] == 1
    assert status(mailerlite_fake, "person0@example.com") == "unsubscribed"
    assert not state_rows(run, "SELECT * FROM tombstones")


def test_an_opted_out_address_goes_even_when_the_guard_holds_the_departures(run, hubspot_fake, mailerlite_fake):
    ids = seed_contacts(hubspot_fake, 20)
    path = mapping_file(run, "mass_leave_percent = 20\nmass_leave_min = 3\n")
    assert run("--mapping", path).code == 0
    for cid in ids[:15]:
        hubspot_fake.archive_contact(cid)
    # Opted out after the delete: only the address knows (the archived record is not edited).
    hubspot_fake.address_consent["person3@example.com"] = {"all": "UNSUBSCRIBED"}
    held = run("--mapping", path, "--full")
    assert held.code == 3 and held.summary["mass_leave_held"] == 15
    assert status(mailerlite_fake, "person3@example.com") == "unsubscribed"  # evidence about that address
    assert [status(mailerlite_fake, f"person{i}@example.com") for i in (0, 4, 14)] == ["active"] * 3
    assert len(state_rows(run, "SELECT * FROM contacts")) == 20  # nobody forgotten while held


# -- item 2: opt-out, then merge ----------------------------------------------------------------------

@pytest.mark.parametrize("new_id", [True, False])
def test_optout_then_merge_unsubscribes_the_merged_away_address(run, hubspot_fake, mailerlite_fake, new_id):
    a, b = seed_contacts(hubspot_fake, 2)
    assert run().code == 0
    hubspot_fake.update_contact(b, {"hs_email_optout": "true"})
    merged = hubspot_fake.merge_contacts(a, b, new_id=new_id)
    record = hubspot_fake.contacts[int(merged)]["properties"]
    assert record["hs_additional_emails"] == "person1@example.com" and record["hs_email_optout"] == "false"
    result = run()
    assert result.code == 0
    assert status(mailerlite_fake, "person1@example.com") == "unsubscribed"  # B's address, read by address
    assert status(mailerlite_fake, "person0@example.com") == "active"  # A stays
    assert len(consent_only(mailerlite_fake, "person0@example.com")) == 0


def test_email_change_reads_the_old_address_before_letting_it_go(run, hubspot_fake, mailerlite_fake):
    (cid,) = seed_contacts(hubspot_fake, 1)
    assert run().code == 0
    hubspot_fake.update_contact(cid, {"email": "new@example.com"})
    hubspot_fake.set_address_consent("person0@example.com", unsubscribed_all=True)  # the old address opts out
    result = run()
    assert result.code == 0
    assert status(mailerlite_fake, "person0@example.com") == "unsubscribed"
    assert status(mailerlite_fake, "new@example.com") == "active"


def test_a_mass_change_of_addresses_is_read_a_hundred_per_request(run, hubspot_fake, mailerlite_fake):
    ids = seed_contacts(hubspot_fake, 150)
    assert run().code == 0
    for i, cid in enumerate(ids):
        hubspot_fake.update_contact(cid, {"email": f"renamed{i}@example.com"})
    hubspot_fake.set_address_consent("person7@example.com", unsubscribed_all=True)
    hubspot_fake.log.clear()
    result = run()
    assert result.code == 0 and result.summary["left_scope"] == 150
    assert len(consent_requests(hubspot_fake)) == 2  # not one per address
    assert status(mailerlite_fake, "person7@example.com") == "unsubscribed"
    assert status(mailerlite_fake, "person8@example.com") == "active"


# -- item 3: opt-out after leaving scope: the consent sweep --------------------------------------------

SCOPED = '[scope.where]\nlifecyclestage = ["customer"]\n'


def let_go(run, hs, n: int, leaving: int, extra: str = "") -> str:
    """n customers synced, then the first `leaving` of them leave the scope (kept in MailerLite, let
    go by the sync): returns the mapping file's path."""
    ids = seed_contacts(hs, n, lifecyclestage="customer")
    path = mapping_file(run, "mass_leave_percent = 100\n" + SCOPED + extra)
    assert run("--mapping", path).code == 0
    for cid in ids[:leaving]:
        hs.update_contact(cid, {"lifecyclestage": "lead"})
    assert run("--mapping", path).code == 0
    return path


def test_optout_after_leaving_scope_is_followed_by_the_sweep(run, hubspot_fake, mailerlite_fake):
    path = let_go(run, hubspot_fake, 3, 2)
    by_email = {r["properties"]["email"]: str(c) for c, r in hubspot_fake.contacts.items()}
    # person0 opts out on its record, which the next hourly run reads (it changed): an address the sync
    # wrote is unsubscribed whatever the scope, at once (issue 28), no consent request needed.
    hubspot_fake.update_contact(by_email["person0@example.com"], {"hs_email_optout": "true"})
    # person1's record is deleted, then its address opts out: only the sweep, a day later, reads it.
    hubspot_fake.archive_contact(by_email["person1@example.com"])
    hubspot_fake.set_address_consent("person1@example.com", unsubscribed_all=True)
    before = len(consent_requests(hubspot_fake))
    hourly = run("--mapping", path)  # the sweep is not due: nothing asked by address
    assert hourly.code == 0 and hourly.summary["consent_checked"] == 0
    assert len(consent_requests(hubspot_fake)) == before
    assert status(mailerlite_fake, "person0@example.com") == "unsubscribed"
    assert status(mailerlite_fake, "person1@example.com") == "active"
    daily = run("--mapping", path, tunables=a_day_later())
    assert daily.code == 0 and daily.summary["consent_checked"] == 1  # person0's tombstone went with it
    assert status(mailerlite_fake, "person1@example.com") == "unsubscribed"
    assert status(mailerlite_fake, "person2@example.com") == "active"


def test_full_runs_always_sweep(run, hubspot_fake, mailerlite_fake):
    path = let_go(run, hubspot_fake, 2, 1)
    hubspot_fake.set_address_consent("person0@example.com", unsubscribed_all=True)
    full = run("--mapping", path, "--full")
    assert full.code == 0 and status(mailerlite_fake, "person0@example.com") == "unsubscribed"


@pytest.mark.parametrize("unknown", ["empty", "omitted"])
def test_sweep_costs_one_request_per_hundred_and_nothing_in_mailerlite(run, hubspot_fake, mailerlite_fake, unknown):
    hubspot_fake.unknown_addresses = unknown  # the spec is silent on addresses without a status: both readings
    path = let_go(run, hubspot_fake, 250, 250)
    assert len(state_rows(run, "SELECT * FROM tombstones")) == 250
    hubspot_fake.log.clear()
    mailerlite_fake.log.clear()
    swept = run("--mapping", path, tunables=a_day_later())
    assert swept.code == 0 and swept.summary["consent_checked"] == 250 and swept.summary["unsubscribed"] == 0
    assert len(consent_requests(hubspot_fake)) == 3
    assert not [r for r in mailerlite_fake.log if r.method != "GET"]
    assert len(state_rows(run, "SELECT * FROM tombstones")) == 250  # not opted out: still followed
    again = run("--mapping", path, tunables=a_day_later(1.5))  # the next one is a day after that
    assert again.code == 0 and again.summary["consent_checked"] == 0


def test_a_dry_run_reads_the_tombstones_and_sends_nothing(run, hubspot_fake, mailerlite_fake):
    path = let_go(run, hubspot_fake, 2, 1)
    hubspot_fake.set_address_consent("person0@example.com", unsubscribed_all=True)
    dry = run("--mapping", path, "--full", "--dry-run")
    assert dry.code == 0 and dry.summary["consent_checked"] == 1 and dry.summary["would_send"] >= 1
    assert status(mailerlite_fake, "person0@example.com") == "active"
    assert state_rows(run, "SELECT email FROM tombstones") == [("person0@example.com",)]
    assert run("--mapping", path, "--full").code == 0
    assert status(mailerlite_fake, "person0@example.com") == "unsubscribed"


def test_an_address_hubspot_will_not_read_never_blocks_the_others(run, hubspot_fake, mailerlite_fake):
    path = let_go(run, hubspot_fake, 150, 150)
    hubspot_fake.refused_addresses = {"person42@example.com"}  # the whole batch holding it is refused
    for cid, record in list(hubspot_fake.contacts.items()):  # records deleted: only the sweep reads them
        if record["properties"]["email"] in ("person7@example.com", "person120@example.com"):
            hubspot_fake.archive_contact(str(cid))
    hubspot_fake.set_address_consent("person7@example.com", unsubscribed_all=True)
    hubspot_fake.set_address_consent("person120@example.com", unsubscribed_all=True)
    swept = run("--mapping", path, "--full")
    assert swept.code == 0 and swept.summary["consent_checked"] == 150
    assert status(mailerlite_fake, "person7@example.com") == "unsubscribed"
    assert status(mailerlite_fake, "person120@example.com") == "unsubscribed"
    assert status(mailerlite_fake, "person42@example.com") == "active"
    assert "person42@example.com" in [e for (e,) in state_rows(run, "SELECT email FROM tombstones")]


def test_per_subscription_optout_of_a_let_go_address(run, hubspot_fake, mailerlite_fake):
    hubspot_fake.add_optout_property("12345678")
    path = let_go(run, hubspot_fake, 3, 2, '[consent]\noptout_properties = ["hs_email_optout", '
                                             '"hs_email_optout_12345678"]\n')
    hubspot_fake.set_address_consent("person0@example.com", subscriptions={"12345678": True})
    hubspot_fake.set_address_consent("person1@example.com", subscriptions={"999": True})  # not in the mapping
    assert run("--mapping", path, "--full").code == 0
    assert status(mailerlite_fake, "person0@example.com") == "unsubscribed"
    assert status(mailerlite_fake, "person1@example.com") == "active"


# -- item 7: without the consent scope -------------------------------------------------------------------

def test_without_the_consent_scope_check_says_what_cannot_be_followed(run, hubspot_fake, mailerlite_fake):
    without_consent_scope(hubspot_fake)
    seed_contacts(hubspot_fake, 1)
    check = run("--check")
    assert check.code == 0 and CONSENT_READ_SCOPE in check.out and "merged away" in check.out


def test_without_the_consent_scope_runs_say_it_once_and_still_sync(run, hubspot_fake, mailerlite_fake):
    without_consent_scope(hubspot_fake)
    ids = seed_contacts(hubspot_fake, 2, lifecyclestage="customer")
    path = mapping_file(run, SCOPED)
    assert run("--mapping", path).code == 0
    hubspot_fake.update_contact(ids[0], {"lifecyclestage": "lead"})
    first = run("--mapping", path)  # the leaving address's consent read is refused (403): the run goes on
    assert first.code == 0 and first.summary["left_scope"] == 1 and CONSENT_READ_SCOPE in first.err
    later = run("--mapping", path, "--full")
    assert later.code == 0 and CONSENT_READ_SCOPE not in later.err  # said once, not every hour
    before = len(consent_requests(hubspot_fake))
    assert run("--mapping", path).code == 0 and len(consent_requests(hubspot_fake)) == before  # not due
    assert status(mailerlite_fake, "person1@example.com") == "active"
    hubspot_fake.tokens[HS_TOKEN] |= {CONSENT_READ_SCOPE}
    hubspot_fake.set_address_consent("person0@example.com", unsubscribed_all=True)
    assert run("--mapping", path, "--full").code == 0  # the scope added: the let-go address is followed
    assert status(mailerlite_fake, "person0@example.com") == "unsubscribed"


def test_check_with_the_consent_scope_says_nothing_of_it(run, hubspot_fake, mailerlite_fake):
    seed_contacts(hubspot_fake, 1)
    check = run("--check")
    assert check.code == 0 and CONSENT_READ_SCOPE not in check.out


# -- answers are matched by address ------------------------------------------------------------------

def _wide(address, state):
    return {"subscriberIdString": address, "wideStatuses": [{"status": state, "wideStatusType": "PORTAL_WIDE"}]}


@pytest.mark.parametrize("results, asked, counts, expected", [
    ([_wide("a@x.com", "UNSUBSCRIBED"), _wide("b@x.com", "SUBSCRIBED")], {"a@x.com", "b@x.com"}, None, {"a@x.com"}),
    ([_wide("A@X.com", "UNSUBSCRIBED")], {"a@x.com"}, None, {"a@x.com"}),  # case folded
    ([_wide("c@x.com", "UNSUBSCRIBED")], {"a@x.com"}, None, set()),  # not asked about: never someone else's
    ([{"subscriberIdString": "a@x.com", "wideStatuses": []}], {"a@x.com"}, None, set()),  # no status
    ([_wide("a@x.com", "NOT_SPECIFIED"), "junk", {"wideStatuses": None}], {"a@x.com"}, None, set()),
    ([{"subscriberIdString": "a@x.com", "statuses": [{"subscriptionId": 7, "status": "UNSUBSCRIBED"}]}],
     {"a@x.com"}, frozenset({"7"}), {"a@x.com"}),
    ([{"subscriberIdString": "a@x.com", "statuses": [{"subscriptionId": 8, "status": "UNSUBSCRIBED"}]}],
     {"a@x.com"}, frozenset({"7"}), set()),  # a subscription the mapping does not name
])
def test_unsubscribed_addresses_table(results, asked, counts, expected):
    key = "wideStatuses" if counts is None else "statuses"
    assert unsubscribed_addresses(results, asked, key, counts) == expected


# -- the fake's Communication Preferences endpoints ------------------------------------------------------

def _consent_read(hs, inputs, kind="unsubscribe-all/read", token=HS_TOKEN, channel="EMAIL"):
    return requests.post(f"{hs.url}/communication-preferences/2026-09/statuses/batch/{kind}",
                         params={"channel": channel} if channel else {}, json={"inputs": inputs},
                         headers={"Authorization": f"Bearer {token}"}, timeout=5)


def test_fake_keeps_consent_with_the_address_through_archive_merge_and_recreation(hubspot_fake):
    a, b = seed_contacts(hubspot_fake, 2)
    hubspot_fake.update_contact(b, {"hs_email_optout": "true"})
    merged = hubspot_fake.merge_contacts(a, b, new_id=True)
    assert hubspot_fake.contacts[int(merged)]["properties"]["hs_email_optout"] == "false"  # A's address
    again = hubspot_fake.add_contact({"email": "Person1@example.com"})  # B's address, on a new record
    assert hubspot_fake.contacts[int(again)]["properties"]["hs_email_optout"] == "true"
    answer = _consent_read(hubspot_fake, ["person1@example.com", "person0@example.com"]).json()
    wide = {r["subscriberIdString"]: [s["status"] for s in r["wideStatuses"]] for r in answer["results"]}
    assert wide == {"person1@example.com": ["UNSUBSCRIBED"], "person0@example.com": []}
    assert {"completedAt", "startedAt", "status", "results"} <= answer.keys()


@pytest.mark.parametrize("unknown, code, results", [("empty", 200, 1), ("omitted", 207, 0)])
def test_fake_answers_an_unknown_address_either_way(hubspot_fake, unknown, code, results):
    hubspot_fake.unknown_addresses = unknown
    answer = _consent_read(hubspot_fake, ["nobody@example.com"], kind="read")
    assert answer.status_code == code and len(answer.json()["results"]) == results


def test_fake_enforces_the_scope_the_channel_and_the_batch_size(hubspot_fake):
    hubspot_fake.tokens["no-consent"] = {"crm.objects.contacts.read"}
    refused = _consent_read(hubspot_fake, ["a@example.com"], token="no-consent")
    assert refused.status_code == 403 and refused.json()["category"] == "MISSING_SCOPES"
    assert CONSENT_READ_SCOPE in json.dumps(refused.json())
    assert _consent_read(hubspot_fake, ["a@example.com"], channel="").status_code == 400
    too_many = _consent_read(hubspot_fake, [f"p{i}@example.com" for i in range(101)])
    assert too_many.status_code == 400


def test_the_sandbox_snapshot_keeps_consent_by_address(tmp_path):
    from sync.sandbox import snapshot
    from sync.sandbox.fakes.hubspot import FakeHubSpot
    from sync.sandbox.fakes.mailerlite import FakeMailerLite

    hs, ml = FakeHubSpot(), FakeMailerLite()
    hs.set_address_consent("gone@example.com", unsubscribed_all=True)
    path = tmp_path / "snapshot.json"
    snapshot.save(hs, ml, path)
    again = FakeHubSpot()
    assert snapshot.load(again, FakeMailerLite(), path)
    assert again.address_consent == {"gone@example.com": {"all": "UNSUBSCRIBED"}}
    older = json.loads(path.read_text())
    del older["hubspot"]["address_consent"]  # a snapshot from before consent was kept by address
    path.write_text(json.dumps(older))
    assert snapshot.load(FakeHubSpot(), FakeMailerLite(), path)
