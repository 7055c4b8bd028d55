"""Two-way consent: MailerLite unsubscribes, bounces and spam complaints written back to HubSpot."""

from __future__ import annotations

import sqlite3

import pytest

from sync.sandbox.fakes.hubspot import SCHEMA_WRITE_SCOPE, WRITE_SCOPE
from sync.write_back import DUE_KEY
from tests.conftest import FAST, seed_contacts


@pytest.fixture
def write_back(run, hubspot_fake, monkeypatch):
    hubspot_fake.tokens["hs-test-token"] |= {WRITE_SCOPE, SCHEMA_WRITE_SCOPE}
    monkeypatch.setenv("SYNC_WRITE_BACK", "true")
    return run


def mark(ml, email, status, when="2026-11-20 10:30:00"):
    sub = ml.subscriber(email)
    sub["status"] = status
    sub["unsubscribed_at" if status == "unsubscribed" else "updated_at"] = when


def updates(hs):
    """Batch updates that write something (not the empty one that checks the scope)."""
    return [r for r in hs.requests_to("POST", "/crm/objects/2026-09/contacts/batch/update") if r.body.get("inputs")]


def test_statuses_are_written_back_once_with_their_own_properties(write_back, hubspot_fake, mailerlite_fake):
    ids = seed_contacts(hubspot_fake, 10)
    first = write_back()
    assert first.code == 0 and first.summary["written_back"] == 0
    mark(mailerlite_fake, "person1@example.com", "unsubscribed")
    mark(mailerlite_fake, "person2@example.com", "bounced", "2026-11-21 08:00:00")
    mark(mailerlite_fake, "person3@example.com", "junk")
    hubspot_fake.add_contact({"email": "later@example.com"})  # the forward sync still runs first
    second = write_back("--full")  # (the interval is not due yet: a full pass does not change that)
    assert second.summary["written_back"] == 0
    # A new state file makes it due, as on a first run.
    import sqlite3

    from sync import write_back as module
    db = sqlite3.connect(write_back.state_db)
    db.execute("DELETE FROM meta WHERE key=?", (module.DUE_KEY,))
    db.commit()
    db.close()
    third = write_back()
    assert third.code == 0 and third.summary["written_back"] == 3
    props = {cid: hubspot_fake.contacts[int(cid)]["properties"] for cid in ids[1:4]}
    assert [p["mailerlite_status"] for p in props.values()] == ["unsubscribed", "bounced", "junk"]
    assert props[ids[1]]["mailerlite_status_changed_at"] == "2026-11-20T10:30:00.000Z"
    assert props[ids[2]]["mailerlite_status_changed_at"] == "2026-11-21T08:00:00.000Z"
    assert all(p["hs_email_optout"] == "false" for p in props.values())  # HubSpot's own status untouched
    group = next(g for g in hubspot_fake.property_groups if g["name"] == "mailerlite")
    assert group["label"] == "MailerLite"
    created = {p["name"]: p for p in hubspot_fake.properties if p.get("groupName") == "mailerlite"}
    assert created["mailerlite_status"]["type"] == "enumeration"
    assert created["mailerlite_status"]["label"] == "MailerLite status"
    assert created["mailerlite_status_changed_at"]["type"] == "datetime"


def _always_due(monkeypatch):
    monkeypatch.setenv("SYNC_WRITE_BACK_HOURS", "0.000001")


def test_no_ping_pong_across_three_runs(write_back, hubspot_fake, mailerlite_fake, monkeypatch):
    _always_due(monkeypatch)
    seed_contacts(hubspot_fake, 20)
    write_back()
    for email in ("person4@example.com", "person5@example.com"):
        mark(mailerlite_fake, email, "unsubscribed")
    results, ml_writes, hs_updates = [], [], []
    for _ in range(3):
        ml_mark, hs_mark = len(mailerlite_fake.log), len(updates(hubspot_fake))
        results.append(write_back())
        ml_writes.append(sum(1 for r in mailerlite_fake.log[ml_mark:] if r.method != "GET"))
        hs_updates.append(len(updates(hubspot_fake)) - hs_mark)
    assert [r.summary["written_back"] for r in results] == [2, 0, 0]
    assert hs_updates == [1, 0, 0]
    assert ml_writes == [0, 0, 0], "the contacts write-back touched are read again, unchanged, and not sent"
    assert results[1].summary["unchanged"] == 2  # read again because write-back modified them


def test_addresses_not_in_hubspot_are_reported_not_created(write_back, hubspot_fake, mailerlite_fake, monkeypatch):
    _always_due(monkeypatch)
    seed_contacts(hubspot_fake, 3)
    mailerlite_fake.add_subscriber("stranger@example.com", status="unsubscribed")
    contacts_before = len(hubspot_fake.contacts)
    result = write_back()
    assert result.summary["write_back_unmatched"] == 1 and result.code == 0
    assert len(hubspot_fake.contacts) == contacts_before
    assert write_back().summary["write_back_unmatched"] == 0  # reported once


def test_contacts_the_sync_did_not_create_are_found_by_search(write_back, hubspot_fake, mailerlite_fake,
                                                                 monkeypatch, tmp_path):
    _always_due(monkeypatch)
    outside = hubspot_fake.add_contact({"email": "Outside@Example.com", "lifecyclestage": "lead"}, modified_ms=1)
    hubspot_fake.add_contact({"email": "inside@example.com", "lifecyclestage": "customer"}, modified_ms=1)
    mailerlite_fake.add_subscriber("outside@example.com", status="bounced")
    mapping = tmp_path / "m.toml"
    mapping.write_text('[scope.where]\nlifecyclestage = ["customer"]\n')
    result = write_back("--mapping", str(mapping))
    assert result.summary["written_back"] == 1
    assert hubspot_fake.contacts[int(outside)]["properties"]["mailerlite_status"] == "bounced"
    assert hubspot_fake.requests_to("POST", "/crm/objects/2026-09/contacts/search")


def test_partial_batch_failures_are_retried_next_run(write_back, hubspot_fake, mailerlite_fake):
    ids = seed_contacts(hubspot_fake, 5)
    write_back()  # first run: nothing inactive yet; next pass due in 24 hours
    import sqlite3

    from sync import write_back as module
    db = sqlite3.connect(write_back.state_db)
    db.execute("DELETE FROM meta WHERE key=?", (module.DUE_KEY,))
    db.commit()
    mark(mailerlite_fake, "person0@example.com", "unsubscribed")
    mark(mailerlite_fake, "person1@example.com", "unsubscribed")
    hubspot_fake.failing_update_ids = {ids[1]}
    failed = write_back()
    assert (failed.summary["written_back"], failed.summary["write_back_failed"], failed.code) == (1, 1, 1)
    hubspot_fake.failing_update_ids = set()
    retried = write_back()  # due again at once, although the interval is a day
    assert (retried.summary["written_back"], retried.summary["write_back_failed"]) == (1, 0)
    assert hubspot_fake.contacts[int(ids[1])]["properties"]["mailerlite_status"] == "unsubscribed"
    listings = len(mailerlite_fake.requests_to("GET", "/api/subscribers"))
    quiet = write_back()
    assert len(mailerlite_fake.requests_to("GET", "/api/subscribers")) == listings, "not due any more"
    assert quiet.summary["written_back"] == 0


def test_the_interval_bounds_the_cost(write_back, hubspot_fake, mailerlite_fake):
    seed_contacts(hubspot_fake, 5)
    first = write_back()
    # HubSpot: property groups, group creation, property definitions, 2 property creations;
    # MailerLite: one listing per status. (The scope probes come before, outside the count.)
    assert first.summary["write_back_requests"] == 8
    listings = len(mailerlite_fake.requests_to("GET", "/api/subscribers"))
    # One listing per status (the first run's adoption listing, without a status filter, is not write-back's).
    assert len([r for r in mailerlite_fake.requests_to("GET", "/api/subscribers") if "filter[status]" in r.query]) == 3
    again = write_back()
    assert again.summary["write_back_requests"] == 0
    assert len(mailerlite_fake.requests_to("GET", "/api/subscribers")) == listings  # not due for a day


def test_missing_write_scope(run, hubspot_fake, mailerlite_fake, monkeypatch):
    seed_contacts(hubspot_fake, 3)
    assert run().code == 0  # write-back off: the read-only token is all it needs
    monkeypatch.setenv("SYNC_WRITE_BACK", "true")
    hubspot_fake.add_contact({"email": "new@example.com"})
    result = run()
    lines = [line for line in result.err.splitlines() if line.startswith("ERROR")]
    assert result.code == 2 and len(lines) == 1
    assert "missing scope crm.objects.contacts.write, crm.schemas.contacts.write" in lines[0]
    assert mailerlite_fake.subscriber("new@example.com") is None  # stopped before writing anything
    check = run("--check")
    assert check.code == 2 and "lacks the scope crm.objects.contacts.write" in check.out


def test_write_back_can_be_turned_on_in_the_mapping_file(run, hubspot_fake, mailerlite_fake, tmp_path):
    hubspot_fake.tokens["hs-test-token"] |= {WRITE_SCOPE, SCHEMA_WRITE_SCOPE}
    seed_contacts(hubspot_fake, 2)
    mailerlite_fake.add_subscriber("person0@example.com", status="junk")
    mapping = tmp_path / "m.toml"
    mapping.write_text("write_back = true\n")
    result = run("--mapping", str(mapping))
    assert result.summary["written_back"] == 1


def test_an_outage_during_the_scope_check_is_not_taken_for_a_scope(hubspot_fake):
    from sync.errors import AbortRun
    from sync.hubspot import HubSpotWriter
    hubspot_fake.tokens["hs-test-token"] |= {WRITE_SCOPE, SCHEMA_WRITE_SCOPE}
    writer = HubSpotWriter("hs-test-token", hubspot_fake.url, timeout=(2, 2), tunables=FAST)
    assert writer.missing_write_scopes() == []  # the probes' 400s mean the scopes are there
    hubspot_fake.faults.script.extend(["503"] * 10)
    with pytest.raises(AbortRun, match="kept failing"):
        writer.missing_write_scopes()


def test_a_listing_that_ignores_its_status_filter_writes_back_only_each_subscribers_own_status(
        write_back, hubspot_fake, mailerlite_fake):
    ids = seed_contacts(hubspot_fake, 6)
    assert write_back().code == 0
    mark(mailerlite_fake, "person1@example.com", "bounced")
    mailerlite_fake.honours_status_filter = False  # every status listed, whatever the filter asked
    db = sqlite3.connect(write_back.state_db)
    db.execute("DELETE FROM meta WHERE key=?", (DUE_KEY,))  # due, as on a first run
    db.commit()
    db.close()
    again = write_back()
    assert again.code == 0 and again.summary["written_back"] == 1, again.err
    statuses = {cid: hubspot_fake.contacts[int(cid)]["properties"].get("mailerlite_status") for cid in ids}
    assert statuses == {cid: ("bounced" if cid == ids[1] else None) for cid in ids}
    mailerlite_fake.delete_subscriber("person2@example.com")  # an active one, gone in a clean-up
    assert write_back("--full").code == 0
    assert mailerlite_fake.subscriber("person2@example.com")["status"] == "active"  # not held as inactive
