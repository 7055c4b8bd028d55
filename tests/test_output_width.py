"""What a person reads fits 80 columns (or the terminal): --check, --history, their problems."""

from __future__ import annotations

import json
import re

from sync import cli
from tests.conftest import seed_contacts
from tests.test_cli_subprocess import fake_env, run_main
from tests.test_setup_safety import client_b, project_of_env_files  # noqa: F401 (client_b: a fixture)

LONG_PROPERTY = "hs_analytics_first_touch_converting_campaign"  # a real HubSpot name: 44 characters


def test_check_fits_80_columns_with_hubspots_long_property_names(hubspot_fake, mailerlite_fake, tmp_path):
    # HubSpot's own property names run to 40-50 characters; beside a MailerLite field named after them,
    # --check's one-row-per-rule table was 117-128 columns in cron mail and a pipe.
    hubspot_fake.add_property(LONG_PROPERTY, "string", "First touch converting campaign")
    seed_contacts(hubspot_fake, 3, **{LONG_PROPERTY: "Spring webinar 2026"})
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(f'create_missing_fields = true\n[fields]\n{LONG_PROPERTY} = "first_touch_converting_campaign"\n')
    done = run_main(["--check", "--mapping", str(mapping)], fake_env(hubspot_fake, mailerlite_fake, tmp_path),
                    tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert max(len(line) for line in lines) <= 79, "\n".join(line for line in lines if len(line) > 79)
    # Nothing the wide table said is lost: each rule's names, types and a sample value.
    text = done.stdout
    for shown in (LONG_PROPERTY, "first_touch_converting_campaign", "Spring webinar", "firstname", "last_name",
                  "First0", "string", "text"):
        assert shown in text, shown


def test_check_keeps_the_one_row_table_when_it_fits(hubspot_fake, mailerlite_fake, tmp_path):
    seed_contacts(hubspot_fake, 3)
    done = run_main(["--check"], fake_env(hubspot_fake, mailerlite_fake, tmp_path), tmp_path)
    assert done.returncode == 0, done.stderr
    rows = done.stdout.splitlines()
    header = next(line for line in rows if "HubSpot property" in line)
    assert header.split() == ["HubSpot", "property", "HubSpot", "type", "MailerLite", "field", "type", "sample",
                              "values"]
    assert any(line.split()[:4] == ["firstname", "string", "name", "text"] for line in rows)
    assert max(len(line) for line in rows) <= 79


COUNT_ITEM = re.compile(r"[a-z]+(?: [a-z]+)* \d+")


def test_history_wraps_between_counts_never_between_a_name_and_its_number(hubspot_fake, mailerlite_fake, tmp_path):
    # In 80 columns a busy run's counts take two lines; "failed" at the end of one line and its "0" alone
    # on the next read as a different figure.
    seed_contacts(hubspot_fake, 150)
    hubspot_fake.add_contact({"email": "not-an-email"}, modified_ms=1)
    mailerlite_fake.add_subscriber("person7@example.com", status="unsubscribed")
    env = fake_env(hubspot_fake, mailerlite_fake, tmp_path)
    assert run_main([], env, tmp_path).returncode == 1
    shown = run_main(["--history"], {**env, "COLUMNS": "80"}, tmp_path)
    assert shown.returncode == 0
    counts = [line.strip() for line in shown.stdout.splitlines() if line.startswith("  ")]
    assert len(counts) >= 2, shown.stdout  # the test means something only when the counts wrap
    for line in counts:
        assert len(line) + 2 <= 79
        items = [item.strip() for item in line.rstrip(",").split(",")]
        assert all(COUNT_ITEM.fullmatch(item) for item in items), line


def test_check_and_history_fit_80_columns_and_json_keeps_every_field(run, hubspot_fake, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)  # not a terminal: 80 columns, as in cron mail
    seed_contacts(hubspot_fake, 5, company="Vereinigte Hüttenwerke und Maschinenfabriken Aktiengesellschaft")
    hubspot_fake.add_contact({"email": "bad"}, modified_ms=1)
    run()
    run("--dry-run")
    check = run("--check")
    assert "Mapping:" in check.out and "Vereinigte" in check.out
    run.capsys.readouterr()
    code = cli.main(["--env-file", str(run.env_file), "--history"])  # the text view (the runner adds --json)
    text = run.capsys.readouterr().out
    assert code == 0 and "rejected 1" in text and "dry run" in text
    for line in check.out.splitlines() + text.splitlines():
        assert len(line) < 80, line
    runs = json.loads(run("--history").out)
    assert [r["dry_run"] for r in runs] == [True, False]  # booleans, like the run summary's
    assert set(runs[0]) >= {"read", "created", "updated", "unchanged", "skipped", "rejected", "failed",
                            "not_reactivated", "left_scope", "started_at", "finished_at", "exit_code", "mode"}


def test_a_narrow_terminal_gets_narrower_history(run, hubspot_fake, monkeypatch):
    seed_contacts(hubspot_fake, 3)
    run()
    monkeypatch.setenv("COLUMNS", "50")
    run.capsys.readouterr()
    assert cli.main(["--env-file", str(run.env_file), "--history"]) == 0
    lines = run.capsys.readouterr().out.splitlines()
    assert len(lines) >= 3 and all(len(line) < 50 for line in lines)


def test_check_wraps_its_problems_to_the_terminal(hubspot_fake, mailerlite_fake, tmp_path):
    from tests.test_operations import run_in_pty
    seed_contacts(hubspot_fake, 3)
    mapping = tmp_path / "mapping.toml"
    mapping.write_text('create_missing_fields = false\n[fields]\ncompany = "employer_of_record_name"\n')
    code, screen, _ = run_in_pty(["--check", "--mapping", str(mapping)], fake_env(hubspot_fake, mailerlite_fake,
                                                                               tmp_path), tmp_path, columns=80,
                                 stdout_too=True)
    lines = screen.replace("\r", "").splitlines()
    assert code == 2 and "employer_of_record_name" in screen
    assert max(len(line) for line in lines) < 80, screen
    assert any(line.startswith("  - MailerLite has no field") for line in lines)  # the problem, wrapped
