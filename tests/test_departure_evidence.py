"""Issue 22, items 4-6: a destructive action needs positive evidence about the record, one
failing address never blocks the run, and customised opt-out properties must exist.

Every case runs main.py over HTTP against the fake HubSpot and MailerLite servers."""

from __future__ import annotations

import csv
import io
import time
from dataclasses import replace

import pytest
import requests

from sync.consent.rules import next_try_ms
from tests.conftest import FAST, HS_TOKEN, seed_contacts
from tests.test_consent import _DropPagingOnce, consent_only, mapping_file, state_rows

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


def test_check_says_customised_optouts_need_the_schema_scope(run, hubspot_fake, mailerlite_fake):
    hubspot_fake.tokens["hs-test-token"] = {"crm.objects.contacts.read"}
    result = run("--check", "--mapping", mapping_file(run, TYPO))
    assert result.code == 2 and "crm.schemas.contacts.read" in result.out and "optout_properties" in result.out


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
    assert result.summary["consent_pending"] == 0
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
    hubspot_fake.archive_contact(ids[1])  # deleted: its memberships are not found (or empty)
    hubspot_fake.processing_lists["55"] = 250
    hubspot_fake.short_membership_reads["55"] = 1000
    for full, gone in (((), 1), (("--full",), 2)):  # the archived one is found by a read by id (--full)
        result = run("--mapping", path, *full)
        assert result.code == 0, result.err
        assert mailerlite_fake.subscriber("person0@example.com")["status"] == "unsubscribed"
        active = [s for s in mailerlite_fake.subscribers.values() if s["status"] == "active"]
        assert len(active) == 300 - gone
    assert mailerlite_fake.subscriber("person1@example.com")["status"] == "unsubscribed"
    assert state_rows(run, "SELECT COUNT(*) FROM contacts") == [(298,)]


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


# -- item 5: a failing address never blocks the run ------------------------------------------------------

def _consent_requests(ml, emails):
    """Consent-only upserts for these addresses, and group removals of their subscribers."""
    ids = {s["id"] for s in ml.subscribers.values() if s["email"] in emails}
    return len([b for e in emails for b in consent_only(ml, e)]) + len(
        [r for r in ml.log if r.method == "DELETE" and any(f"/subscribers/{i}/" in r.path for i in ids)])


@pytest.mark.parametrize("on_leave", ["unsubscribe", "remove_from_groups"])
def test_consent_actions_that_keep_failing_wait_their_back_off_and_block_nobody(run, hubspot_fake, mailerlite_fake,
                                                                                on_leave):
    ids = _list_members(hubspot_fake, 8)
    path = mapping_file(run, f'on_leave = "{on_leave}"\n[groups]\nall = ["Synced"]\n[scope]\nlists = ["55"]\n')
    assert run("--mapping", path).code == 0
    stuck = {f"person{i}@example.com" for i in range(3)}
    if on_leave == "unsubscribe":
        mailerlite_fake.failing_emails.update({e: 10 ** 6 for e in stuck})  # 503 for ever
    else:
        mailerlite_fake.refused_group_removals.update(stuck)  # 422
    hubspot_fake.lists["55"] = [int(i) for i in ids[3:]]

    for n, edited in enumerate(ids[3:6]):  # the leaving run, its retry next run, then a run inside the back-off
        hubspot_fake.update_contact(edited, {"firstname": f"Edit{n}"})
        before = _consent_requests(mailerlite_fake, stuck)
        result = run("--mapping", path)
        assert result.code == 1, result.err
        assert result.summary["consent_pending"] == 3 and result.summary["updated"] == 1
        assert "consent pending 3" in result.err and "--rejected" in result.err
        assert mailerlite_fake.subscriber(f"person{n + 3}@example.com")["fields"]["name"] == f"Edit{n}"
        tried = _consent_requests(mailerlite_fake, stuck) > before
        assert tried == (n < 2) and result.summary["failed"] == (3 if n < 2 else 0)
    assert state_rows(run, "SELECT attempts FROM pending_actions") == [(2,)] * 3
    rows = list(csv.DictReader(io.StringIO(run("--rejected").out)))
    assert sorted(r["email"] for r in rows) == sorted(stuck)
    assert {r["kind"] for r in rows} == {"unsubscribe pending" if on_leave == "unsubscribe"
                                         else "group removal pending"}

    mailerlite_fake.failing_emails.clear()
    mailerlite_fake.refused_group_removals.clear()
    assert run("--mapping", path).summary["consent_pending"] == 3  # still inside the back-off (an hour)
    later = replace(FAST, wall_clock=lambda: time.time() + 2 * 3600)
    done = run("--mapping", path, tunables=later)
    assert (done.code, done.summary["consent_pending"]) == (0, 0), done.err
    for email in stuck:
        subscriber = mailerlite_fake.subscriber(email)
        assert subscriber["status"] == ("unsubscribed" if on_leave == "unsubscribe" else "active")
        assert subscriber["groups"] == []
    assert state_rows(run, "SELECT COUNT(*) FROM contacts") == [(5,)]


def test_back_off_doubles_up_to_a_day():
    hour, day = 3_600_000, 24 * 3_600_000
    assert [next_try_ms(n, 0, hour, day) for n in range(1, 9)] == [0, hour, 2 * hour, 4 * hour, 8 * hour,
                                                                   16 * hour, day, day]


# -- the fake's list endpoints, in the 2026-09 lists spec's shapes -------------------------------------------

def _lists_api(hubspot_fake, method, path, **kwargs):
    return requests.request(method, f"{hubspot_fake.url}/crm/lists/2026-09/{path}",
                            headers={"Authorization": f"Bearer {HS_TOKEN}"}, timeout=5, **kwargs)


def test_the_fake_answers_a_lists_size_and_processing_status(hubspot_fake):
    hubspot_fake.lists["7"] = [1001, 1002, 1003]
    settled = _lists_api(hubspot_fake, "GET", "7").json()["list"]
    # PublicObjectList's required keys, and size
    assert {"listId", "listVersion", "name", "objectTypeId", "processingStatus", "processingType"} <= set(settled)
    assert (settled["size"], settled["processingStatus"]) == (3, "COMPLETE")
    hubspot_fake.processing_lists["7"] = 1
    assert _lists_api(hubspot_fake, "GET", "7").json()["list"]["processingStatus"] == "PROCESSING"
    assert _lists_api(hubspot_fake, "GET", "8").status_code == 404


@pytest.mark.parametrize("unknown", ["207", "empty"])
def test_the_fake_answers_each_records_memberships(hubspot_fake, unknown):
    hubspot_fake.unknown_record_memberships = unknown
    ids = seed_contacts(hubspot_fake, 2)
    hubspot_fake.lists["7"] = [int(ids[0])]
    hubspot_fake.archive_contact(ids[1])
    inputs = [{"objectTypeId": "0-1", "recordId": i} for i in (ids[0], ids[1], "999999")]
    answer = _lists_api(hubspot_fake, "POST", "records/memberships/batch/read", json={"inputs": inputs})
    body = answer.json()
    assert {"completedAt", "results", "startedAt", "status"} <= set(body)
    by_id = {r["recordId"]: [m["listId"] for m in r["recordListMemberships"]] for r in body["results"]}
    assert by_id[ids[0]] == ["7"]
    if unknown == "207":
        assert answer.status_code == 207 and set(by_id) == {ids[0]}
        assert set(body["errors"][0]["context"]["ids"]) == {ids[1], "999999"}
    else:
        assert answer.status_code == 200 and by_id[ids[1]] == [] and by_id["999999"] == []
    too_many = [{"objectTypeId": "0-1", "recordId": str(i)} for i in range(101)]
    assert _lists_api(hubspot_fake, "POST", "records/memberships/batch/read",
                      json={"inputs": too_many}).status_code == 400
    assert _lists_api(hubspot_fake, "POST", "records/memberships/batch/read",
                      json={"inputs": [{"recordId": ids[0]}]}).status_code == 400  # objectTypeId is required

