"""An address MailerLite held as unsubscribed, bounced or junk is never created again as active,
also after it was deleted there (--full, hourly runs, write-back), end to end through main.py."""

from __future__ import annotations

from tests.common import matching_subscribers
from tests.conftest import seed_contacts


def _upserted(ml, since: int = 0):
    """(email, status sent) of every upsert (single or batch item) since log position `since`."""
    sent = []
    for r in ml.log[since:]:
        if r.method == "POST" and r.path == "/api/subscribers":
            sent.append((r.body["email"], r.body.get("status")))
        elif r.method == "POST" and r.path == "/api/batch":
            sent += [(i["body"]["email"], i["body"].get("status")) for i in r.body["requests"]
                     if str(i.get("path", "")).strip("/") == "api/subscribers"]
    return sent


def _full_keeps_it_inactive(run, ml, email: str) -> None:
    """A --full run after `email`'s subscriber was deleted in MailerLite: nothing makes it active."""
    mark = len(ml.log)
    full = run("--full")
    assert full.code in (0, 1), full.err
    back = ml.subscriber(email)
    assert back is None or back["status"] != "active", "an unsubscribed person was made active again"
    assert (email, None) not in _upserted(ml, mark)


def test_full_never_recreates_as_active_a_subscriber_who_unsubscribed_in_mailerlite_then_was_deleted(
        run, hubspot_fake, mailerlite_fake):
    """Adopted as unsubscribed (not_reactivated), then deleted in MailerLite's app: drift repair
    must not bring the address back as an active subscriber."""
    seed_contacts(hubspot_fake, 5)
    matching_subscribers(mailerlite_fake, 5, unsubscribed=2)
    first = run()
    assert first.code == 0, first.err
    assert first.summary["not_reactivated"] == 1
    mailerlite_fake.delete_subscriber("person2@example.com")
    _full_keeps_it_inactive(run, mailerlite_fake, "person2@example.com")


def test_full_never_recreates_as_active_one_whose_unsubscribe_was_written_back_then_deleted(
        run, hubspot_fake, mailerlite_fake, monkeypatch):
    """Unsubscribed in MailerLite (written back to HubSpot's own mailerlite_status, not its opt-out),
    then deleted there: the written-back status is the evidence that keeps it from coming back active."""
    import sqlite3

    from sync import write_back as module
    from sync.sandbox.fakes.hubspot import SCHEMA_WRITE_SCOPE, WRITE_SCOPE
    hubspot_fake.tokens["hs-test-token"] |= {WRITE_SCOPE, SCHEMA_WRITE_SCOPE}
    monkeypatch.setenv("SYNC_WRITE_BACK", "true")
    seed_contacts(hubspot_fake, 4)
    assert run().summary["created"] == 4
    mailerlite_fake.subscriber("person1@example.com")["status"] = "unsubscribed"
    db = sqlite3.connect(run.state_db)
    db.execute("DELETE FROM meta WHERE key=?", (module.DUE_KEY,))  # write-back due now
    db.commit()
    db.close()
    assert run().summary["written_back"] == 1
    mailerlite_fake.delete_subscriber("person1@example.com")
    _full_keeps_it_inactive(run, mailerlite_fake, "person1@example.com")


def test_an_hourly_run_that_recreates_a_deleted_unsubscribed_subscriber_unsubscribes_it_again(
        run, hubspot_fake, mailerlite_fake):
    """An hourly run does not read the listing, so a changed contact whose unsubscribed subscriber was
    deleted in MailerLite would be sent and created (active). The consent ledger knows the address as
    unsubscribed: it is looked up first (issue 28), not created again, and stays known."""
    ids = seed_contacts(hubspot_fake, 3)
    matching_subscribers(mailerlite_fake, 3, unsubscribed=1)
    assert run().summary["not_reactivated"] == 1
    mailerlite_fake.delete_subscriber("person1@example.com")
    hubspot_fake.update_contact(ids[1], {"city": "Maribor"})
    hourly = run()
    assert hourly.code == 0, hourly.err
    assert mailerlite_fake.subscriber("person1@example.com") is None  # not created again, not even for a moment
    assert hourly.summary["not_reactivated"] == 1 and hourly.summary["created"] == 0
    _full_keeps_it_inactive(run, mailerlite_fake, "person1@example.com")  # and it is still known as such
