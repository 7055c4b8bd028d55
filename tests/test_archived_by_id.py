"""A --full pass reads the archived records of the synced contacts it found gone BY ID
(`POST .../contacts/batch/read?archived=true`, 100 ids a request), not the whole archived listing:
a portal that deleted many contacts pays for the few the sync had, not for every archived one.

End to end through main.py against the fake HubSpot, under each unconfirmed reading of what an
archived batch read does with an id it does not answer (a 207 naming it, silently absent, or the
whole batch refused with a 404) and with a merged-away id (its own archived record, or the record
it was merged into); plus the consent owner's reading of the answers over real HTTP.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import List, Tuple

import pytest
import requests

from sync.consent.archived import archived_optouts
from sync.hubspot import HubSpotReader
from sync.mapping import Mapping
from tests.conftest import FAST, HS_TOKEN, seed_contacts
from tests.test_consent_by_address import status, without_consent_scope

CONTACTS = "/crm/objects/2026-09/contacts"
BATCH_READ = CONTACTS + "/batch/read"
UNKNOWN = ["207", "absent", "404"]


def archived_reads(hs, since: int) -> Tuple[int, int]:
    """(archived listing pages, archived batch reads by id) the fake served from log entry `since` on."""
    archived = [r for r in hs.log[since:] if r.query.get("archived") == ["true"]]
    return (sum(1 for r in archived if r.method == "GET" and r.path == CONTACTS),
            sum(1 for r in archived if r.method == "POST" and r.path == BATCH_READ))


def deleted_long_ago(hs, n: int) -> None:
    """n contacts the sync never had, deleted in the last 90 days: the portal's archived listing."""
    for cid in seed_contacts(hs, n, start=10_000):
        hs.archive_contact(cid)


@pytest.mark.parametrize("unknown", UNKNOWN)
def test_full_pass_reads_the_gone_contacts_by_id_not_the_archived_listing(run, hubspot_fake, mailerlite_fake,
                                                                          unknown):
    hubspot_fake.archived_read_unknown = unknown
    without_consent_scope(hubspot_fake)  # the archived record's opt-out is all there is to read
    ids = seed_contacts(hubspot_fake, 6)
    assert run().code == 0
    deleted_long_ago(hubspot_fake, 1_000)
    hubspot_fake.update_contact(ids[0], {"hs_email_optout": "true"})  # opted out, then deleted
    for cid in ids[:3]:
        hubspot_fake.archive_contact(cid)
    before = len(hubspot_fake.log)
    full = run("--full")
    assert full.code == 0 and full.summary["left_scope"] == 3, full.err
    assert status(mailerlite_fake, "person0@example.com") == "unsubscribed"
    assert [status(mailerlite_fake, f"person{i}@example.com") for i in (1, 2, 3)] == ["active"] * 3
    assert archived_reads(hubspot_fake, before) == (0, 1)  # one batch read for 3 ids; no listing page
    assert full.summary["hubspot_requests"] < 10  # the listing alone would be 11 pages


@pytest.mark.parametrize("unknown", UNKNOWN)
def test_a_gone_contact_the_archived_read_does_not_answer_is_covered_by_its_address(run, hubspot_fake,
                                                                                   mailerlite_fake, unknown):
    """Purged 90 days after its delete (or GDPR-deleted): no record to read, by id or in the listing;
    the consent of its address, read as it is let go of, still unsubscribes it."""
    hubspot_fake.archived_read_unknown = unknown
    ids = seed_contacts(hubspot_fake, 4)
    assert run().code == 0
    hubspot_fake.update_contact(ids[0], {"hs_email_optout": "true"})  # the address opted out...
    hubspot_fake.purge_contact(ids[0])  # ...and its record is gone for good
    hubspot_fake.update_contact(ids[1], {"hs_email_optout": "true"})
    hubspot_fake.archive_contact(ids[1])  # still archived: its record answers
    hubspot_fake.archive_contact(ids[2])
    before = len(hubspot_fake.log)
    full = run("--full")
    assert full.code == 0 and full.summary["left_scope"] == 3, full.err
    assert [status(mailerlite_fake, f"person{i}@example.com") for i in range(4)] == \
        ["unsubscribed", "unsubscribed", "active", "active"]
    listing, by_id = archived_reads(hubspot_fake, before)
    assert listing == 0 and 1 <= by_id <= 5  # one batch, halved down to the refused id when it fails whole


@pytest.mark.parametrize("unknown", UNKNOWN)
def test_without_the_consent_scope_a_purged_contact_leaves_without_an_unsubscribe(run, hubspot_fake,
                                                                                 mailerlite_fake, unknown):
    """No record and no consent by address: no positive evidence of an opt-out, so it leaves as
    on_leave says; the archived one beside it still brings its record's opt-out."""
    hubspot_fake.archived_read_unknown = unknown
    without_consent_scope(hubspot_fake)
    ids = seed_contacts(hubspot_fake, 3)
    assert run().code == 0
    hubspot_fake.purge_contact(ids[0])
    hubspot_fake.update_contact(ids[1], {"hs_email_optout": "true"})
    hubspot_fake.archive_contact(ids[1])
    full = run("--full")
    assert full.code == 0 and full.summary["left_scope"] == 2, full.err
    assert [status(mailerlite_fake, f"person{i}@example.com") for i in range(3)] == \
        ["active", "unsubscribed", "active"]


def test_the_daily_incremental_check_still_reads_the_archived_listing(run, hubspot_fake, mailerlite_fake):
    """An hourly run knows no candidates: its daily check lists the archived contacts, as before."""
    ids = seed_contacts(hubspot_fake, 3)
    assert run().code == 0
    hubspot_fake.archive_contact(ids[0])
    before = len(hubspot_fake.log)
    daily = run(tunables=replace(FAST, archived_check_ms=0))
    assert daily.code == 0 and daily.summary["left_scope"] == 1
    assert archived_reads(hubspot_fake, before) == (1, 0)


def test_a_full_pass_still_counts_as_the_daily_archived_check(run, hubspot_fake, mailerlite_fake):
    """Every synced contact archived since is among a full pass's unseen ones, read by id: the daily
    listing is not due again until a day later (a day after, it is)."""
    ids = seed_contacts(hubspot_fake, 3)
    assert run().code == 0
    hubspot_fake.archive_contact(ids[0])
    assert run("--full").summary["left_scope"] == 1
    before = len(hubspot_fake.log)
    assert run().code == 0
    assert archived_reads(hubspot_fake, before) == (0, 0)
    later = run(tunables=replace(FAST, wall_clock=lambda: time.time() + 1.01 * 86_400))
    assert later.code == 0 and archived_reads(hubspot_fake, before) == (1, 0)


# -- the consent owner's reading of an archived batch read, over real HTTP ---------------------------

def reader(hs) -> HubSpotReader:
    return HubSpotReader(HS_TOKEN, hs.url, timeout=(5, 30), tunables=FAST)


@pytest.mark.parametrize("merged", ["own", "merged"])
@pytest.mark.parametrize("unknown", UNKNOWN)
def test_only_the_ids_asked_for_count_and_a_merged_record_is_not_them(hubspot_fake, merged, unknown):
    """A merged-away id may be answered by the record it was merged into, under that record's id:
    that record's opt-out is its own address's, not the merged-away one's (whose address the
    departure reads by address)."""
    hubspot_fake.archived_read_merged = merged
    hubspot_fake.archived_read_unknown = unknown
    ids = seed_contacts(hubspot_fake, 6)
    hubspot_fake.update_contact(ids[0], {"hs_email_optout": "true"})
    merged_id = hubspot_fake.merge_contacts(ids[0], ids[1], new_id=True)  # the primary (opted out) wins
    hubspot_fake.update_contact(ids[2], {"hs_email_optout": "true"})
    hubspot_fake.merge_contacts(ids[3], ids[2], new_id=True)  # an opted-out secondary: its record keeps it
    hubspot_fake.update_contact(ids[4], {"hs_email_optout": "true"})
    hubspot_fake.archive_contact(ids[4])
    hubspot_fake.purge_contact(ids[5])
    live = seed_contacts(hubspot_fake, 1, start=50, hs_email_optout="true")  # live: not answered as archived
    asked: List[str] = [ids[1], ids[2], ids[4], ids[5], *live]
    found = archived_optouts(reader(hubspot_fake), asked, Mapping.default())
    assert merged_id not in found
    expected = {ids[4]} | ({ids[2]} if merged == "own" else set())
    assert found == expected


def test_a_hundred_ids_a_request(hubspot_fake):
    ids = seed_contacts(hubspot_fake, 250)
    for cid in ids[::50]:
        hubspot_fake.update_contact(cid, {"hs_email_optout": "true"})
    for cid in ids:
        hubspot_fake.archive_contact(cid)
    before = len(hubspot_fake.log)
    assert archived_optouts(reader(hubspot_fake), ids, Mapping.default()) == set(ids[::50])
    assert archived_reads(hubspot_fake, before) == (0, 3)
    assert all(len(r.body["inputs"]) <= 100 and r.body["propertiesWithHistory"] == []
               and "email" in r.body["properties"] and "hs_email_optout" in r.body["properties"]
               for r in hubspot_fake.log[before:])


# -- the fake, as HubSpot's spec describes the archived batch read ----------------------------------

@pytest.mark.parametrize("unknown, code", [("207", 207), ("absent", 200), ("404", 404)])
def test_the_fake_answers_archived_records_only(hubspot_fake, unknown, code):
    hubspot_fake.archived_read_unknown = unknown
    live, archived, purged = seed_contacts(hubspot_fake, 3)
    hubspot_fake.archive_contact(archived)
    hubspot_fake.purge_contact(purged)
    body = {"inputs": [{"id": i} for i in (live, archived, purged)], "properties": ["email"],
            "propertiesWithHistory": []}
    answer = requests.post(f"{hubspot_fake.url}{BATCH_READ}", params={"archived": "true"}, json=body,
                           headers={"Authorization": f"Bearer {HS_TOKEN}"}, timeout=10)
    assert answer.status_code == code
    if code == 404:
        return
    results = answer.json()["results"]
    assert [(r["id"], r["archived"], "archivedAt" in r) for r in results] == [(archived, True, True)]
    errors = answer.json().get("errors", [])
    assert [e["context"]["ids"] for e in errors] == ([[live, purged]] if unknown == "207" else [])
    plain = requests.post(f"{hubspot_fake.url}{BATCH_READ}", json=body, timeout=10,
                          headers={"Authorization": f"Bearer {HS_TOKEN}"})
    assert [r["id"] for r in plain.json()["results"]] == [live]  # without archived=true: live records only
