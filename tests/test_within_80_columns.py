"""What a person reads fits 80 columns, measured on the output: the closing WARNING, a misspelt
setting's advisory, --check's notes, --dry-run --verbose. Only a command alone on its line may be
longer (an absolute path cannot be cut, a command broken in two cannot be pasted)."""

from __future__ import annotations

import re

from sync.sandbox.fakes.hubspot import SCHEMA_WRITE_SCOPE, WRITE_SCOPE
from tests.conftest import messages, seed_contacts

COLUMNS = 80


def too_wide(text: str):
    """Lines over 80 columns that are not one command alone on its line (indented, ending in --flag)."""
    return [line for line in text.splitlines()
            if len(line) > COLUMNS and not re.fullmatch(r"  \S*python\S* \S*main\.py( --?[a-z-]+( \S+)?)*", line)]


def test_the_warning_a_run_ends_with_fits_and_names_its_command_on_its_own_line(run, hubspot_fake):
    seed_contacts(hubspot_fake, 6)
    hubspot_fake.add_contact({"email": "not-an-email"}, modified_ms=1)
    hubspot_fake.add_contact({"firstname": "No address"}, modified_ms=1)
    result = run()
    assert result.code == 1
    lines = result.err.splitlines()
    assert lines[0].startswith("WARNING: full sync: read 8, ") and "rejected 1" in lines[0], result.err
    assert lines[1].startswith("  ") and lines[1].endswith(" --rejected") and len(lines) == 2
    assert too_wide(result.err) == []


def test_a_misspelt_setting_is_said_within_80_columns_with_the_command_apart(run, hubspot_fake, monkeypatch):
    monkeypatch.setenv("SYNC_CONSENT_SWEEP_HOURZ", "24")
    seed_contacts(hubspot_fake, 2)
    result = run()
    assert result.code == 0
    said = [m for m in messages(result.err) if "SYNC_CONSENT_SWEEP_HOURZ" in m]
    assert len(said) == 1 and "did you mean SYNC_CONSENT_SWEEP_HOURS?" in said[0]
    assert result.err.splitlines()[-1].strip().endswith(" --check")  # the command, alone
    assert too_wide(result.err) == []


def test_the_check_notes_fit_and_say_nothing_of_engagement_when_it_is_off(run, hubspot_fake, monkeypatch):
    seed_contacts(hubspot_fake, 2)
    off = run("--check")
    assert off.code == 0 and "engagement" not in off.out.lower()
    monkeypatch.setenv("SYNC_ENGAGEMENT", "true")
    hubspot_fake.tokens["hs-test-token"] |= {WRITE_SCOPE, SCHEMA_WRITE_SCOPE}
    on = run("--check")
    assert on.code == 0 and "note: engagement creates 6 HubSpot properties (group MailerLite)" in on.out
    assert too_wide(on.out) == []


def test_dry_run_verbose_speaks_as_every_other_output(run, hubspot_fake):
    """No timestamped log format of its own: every line starts as the others do (LEVEL: ...)."""
    seed_contacts(hubspot_fake, 3)
    result = run("--dry-run", "--verbose")
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert lines and all(re.match(r"(DEBUG|INFO|WARNING|ERROR): |  ", line) for line in lines), result.err
    assert not any(re.match(r"\d{4}-\d\d-\d\d", line) for line in lines)
    closing = [line for line in lines if "sync (dry run):" in line]
    assert closing and len(closing[-1]) <= COLUMNS
