"""A dry run plans exactly what the real run would do (creates, updates, unsubscribes, stored
actions, the sweep, archived contacts, write-back) and writes nothing, listed by --verbose and
--output."""

from __future__ import annotations

import csv
import sqlite3
import stat
from dataclasses import replace

import pytest

from sync import write_back
from sync.sandbox.fakes.hubspot import SCHEMA_WRITE_SCOPE, WRITE_SCOPE
from tests.common import GROUPS, HUBSPOT_BATCH_UPDATE
from tests.conftest import FAST, HS_TOKEN, seed_contacts
from tests.test_consent import groups_of, mapping_file


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




def test_a_dry_run_plan_lists_the_stored_actions_the_real_run_tries_first(run, hubspot_fake, mailerlite_fake):
    """An unsubscribe and a group removal MailerLite did not take are stored; the next real run tries
    them before anything else. A dry run's plan left them out, while saying "consent pending"."""
    ids = seed_contacts(hubspot_fake, 3, lifecyclestage="lead")
    path = mapping_file(run, GROUPS)
    assert run("--mapping", path).code == 0
    hubspot_fake.update_contact(ids[0], {"hs_email_optout": "true"})
    hubspot_fake.archive_contact(ids[1])
    mailerlite_fake.failing_emails["person0@example.com"] = 1000
    mailerlite_fake.faults.only_paths = ("/api/subscribers/",)
    mailerlite_fake.faults.script.extend(["503"] * 40)  # the group removal's DELETEs
    failed = run("--mapping", path, "--full")
    assert failed.code == 1 and failed.summary["consent_pending"] == 2, failed.err
    mailerlite_fake.failing_emails.clear()
    mailerlite_fake.faults.script.clear()
    dry = run("--mapping", path, "--dry-run", "--verbose")
    planned = [line.split("dry run: ")[1] for line in dry.err.splitlines() if "dry run: would" in line]
    real = run("--mapping", path)
    assert real.code == 0 and real.summary["consent_pending"] == 0, real.err
    assert mailerlite_fake.subscriber("person0@example.com")["status"] == "unsubscribed"
    assert groups_of(mailerlite_fake, "person1@example.com") == []
    assert any(p.startswith("would unsubscribe person0@example.com") for p in planned), planned
    assert any(p.startswith("would leave groups person1@example.com") for p in planned), planned




# -- (c) a dry run does the reads a real run does, and meets the guards it meets -----------------------
def mailerlite_writes(ml) -> int:
    return sum(1 for r in ml.log if r.method in ("POST", "PUT", "DELETE"))


@pytest.mark.parametrize("archived", [1, 30])
def test_a_dry_run_reads_the_archived_contacts_as_the_real_run_would(run, hubspot_fake, mailerlite_fake, archived):
    ids = seed_contacts(hubspot_fake, 40)
    assert run().code == 0
    for cid in ids[:archived]:
        hubspot_fake.archive_contact(cid)
    due = replace(FAST, archived_check_ms=0)  # the daily archived check is due
    writes = mailerlite_writes(mailerlite_fake)
    dry = run("--dry-run", tunables=due)
    assert mailerlite_writes(mailerlite_fake) == writes, "a dry run writes nothing"
    assert all(mailerlite_fake.subscriber(f"person{i}@example.com")["status"] == "active" for i in range(40))
    real = run(tunables=due)
    assert (dry.code, dry.summary["left_scope"], dry.summary["mass_leave_held"]) == \
        (real.code, real.summary["left_scope"], real.summary["mass_leave_held"])
    if archived == 30:  # the mass-leave guard stops both, with the same line
        assert dry.code == 3 and dry.summary["mass_leave_held"] == 30 and "would leave the sync" in dry.err
    else:
        assert dry.code == 0 and dry.summary["left_scope"] == 1


def test_a_dry_run_reports_an_unsubscribe_it_would_send_on_its_own(run, hubspot_fake, mailerlite_fake):
    ids = seed_contacts(hubspot_fake, 2)
    assert run().code == 0
    # The second contact takes the first one's address and opts out: a duplicate, whose opt-out wins.
    hubspot_fake.update_contact(ids[1], {"email": "person0@example.com", "hs_email_optout": "true"})
    writes = mailerlite_writes(mailerlite_fake)
    dry = run("--dry-run")
    assert mailerlite_writes(mailerlite_fake) == writes
    assert dry.summary["would_send"] == 1 and dry.summary["left_scope"] == 1
    real = run()
    assert (real.summary["unsubscribed"], real.summary["left_scope"]) == (2, 1), real.err
    assert mailerlite_fake.subscriber("person0@example.com")["status"] == "unsubscribed"


def test_a_dry_run_reads_and_counts_the_write_back_as_the_real_run_would(run, hubspot_fake, mailerlite_fake,
                                                                         monkeypatch):
    hubspot_fake.tokens["hs-test-token"] |= {WRITE_SCOPE, SCHEMA_WRITE_SCOPE}
    monkeypatch.setenv("SYNC_WRITE_BACK", "true")
    seed_contacts(hubspot_fake, 3)
    assert run().code == 0  # the first pass: nothing inactive yet
    mailerlite_fake.add_subscriber("elsewhere@example.com", status="unsubscribed")  # no HubSpot contact
    mailerlite_fake.subscriber("person1@example.com")["status"] = "unsubscribed"
    with sqlite3.connect(run.state_db) as db:
        db.execute("UPDATE meta SET value='0' WHERE key=?", (write_back.DUE_KEY,))  # the interval has passed
    updates = len(hubspot_fake.requests_to("POST", HUBSPOT_BATCH_UPDATE))
    dry = run("--dry-run")
    assert len(hubspot_fake.requests_to("POST", HUBSPOT_BATCH_UPDATE)) == updates, "a dry run writes nothing to HubSpot"
    real = run()
    assert (dry.summary["write_back_unmatched"], real.summary["write_back_unmatched"]) == (1, 1)
    assert real.summary["written_back"] == 1


def test_a_dry_run_lists_each_planned_action_with_the_fields_that_change(run, hubspot_fake, mailerlite_fake,
                                                                         tmp_path):
    ids = seed_contacts(hubspot_fake, 6)
    assert run().code == 0
    hubspot_fake.update_contact(ids[0], {"city": "Maribor"})  # a value changes
    hubspot_fake.update_contact(ids[1], {"company": ""})  # a field is emptied
    hubspot_fake.update_contact(ids[2], {"hs_email_optout": "true"})  # opts out
    hubspot_fake.archive_contact(ids[3])  # leaves
    new = hubspot_fake.add_contact({"email": "=new@example.com", "firstname": "Zoë"})
    writes_before = len(mailerlite_fake.log)
    plan_file = tmp_path / "plan.csv"
    result = run("--dry-run", "--full", "--verbose", "--output", str(plan_file))
    assert result.code == 0 and result.summary["would_send"] == 4
    assert len(mailerlite_fake.log) == writes_before or all(
        entry.method == "GET" for entry in mailerlite_fake.log[writes_before:])  # nothing written
    rows = {row["hubspot_id"]: row for row in csv.DictReader(plan_file.open())}
    assert stat.S_IMODE(plan_file.stat().st_mode) == 0o600  # addresses: owner-only
    # --full reads MailerLite's listing (adoption.py): the fields are exactly those that differ from it.
    assert (rows[ids[0]]["action"], rows[ids[0]]["fields"]) == ("update", "city")
    assert (rows[ids[1]]["action"], rows[ids[1]]["fields"]) == ("update", "company")
    assert rows[ids[2]]["action"] == "update as unsubscribed"
    assert rows[ids[3]]["action"] in ("leave", "leave groups", "unsubscribe")
    assert rows[ids[3]]["email"] == "person3@example.com" and "HubSpot" in rows[ids[3]]["detail"]
    assert rows[new]["action"] == "create" and rows[new]["email"] == "'=new@example.com"  # no formula
    assert "name" in rows[new]["fields"].split(", ")
    assert set(rows) == {ids[0], ids[1], ids[2], ids[3], new}  # the unchanged contacts are not listed
    lines = [line for line in result.err.splitlines() if "dry run: would" in line]
    assert len(lines) == 5 and any("would create =new@example.com" in line for line in lines)


def test_a_plain_dry_run_lists_nothing(run, hubspot_fake):
    seed_contacts(hubspot_fake, 3)
    result = run("--dry-run")
    assert result.code == 0 and result.summary["would_send"] == 3 and "dry run: would" not in result.err


def test_output_without_rejected_or_dry_run_is_refused(run, tmp_path):
    with pytest.raises(SystemExit) as stopped:
        run("--output", str(tmp_path / "x.csv"))
    assert stopped.value.code == 2 and not (tmp_path / "x.csv").exists()
