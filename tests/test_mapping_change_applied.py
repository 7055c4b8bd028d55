"""A changed mapping is applied by itself: the first run after the change compares every contact
once (only what differs goes) and says so in one line; a dry run says the next run will."""

from __future__ import annotations

import sqlite3

import pytest

from sync.mapping import Mapping
from sync.mapping_change import FINGERPRINT_KEY, fingerprint
from tests.conftest import seed_contacts

BEFORE = 'create_missing_fields = true\n[fields]\nfirstname = "name"\n'
AFTER = BEFORE + 'jobtitle = "job_title"\n[groups]\nall = ["Newsletter"]\n'
CHANGED_LINE = "the mapping changed: every contact is compared once"


def write_mapping(run, text: str) -> str:
    path = run.tmp_path / "mapping.toml"
    path.write_text(text)
    return str(path)


def groups_of(ml, email):
    return sorted(ml.groups[g]["name"] for g in ml.subscriber(email)["groups"])


def test_an_added_field_and_group_reach_every_contact_on_the_next_run(run, hubspot_fake, mailerlite_fake):
    seed_contacts(hubspot_fake, 5, jobtitle="CTO")
    path = write_mapping(run, BEFORE)
    assert run("--mapping", path).summary["created"] == 5
    assert run("--mapping", path).summary["mode"] == "incremental"  # nothing changed: nothing compared
    write_mapping(run, AFTER)

    dry = run("--mapping", path, "--dry-run", "--verbose")
    assert "the mapping changed: the next run compares every contact once" in dry.err
    assert dry.summary["mode"] == "full" and dry.summary["would_send"] == 5
    assert mailerlite_fake.subscriber("person0@example.com")["fields"].get("job_title") is None

    applied = run("--mapping", path, "--verbose")
    assert applied.err.count(CHANGED_LINE) == 1
    assert applied.summary["mode"] == "full" and applied.summary["updated"] == 5, applied.err
    for i in range(5):
        sub = mailerlite_fake.subscriber(f"person{i}@example.com")
        assert sub["fields"]["job_title"] == "CTO" and groups_of(mailerlite_fake, sub["email"]) == ["Newsletter"]

    after = run("--mapping", path, "--verbose")  # applied: the runs after it are incremental again
    assert after.summary["mode"] == "incremental" and CHANGED_LINE not in after.err


def test_a_change_applied_by_a_full_pass_is_not_applied_again(run, hubspot_fake, mailerlite_fake):
    seed_contacts(hubspot_fake, 3)
    path = write_mapping(run, BEFORE)
    run("--mapping", path)
    write_mapping(run, AFTER)
    assert run("--mapping", path, "--full").summary["updated"] == 3
    assert run("--mapping", path).summary["mode"] == "incremental"


def test_only_what_differs_is_sent_in_the_pass_a_change_starts(run, hubspot_fake, mailerlite_fake):
    """A change that leaves most subscribers as they were (a field only some contacts have) sends
    only those it changes: the pass compares with MailerLite's listing, as --full does."""
    seed_contacts(hubspot_fake, 4)
    hubspot_fake.add_contact({"email": "titled@example.com", "jobtitle": "CTO"}, modified_ms=1)
    path = write_mapping(run, BEFORE)
    run("--mapping", path)
    write_mapping(run, BEFORE + 'jobtitle = "job_title"\n')
    result = run("--mapping", path)
    assert result.summary["mode"] == "full" and result.summary["updated"] == 1
    assert result.summary["unchanged"] == 4


def test_turning_engagement_on_changes_nothing_sent_and_reads_no_contact_again(run, hubspot_fake, mailerlite_fake):
    seed_contacts(hubspot_fake, 3)
    path = write_mapping(run, BEFORE)
    run("--mapping", path)
    write_mapping(run, "mass_leave_min = 40\n" + BEFORE)
    assert run("--mapping", path).summary["mode"] == "incremental"


def test_a_state_from_an_earlier_version_is_compared_once(run, hubspot_fake, mailerlite_fake):
    """No fingerprint recorded (an earlier version's state): nothing tells whether the mapping was
    edited since that version's last --full, so one full pass, said in one line, then incremental."""
    seed_contacts(hubspot_fake, 3)
    path = write_mapping(run, BEFORE)
    run("--mapping", path)
    with sqlite3.connect(run.state_db) as db:
        db.execute("DELETE FROM meta WHERE key=?", (FINGERPRINT_KEY,))
    upgraded = run("--mapping", path, "--verbose")
    assert upgraded.summary["mode"] == "full" and upgraded.summary["created"] == 0
    assert "no mapping recorded yet: every contact is compared once" in upgraded.err
    assert run("--mapping", path).summary["mode"] == "incremental"


def test_a_first_run_says_nothing_about_the_mapping(run, hubspot_fake, mailerlite_fake):
    seed_contacts(hubspot_fake, 2)
    first = run("--mapping", write_mapping(run, BEFORE), "--verbose")
    assert first.summary["mode"] == "full" and "compared once" not in first.err


@pytest.mark.parametrize("changed", [
    Mapping.default(static_groups=("Newsletter",)),
    Mapping.default(scope_lists=("7",)),
    Mapping.default(optout_properties=("hs_email_optout", "hs_email_optout_42")),
    Mapping.default(scope_where=(("lifecyclestage", frozenset({"customer"})),)),
])
def test_what_changes_what_is_sent_changes_the_fingerprint(changed):
    assert fingerprint(changed) != fingerprint(Mapping.default())


@pytest.mark.parametrize("same", [
    Mapping.default(engagement=True), Mapping.default(write_back=True), Mapping.default(mass_leave_percent=50.0),
    Mapping.default(on_leave="unsubscribe"), Mapping.default(create_missing_fields=True),
])
def test_what_changes_nothing_sent_keeps_the_fingerprint(same):
    assert fingerprint(same) == fingerprint(Mapping.default())


def test_the_fingerprint_does_not_depend_on_set_order():
    one = Mapping.default(scope_where=(("lifecyclestage", frozenset({"customer", "lead", "evangelist"})),))
    two = Mapping.default(scope_where=(("lifecyclestage", frozenset({"evangelist", "customer", "lead"})),))
    assert fingerprint(one) == fingerprint(two)
