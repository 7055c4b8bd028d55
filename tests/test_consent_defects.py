"""Issue 22 item 8: smaller consent defects, end to end through main.py against the fakes."""

from __future__ import annotations

import sqlite3

import pytest

from sync import engagement
from sync import mailerlite_answers as answers
from sync.mailerlite_answers import classify_upsert
from sync.sandbox.fakes.hubspot import SCHEMA_WRITE_SCOPE, WRITE_SCOPE
from tests.conftest import seed_contacts

UPDATE = "/crm/objects/2026-09/contacts/batch/update"


def recorded_ids(run) -> dict:
    """email -> the MailerLite subscriber id the state file recorded for it."""
    with sqlite3.connect(run.state_db) as conn:
        return {e: s for e, s in conn.execute("SELECT email, subscriber_id FROM contacts")}


# -- (a) a batch answer is matched to its request by address ----------------------------------------
@pytest.mark.parametrize("disorder", ["reversed", "foreign"])
def test_a_batch_answer_is_matched_by_address_never_by_position(run, hubspot_fake, mailerlite_fake, disorder):
    seed_contacts(hubspot_fake, 50)
    mailerlite_fake.batch_disorder.append(disorder)
    result = run()
    assert result.code == 0, result.err
    assert result.summary["created"] + result.summary["updated"] == 50
    ids = recorded_ids(run)
    assert len(ids) == 50
    for email, sid in ids.items():  # each contact holds its own subscriber's id, never another's
        assert sid == mailerlite_fake.subscriber(email)["id"], email
    assert mailerlite_fake.subscriber("stranger@elsewhere.example") is None or \
        mailerlite_fake.subscriber("stranger@elsewhere.example")["id"] not in ids.values()
    assert "does not understand" in result.err  # said once; the items went on their own


SUB = {"id": "7", "email": "a@example.com"}


@pytest.mark.parametrize("body,batch_item,kind", [
    ({"data": SUB}, True, answers.WRITTEN),
    ({"data": {**SUB, "email": " A@Example.com "}}, True, answers.WRITTEN),  # the same address, as MailerLite writes it
    ({"data": {**SUB, "email": "b@example.com"}}, True, answers.NOT_UNDERSTOOD),  # someone else's subscriber
    ({"data": {**SUB, "email": "b@example.com"}}, False, answers.RETRY),
    ({"data": {"id": "7"}}, True, answers.NOT_UNDERSTOOD),  # a batch item must say whose it is
    ({"data": {"id": "7"}}, False, answers.WRITTEN),  # a single request's answer can only be its own
])
def test_a_success_is_about_the_address_sent(body, batch_item, kind):
    assert classify_upsert(200, body, batch_item=batch_item, email="a@example.com").kind == kind


# -- (d) engagement figures for a contact HubSpot no longer has are dropped, not retried for ever -----
@pytest.mark.parametrize("batch_errors", ["207", "400"])
def test_engagement_of_a_deleted_contact_is_dropped_not_retried(run, hubspot_fake, mailerlite_fake, monkeypatch,
                                                               batch_errors):
    hubspot_fake.tokens["hs-test-token"] |= {WRITE_SCOPE, SCHEMA_WRITE_SCOPE}
    hubspot_fake.batch_errors = batch_errors  # both readings: a per-item error, or the batch refused
    monkeypatch.setenv("SYNC_ENGAGEMENT", "true")
    ids = seed_contacts(hubspot_fake, 3)
    assert run().summary["engagement_updated"] == 3
    hubspot_fake.archive_contact(ids[1])  # deleted in HubSpot; the daily archived check has not run yet
    for i in range(3):
        mailerlite_fake.set_engagement(f"person{i}@example.com", sent=2, opens=1, clicks=0)
    with sqlite3.connect(run.state_db) as db:
        db.execute("UPDATE meta SET value='0' WHERE key=?", (engagement.DUE_KEY,))  # the interval has passed
    second = run()
    assert second.code == 0 and second.summary["engagement_updated"] == 2
    assert "no longer exist" in second.err
    with sqlite3.connect(run.state_db) as db:
        assert db.execute("SELECT COUNT(*) FROM engagement WHERE pending IS NOT NULL").fetchone()[0] == 0
    updates = len(hubspot_fake.requests_to("POST", UPDATE))
    third = run()
    assert third.summary["engagement_requests"] == 0  # nothing retried, nothing due
    assert len(hubspot_fake.requests_to("POST", UPDATE)) == updates
