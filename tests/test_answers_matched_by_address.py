"""MailerLite's answers are matched to contacts by address (never by position), in any spelling of
the address."""

from __future__ import annotations

import sqlite3

import pytest

from sync import mailerlite_answers as answers
from sync.mailerlite_answers import classify_upsert
from tests.conftest import seed_contacts


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
    stranger = mailerlite_fake.subscriber("stranger@elsewhere.example")
    assert stranger is None or stranger["id"] not in ids.values()
    assert result.err.count("does not understand") == 1  # said once; the rest of the run sends singles
    # Only the items whose answer did not name their own address went again, on their own.
    singles = mailerlite_fake.requests_to("POST", "/api/subscribers")
    assert len(singles) == {"reversed": 50, "foreign": 1}[disorder]


SUB = {"id": "7", "email": "a@example.com"}


@pytest.mark.parametrize("body,batch_item,kind", [
    ({"data": SUB}, True, answers.WRITTEN),
    ({"data": {**SUB, "email": " A@Example.com "}}, True, answers.WRITTEN),  # the same address, as MailerLite writes it
    ({"data": {**SUB, "email": "b@example.com"}}, True, answers.NOT_UNDERSTOOD),  # someone else's subscriber
    ({"data": {**SUB, "email": "a@xn--bcher-kva.example"}}, True, answers.NOT_UNDERSTOOD),
    ({"data": {**SUB, "email": "b@example.com"}}, False, answers.RETRY),
    ({"data": {"id": "7"}}, True, answers.NOT_UNDERSTOOD),  # a batch item must say whose it is
    ({"data": {"id": "7"}}, False, answers.WRITTEN),  # a single request's answer can only be its own
])
def test_a_success_is_about_the_address_sent(body, batch_item, kind):
    assert classify_upsert(200, body, batch_item=batch_item, email="a@example.com").kind == kind


@pytest.mark.parametrize("sent,answered", [
    ("a@bücher.example", "a@xn--bcher-kva.example"),  # an international domain, as punycode
    ("a@xn--bcher-kva.example", "A@Bücher.example"),
    ("a@" + "x" * 70 + ".example", "a@" + "x" * 70 + ".example"),  # a label IDNA refuses: compared as it is
])
def test_one_address_in_another_spelling_is_the_same_address(sent, answered):
    body = {"data": {"id": "7", "email": answered}}
    assert classify_upsert(200, body, batch_item=True, email=sent).kind == answers.WRITTEN
