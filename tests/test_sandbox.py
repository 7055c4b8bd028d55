"""`python main.py --sandbox`: the real sync, no account, nothing leaves the machine."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sync import cli
from sync.config import PROJECT_DIR
from tests.conftest import FAST

REAL_STATE = PROJECT_DIR / "sync_state.db"


@pytest.fixture
def sandbox(monkeypatch, tmp_path, capsys):
    for key in list(os.environ):
        if key.startswith(("HUBSPOT_", "MAILERLITE_", "SYNC_", "HEALTHCHECK_")):
            monkeypatch.delenv(key)
    before = REAL_STATE.stat().st_mtime if REAL_STATE.exists() else None

    def run(*args):
        capsys.readouterr()
        code = cli.main(["--sandbox", *args], FAST, sandbox_dir=tmp_path / "sandbox")
        out, err = capsys.readouterr()
        return code, out, err

    yield run
    after = REAL_STATE.stat().st_mtime if REAL_STATE.exists() else None
    assert before == after, "the sandbox touched the real state file"


def test_sandbox_runs_the_real_sync_on_sample_data(sandbox):
    import json
    code, out, err = sandbox("--json")
    assert code == 1  # the sample holds one invalid address, reported as rejected
    summary = json.loads(out.strip().splitlines()[-1])
    assert (summary["read"], summary["created"], summary["updated"], summary["skipped"], summary["rejected"],
            summary["failed"]) == (300, 295, 3, 1, 1, 0)
    assert "Traceback" not in err


def test_sandbox_shows_what_mailerlite_holds_and_what_next(sandbox):
    code, out, _ = sandbox()
    assert code == 1
    assert "MailerLite (sandbox) now holds 298 subscribers" in out
    assert "unsubscribed" in out and "bounced" in out and "From HubSpot" in out
    assert "job_title=" in out and "employees=" in out  # the example mapping's custom fields
    assert "python main.py --check" in out
    assert "one invalid address on purpose ('not-an-email')" in out  # why this first run exits 1
    # The hints work as printed.
    assert "python main.py --sandbox --rejected" in out and "python main.py --sandbox --history" in out
    history = sandbox("--history")
    assert history[0] == 0 and "full" in history[1] and "created 295" in history[1]
    rejected = sandbox("--rejected")
    assert rejected[0] == 0 and "not-an-email" in rejected[1]


def test_the_sandbox_keeps_its_accounts_between_runs_until_reset(sandbox):
    import json
    first = json.loads(sandbox("--json")[1].splitlines()[-1])
    assert (first["mode"], first["created"], first["exit_code"]) == ("full", 295, 1)
    code, out, _ = sandbox()
    assert code == 0 and "Nothing changed in HubSpot, nothing sent" in out
    assert "now holds 298 subscribers" in out  # MailerLite kept what the first run sent
    again = json.loads(sandbox("--json")[1].splitlines()[-1])
    assert (again["mode"], again["created"], again["updated"], again["exit_code"]) == ("incremental", 0, 0, 0)
    assert again["mailerlite_requests"] == 1  # the key check every run makes
    assert sandbox("--reset")[:2] == (0, "The sandbox starts over: the next python main.py --sandbox runs on fresh "
                                         "sample data.\n")  # only that: no run, no exit 1 for its invalid address
    code, out, _ = sandbox("--json")
    assert json.loads(out.splitlines()[-1])["created"] == 295  # fresh sample data again


def test_touch_edits_a_few_contacts_and_only_those_go(sandbox):
    import json
    sandbox()
    code, out, _ = sandbox("--touch", "4")
    assert code == 0 and "Edited 4 sample contacts" in out and "sent 4:" in out
    summary = json.loads(sandbox("--touch", "2", "--json")[1].splitlines()[-1])
    # The last run's edits may be read again (the bookmark keeps a safety margin); only new ones go.
    assert (summary["updated"], summary["created"]) == (2, 0) and summary["read"] >= 2
    code, out, _ = sandbox()
    assert code == 0 and "nothing sent" in out  # the edits were sent once, not again


def test_rejected_after_a_dry_run_says_a_dry_run_records_nothing(sandbox):
    assert sandbox("--dry-run")[0] == 1
    code, out, err = sandbox("--rejected")
    assert code == 0 and "a dry run records nothing" in err
    assert out.strip().splitlines() == ["email,hubspot_id,kind,reason,attempts,first_seen,last_seen"]


def test_the_real_reports_point_to_the_sandbox_after_a_sandbox_run(sandbox, tmp_path, capsys):
    sandbox()
    env_file = tmp_path / "empty.env"
    env_file.write_text(f"SYNC_STATE_DB={tmp_path / 'none' / 'state.db'}\n")
    capsys.readouterr()
    # The same sandbox folder as the sandbox's run (the default one depends on what ran before).
    code = cli.main(["--rejected", "--env-file", str(env_file)], FAST, sandbox_dir=tmp_path / "sandbox")
    err = capsys.readouterr().err
    assert code == 2 and "python main.py --sandbox --rejected" in err


def test_the_sandbox_does_not_import_the_command_line():
    # #17: one direction only, cli -> sandbox.
    done = subprocess.run([sys.executable, "-c", "import sys, sync.sandbox; print('sync.cli' in sys.modules)"],
                          cwd=PROJECT_DIR, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
    for source in (PROJECT_DIR / "sync" / "sandbox").rglob("*.py"):
        imports = [line for line in source.read_text().splitlines() if line.lstrip().startswith(("from ", "import "))]
        assert not [line for line in imports if "cli" in line.replace(",", " ").replace(".", " ").split()], source


def test_a_mapping_file_changes_the_result(sandbox, tmp_path):
    mapping = tmp_path / "mine.toml"
    mapping.write_text('create_missing_fields = true\n[fields]\njobtitle = "role"\ncity = false\n'
                       'lifecyclestage = { field = "stage", transform = "label" }\n')
    code, out, _ = sandbox("--mapping", str(mapping))
    assert code == 1
    assert "role=" in out and "stage=" in out and "city=" not in out and "job_title=" not in out


def test_the_sandbox_ignores_real_settings_and_stays_on_this_machine(sandbox, monkeypatch, _no_internet):
    monkeypatch.setenv("HUBSPOT_BASE_URL", "https://api.hubapi.com")
    monkeypatch.setenv("MAILERLITE_BASE_URL", "https://connect.mailerlite.com/api")
    monkeypatch.setenv("HEALTHCHECK_URL", "https://hc-ping.com/not-to-be-called")
    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", "a-real-token")
    code, out, _ = sandbox()
    assert code == 1 and "now holds 298 subscribers" in out
    assert _no_internet == []  # every connection went to 127.0.0.1


def test_dry_run_and_check_in_the_sandbox(sandbox):
    code, out, _ = sandbox("--dry-run")
    assert code == 1 and "now holds 3 subscribers" in out  # only the ones seeded before the run
    code, out, _ = sandbox("--check")
    assert code == 0 and "All checks passed." in out


def test_sandbox_from_a_fresh_copy_in_a_real_process(tmp_path):
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=PROJECT_DIR,
                           capture_output=True, text=True, check=True).stdout.split()
    clone = tmp_path / "clone"
    for name in files:
        if (PROJECT_DIR / name).is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(PROJECT_DIR / name, clone / name)
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HUBSPOT_", "MAILERLITE_", "SYNC_"))}
    env.update(HOME=str(home), TMPDIR=str(tmp_path))
    done = subprocess.run([sys.executable, str(clone / "main.py"), "--sandbox"], cwd=home, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "now holds 298 subscribers" in done.stdout and "Traceback" not in done.stderr
    assert not (clone / "sync_state.db").exists() and not list(home.iterdir())
    (kept,) = Path(tmp_path).glob(f"hubspot-mailerlite-sync-sandbox-{os.getuid()}-*")  # this user's, this copy's
    assert (kept / "sync_state.db").exists()
