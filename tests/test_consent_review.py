"""Review of the merged consent and adoption code (issues 22 and 24): each test drives main.py
against the fakes and failed on the merged code before its fix."""

from __future__ import annotations

import pytest

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


def _matching_subscribers(ml, n: int, unsubscribed: int) -> None:
    """What MailerLite already holds for seed_contacts' first n contacts; one of them unsubscribed."""
    for i in range(n):
        ml.add_subscriber(f"person{i}@example.com", status="unsubscribed" if i == unsubscribed else "active",
                          fields={"name": f"First{i}", "last_name": f"Last{i}", "company": f"Company {i % 7}",
                                  "city": "Ljubljana", "z_i_p": f"{1000 + i % 50}"})


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
    _matching_subscribers(mailerlite_fake, 5, unsubscribed=2)
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


@pytest.mark.parametrize("mode", [(), ("--full",)], ids=["hourly", "full"])
def test_a_dry_run_forecasts_a_merge_take_over_as_the_real_run_does(run, hubspot_fake, mailerlite_fake, mode):
    """A merge into a new record: the real run hands the merged-away record's subscriber to it; the
    dry run must not report that record as a duplicate of its own merged-away self (rejected, exit 1)
    nor, in a full pass, as a departure."""
    a, b = seed_contacts(hubspot_fake, 2)
    assert run().code == 0
    hubspot_fake.merge_contacts(a, b, new_id=True)
    dry = run("--dry-run", *mode)
    real = run(*mode)
    assert real.code == 0 and real.summary["rejected"] == 0, real.err
    assert dry.code == real.code, dry.err
    assert dry.summary["rejected"] == real.summary["rejected"]
    assert dry.summary["left_scope"] == real.summary["left_scope"]
    assert dry.summary["would_send"] == real.summary["created"] + real.summary["updated"] + real.summary["unsubscribed"]


def _state_dump(run):
    """Everything a run may change in the state file, except the run history (dry runs are listed there)."""
    import sqlite3

    db = sqlite3.connect(run.state_db)
    try:
        names = db.execute("SELECT name FROM sqlite_master WHERE type='table'")
        tables = [t for (t,) in names if t not in ("runs", "sqlite_sequence")]
        return {t: sorted(map(repr, db.execute(f"SELECT * FROM {t}"))) for t in sorted(tables)}
    finally:
        db.close()


@pytest.mark.parametrize("mode", [(), ("--full",)], ids=["hourly", "full"])
def test_a_dry_run_leaves_the_state_file_as_it_was(run, hubspot_fake, mailerlite_fake, mode):
    """Opt-outs, a merge, a deletion, an address change, a tombstone due for its sweep and a token
    without the consent scope: a dry run reads as the real run would and writes nothing."""
    from sync.sandbox.fakes.hubspot import CONSENT_READ_SCOPE
    from tests.conftest import HS_TOKEN
    ids = seed_contacts(hubspot_fake, 8)
    assert run().code == 0
    hubspot_fake.archive_contact(ids[7])
    assert run("--full").code == 0  # person7's address is now a tombstone
    hubspot_fake.update_contact(ids[0], {"hs_email_optout": "true"})
    hubspot_fake.merge_contacts(ids[1], ids[2], new_id=True)
    hubspot_fake.archive_contact(ids[3])
    hubspot_fake.update_contact(ids[4], {"email": "renamed@example.com"})
    mailerlite_fake.delete_subscriber("person5@example.com")
    hubspot_fake.tokens[HS_TOKEN] = hubspot_fake.tokens[HS_TOKEN] - {CONSENT_READ_SCOPE}
    before = _state_dump(run)
    writes = len([r for r in mailerlite_fake.log if r.method in ("POST", "PUT", "DELETE")])
    dry = run("--dry-run", *mode)
    assert dry.code in (0, 1), dry.err
    assert _state_dump(run) == before
    assert len([r for r in mailerlite_fake.log if r.method in ("POST", "PUT", "DELETE")]) == writes
    assert CONSENT_READ_SCOPE in dry.err  # said, as the real run will say it (once: remembered by that one)
    assert CONSENT_READ_SCOPE in run(*mode).err


def test_a_dry_run_plan_lists_the_unsubscribes_that_consent_by_address_makes(run, hubspot_fake, mailerlite_fake):
    """Addresses let go of (an address change, a merge) whose HubSpot consent by address is opted out:
    the real run unsubscribes them; the dry run's plan must say so, not "would leave"."""
    ids = seed_contacts(hubspot_fake, 4)
    assert run().code == 0
    hubspot_fake.update_contact(ids[0], {"email": "renamed@example.com"})
    hubspot_fake.set_address_consent("person0@example.com", unsubscribed_all=True)  # the old address
    hubspot_fake.merge_contacts(ids[1], ids[2], new_id=True)
    hubspot_fake.set_address_consent("person2@example.com", unsubscribed_all=True)  # the merged-away one
    dry = run("--dry-run", "--verbose")
    planned = {line.split("would unsubscribe ")[1].split()[0] for line in dry.err.splitlines()
               if "dry run: would unsubscribe " in line}
    before = {e: s["status"] for e, s in ((e, mailerlite_fake.subscriber(e)) for e in mailerlite_fake.by_email)}
    real = run()
    assert real.code == 0, real.err
    unsubscribed = {e for e, was in before.items()
                    if was == "active" and mailerlite_fake.subscriber(e)["status"] == "unsubscribed"}
    assert unsubscribed == {"person0@example.com", "person2@example.com"}
    assert planned == unsubscribed


def test_an_address_left_for_one_hubspot_refuses_is_followed_by_address(run, hubspot_fake, mailerlite_fake):
    """A contact changes its address to one that cannot be sent (rejected): HubSpot no longer holds the
    old address on any record, so the old address is let go as on any address change (read, then kept
    as a tombstone), and its later opt-out by address reaches MailerLite."""
    ids = seed_contacts(hubspot_fake, 3)
    assert run().code == 0
    hubspot_fake.update_contact(ids[0], {"email": "new address@example.com"})
    changed = run()
    assert changed.code == 1 and changed.summary["rejected"] == 1, changed.err
    hubspot_fake.set_address_consent("person0@example.com", unsubscribed_all=True)  # later, by address
    swept = run("--full")  # the consent sweep runs with every --full
    assert swept.code in (0, 1), swept.err
    assert mailerlite_fake.subscriber("person0@example.com")["status"] == "unsubscribed"
    assert mailerlite_fake.subscriber("person1@example.com")["status"] == "active"


def test_an_hourly_run_that_recreates_a_deleted_unsubscribed_subscriber_unsubscribes_it_again(
        run, hubspot_fake, mailerlite_fake):
    """An hourly run does not read the listing, so a changed contact whose unsubscribed subscriber was
    deleted in MailerLite is sent and MailerLite creates it (active). That answer, for an address the
    state knows as unsubscribed, is evidence: the address is unsubscribed again at once, and stays known."""
    ids = seed_contacts(hubspot_fake, 3)
    _matching_subscribers(mailerlite_fake, 3, unsubscribed=1)
    assert run().summary["not_reactivated"] == 1
    mailerlite_fake.delete_subscriber("person1@example.com")
    hubspot_fake.update_contact(ids[1], {"city": "Maribor"})
    hourly = run()
    assert hourly.code == 0, hourly.err
    assert mailerlite_fake.subscriber("person1@example.com")["status"] == "unsubscribed"
    assert hourly.summary["not_reactivated"] == 1 and hourly.summary["created"] == 0
    _full_keeps_it_inactive(run, mailerlite_fake, "person1@example.com")  # and it is still known as such


def test_a_dry_run_plan_lists_the_consent_sweeps_unsubscribes(run, hubspot_fake, mailerlite_fake):
    """A tombstone (an address the sync let go of) opted out later: the sweep of a --full run
    unsubscribes it; the dry run's plan lists that unsubscribe too, not only counts it."""
    ids = seed_contacts(hubspot_fake, 3)
    assert run().code == 0
    hubspot_fake.archive_contact(ids[2])
    assert run("--full").code == 0  # person2's address is let go of: a tombstone
    hubspot_fake.set_address_consent("person2@example.com", unsubscribed_all=True)
    dry = run("--dry-run", "--full", "--verbose")
    assert dry.summary["would_send"] == 1
    assert any("dry run: would unsubscribe person2@example.com" in line for line in dry.err.splitlines()), dry.err
    real = run("--full")
    assert real.summary["unsubscribed"] == 1
    assert mailerlite_fake.subscriber("person2@example.com")["status"] == "unsubscribed"


def test_adoption_keeps_one_owner_per_address(run, hubspot_fake, mailerlite_fake):
    """Two HubSpot contacts with one address: a first run that sends reports the second as a duplicate
    (--rejected); a first run that adopts must do the same, never record both as owning the address
    (they would then fight over it, and a departure of one would be blocked by the other)."""
    seed_contacts(hubspot_fake, 3)
    seed_contacts(hubspot_fake, 1, start=1)  # a second contact with person1's address
    _matching_subscribers(mailerlite_fake, 3, unsubscribed=-1)
    first = run()
    s = first.summary
    assert (s["adopted"], s["rejected"]) == (3, 1), first.err
    assert first.code == 1
