"""An operations review of the merged setup (issues 23 and 24), as a new user and an administrator of
several clients would meet it: each test drives main.py against the fakes."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from sync import cli
from sync.invocation import COMMAND
from tests.conftest import HS_TOKEN, ML_TOKEN, seed_contacts
from tests.test_cli_subprocess import fake_env, run_main
from tests.test_setup_safety import client_b, project_of_env_files  # noqa: F401 (client_b: a fixture)


def client_env_file(folder: Path, hubspot, mailerlite, name: str = "clientB.env") -> Path:
    """A client's own settings file, with no SYNC_STATE_DB: its state follows the file."""
    folder.mkdir(exist_ok=True)
    env_file = folder / name
    env_file.write_text(f"HUBSPOT_ACCESS_TOKEN={HS_TOKEN}\nMAILERLITE_API_KEY={ML_TOKEN}\n"
                        f"HUBSPOT_BASE_URL={hubspot.url}\nMAILERLITE_BASE_URL={mailerlite.base_url}\n")
    env_file.chmod(0o600)
    return env_file


# -- a hint printed for one client must not run another client's command --------------------------------------

def test_hints_after_an_env_file_run_name_that_env_file(hubspot_fake, mailerlite_fake, tmp_path):
    # Client B lives in its own --env-file, so its state is clientB.state.db beside it. The hints its runs
    # print go into cron mail and get pasted as they are: without --env-file they would show (or sync)
    # the default .env's client instead.
    env_file = client_env_file(tmp_path / "clients", hubspot_fake, mailerlite_fake)
    again = f"{COMMAND} --env-file {shlex.quote(str(env_file))}"
    nothing_yet = run_main(["--history", "--env-file", str(env_file)], {}, tmp_path)
    assert nothing_yet.returncode == 2
    assert f"run {again} first" in nothing_yet.stderr, nothing_yet.stderr

    seed_contacts(hubspot_fake, 5)
    hubspot_fake.add_contact({"email": "not-an-email"}, modified_ms=1)
    done = run_main(["--env-file", str(env_file)], {"SYNC_FULL_INTERVL": "1"}, tmp_path)
    assert done.returncode == 1
    assert f"(which and why: {again} --rejected)" in done.stderr, done.stderr
    assert f"{again} --check repeats it" in done.stderr, done.stderr  # the misspelt setting's advisory
    shown = run_main(["--rejected", "--env-file", str(env_file)], {}, tmp_path)
    assert shown.returncode == 0 and "not-an-email" in shown.stdout

    # Without --env-file the hints stay as they were.
    default = run_main([], {"HUBSPOT_ACCESS_TOKEN": HS_TOKEN, "MAILERLITE_API_KEY": ML_TOKEN,
                            "HUBSPOT_BASE_URL": hubspot_fake.url, "MAILERLITE_BASE_URL": mailerlite_fake.base_url,
                            "SYNC_STATE_DB": str(tmp_path / "a.db")}, tmp_path)
    assert f"(which and why: {COMMAND} --rejected)" in default.stderr, default.stderr


# -- a mapping typo is found by the first run after the edit, idle or not -------------------------------------

def test_a_typo_in_an_edited_mapping_stops_the_next_idle_run(hubspot_fake, mailerlite_fake, tmp_path):
    # The hourly run after an edit is usually idle: it read no contact, so it never met the misspelt
    # property and exited 0 (healthcheck green) until some contact changed, hours or days later.
    seed_contacts(hubspot_fake, 5)
    env = fake_env(hubspot_fake, mailerlite_fake, tmp_path)
    mapping = tmp_path / "mapping.toml"
    mapping.write_text('create_missing_fields = true\n[fields]\njobtitle = "job_title"\n')
    env["SYNC_MAPPING_FILE"] = str(mapping)
    assert run_main([], env, tmp_path).returncode == 0
    assert run_main([], env, tmp_path).returncode == 0

    mapping.write_text('create_missing_fields = true\n[fields]\njob_titel = "job_title"\n')
    hubspot_fake.log.clear()
    mailerlite_fake.log.clear()
    typo = run_main([], env, tmp_path)
    assert typo.returncode == 2, typo.stderr
    assert "job_titel (did you mean jobtitle?)" in typo.stderr and len(typo.stderr.splitlines()) == 1
    assert [r for r in mailerlite_fake.log if r.method != "GET"] == []

    # Fixed: the first run after the edit checks the names once; the idle runs after it cost what they did.
    mapping.write_text('create_missing_fields = true\n[fields]\njobtitle = "job_title"\n')
    assert run_main([], env, tmp_path).returncode == 0
    hubspot_fake.log.clear()
    mailerlite_fake.log.clear()
    assert run_main([], env, tmp_path).returncode == 0
    assert (len(hubspot_fake.log), len(mailerlite_fake.log)) == (2, 1)


# -- --check within 80 columns, whatever the property names ---------------------------------------------------

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


# -- --history wraps between counts, never inside one ---------------------------------------------------------

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


# -- adding a second client to a working install, as README's "Several clients" says --------------------------

def test_a_second_client_added_beside_a_working_install_starts_its_own_state(run, tmp_path, monkeypatch,
                                                                              hubspot_fake, mailerlite_fake,
                                                                              client_b):  # noqa: F811
    # Client A has run for months from .env beside main.py (its state: sync_state.db there). The admin
    # adds client B as the README says: clientB.env and a cron line with --env-file. B's first run
    # stopped (exit 2) because the shared state exists and "might be B's", though every run recorded
    # in it came from .env: a new user's first try of the documented setup failed.
    hs_b, ml_b = client_b
    project = project_of_env_files(tmp_path, monkeypatch)
    seed_contacts(hs_b, 6, start=100)
    seed_contacts(hubspot_fake, 4)
    client_env_file(project, hubspot_fake, mailerlite_fake, name=".env")
    assert cli.main(["--quiet"]) == 0
    assert (project / "sync_state.db").exists()

    env_b = client_env_file(tmp_path / "clients", hs_b, ml_b)
    assert cli.main(["--quiet", "--env-file", str(env_b)]) == 0, run.capsys.readouterr().err
    assert len(ml_b.subscribers) == 6 and len(mailerlite_fake.subscribers) == 4
    assert (tmp_path / "clients" / "clientB.state.db").exists()
    assert cli.main(["--quiet"]) == 0  # A goes on with its own state, untouched by B
    assert len(mailerlite_fake.subscribers) == 4

    # A shared state whose runs came from this very file (an older version ran it with the shared state)
    # is still this client's: the run stops and says how to move it, as before (a state with no record of
    # its settings file too: test_setup_safety).
    shared = project / "sync_state.db"
    shared.unlink()
    env_c = client_env_file(tmp_path / "clients", hubspot_fake, mailerlite_fake, name="clientC.env")
    settings_c = env_c.read_text()
    env_c.write_text(settings_c + f"SYNC_STATE_DB={shared}\n")
    assert cli.main(["--quiet", "--env-file", str(env_c)]) == 0
    env_c.write_text(settings_c)
    run.capsys.readouterr()
    assert cli.main(["--quiet", "--env-file", str(env_c)]) == 2
    assert f"mv {shared} {tmp_path / 'clients' / 'clientC.state.db'}" in run.capsys.readouterr().err
