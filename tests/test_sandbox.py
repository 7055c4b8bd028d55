"""`python main.py --sandbox`: the real sync, no account, nothing leaves the machine."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sync import cli
from sync import sandbox as sandbox_module
from sync.config import PROJECT_DIR

REAL_STATE = PROJECT_DIR / "sync_state.db"


@pytest.fixture
def sandbox(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(sandbox_module, "SANDBOX_DIR", tmp_path / "sandbox")
    for key in list(os.environ):
        if key.startswith(("HUBSPOT_", "MAILERLITE_", "SYNC_", "HEALTHCHECK_")):
            monkeypatch.delenv(key)
    before = REAL_STATE.stat().st_mtime if REAL_STATE.exists() else None

    def run(*args):
        capsys.readouterr()
        code = cli.main(["--sandbox", *args])
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
    history = sandbox("--history")
    assert history[0] == 0 and "full" in history[1] and "created 295" in history[1]
    rejected = sandbox("--rejected")
    assert rejected[0] == 0 and "not-an-email" in rejected[1]


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
    assert (Path(tmp_path) / "hubspot-mailerlite-sync-sandbox" / "sync_state.db").exists()
