"""`python main.py` as a real process, as cron would start it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import filelock

from sync.invocation import COMMAND
from tests.conftest import HS_TOKEN, ML_TOKEN, seed_contacts

MAIN = Path(__file__).resolve().parents[1] / "main.py"


def run_main(args, env, cwd):
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HUBSPOT_", "MAILERLITE_", "SYNC_"))}
    clean.update(env)
    return subprocess.run([sys.executable, str(MAIN), *args], env=clean, cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def fake_env(hs, ml, tmp_path):
    return {"HUBSPOT_ACCESS_TOKEN": HS_TOKEN, "MAILERLITE_API_KEY": ML_TOKEN, "HUBSPOT_BASE_URL": hs.url,
            "MAILERLITE_BASE_URL": ml.base_url, "SYNC_STATE_DB": str(tmp_path / "state.db")}


def test_cron_style_run_is_silent_on_success(hubspot_fake, mailerlite_fake, tmp_path):
    seed_contacts(hubspot_fake, 250)
    env_file = tmp_path / "sync.env"
    env_file.write_text("\n".join(f"{k}={v}" for k, v in fake_env(hubspot_fake, mailerlite_fake, tmp_path).items()))
    env_file.chmod(0o600)
    elsewhere = tmp_path / "home"
    elsewhere.mkdir()
    done = run_main(["--env-file", str(env_file)], {}, elsewhere)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert len(mailerlite_fake.subscribers) == 250
    assert (tmp_path / "state.db").exists() and not list(elsewhere.iterdir())


def test_json_summary_on_stdout(hubspot_fake, mailerlite_fake, tmp_path):
    seed_contacts(hubspot_fake, 30)
    hubspot_fake.add_contact({"email": "broken"}, modified_ms=1)
    done = run_main(["--json"], fake_env(hubspot_fake, mailerlite_fake, tmp_path), tmp_path)
    assert done.returncode == 1
    summary = json.loads(done.stdout)
    for key in ("mode", "dry_run", "read", "created", "updated", "unchanged", "skipped", "rejected", "failed"):
        assert key in summary
    assert (summary["created"], summary["rejected"]) == (30, 1)
    # Under a scheduler (stderr not a terminal) the run says one line: its counts, and where to see why.
    assert re.fullmatch(r"WARNING: full sync: read 31, sent 30, rejected 1 in [0-9.]+ s; which and why:\n"
                        r"  " + re.escape(COMMAND) + r" --rejected\n", done.stderr), done.stderr


def test_missing_setting_is_one_line(tmp_path):
    done = run_main(["--env-file", str(tmp_path / "none.env")], {"MAILERLITE_API_KEY": "x"}, tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "ERROR: --env-file " + str(tmp_path / "none.env") + " does not exist"]
    # A relative --env-file is taken from the current folder, and the error shows where that is.
    done = run_main(["--env-file", "none.env"], {"MAILERLITE_API_KEY": "x"}, tmp_path)
    assert done.stderr.strip().splitlines() == [
        "ERROR: --env-file " + str(tmp_path / "none.env") + " does not exist"]
    env = {"MAILERLITE_API_KEY": "x", "HUBSPOT_ACCESS_TOKEN": "", "SYNC_STATE_DB": str(tmp_path / "s.db")}
    done = run_main([], env, tmp_path)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "HUBSPOT_ACCESS_TOKEN" in lines[0]


def test_plain_http_to_a_remote_host_is_refused(tmp_path):
    env = {"HUBSPOT_ACCESS_TOKEN": "a", "MAILERLITE_API_KEY": "b", "MAILERLITE_BASE_URL": "http://example.com/api",
           "SYNC_STATE_DB": str(tmp_path / "s.db")}
    done = run_main([], env, tmp_path)
    assert done.returncode == 2 and "MAILERLITE_BASE_URL must be an https:// URL" in done.stderr


def test_help(tmp_path):
    done = run_main(["--help"], {}, tmp_path)
    assert done.returncode == 0 and "--dry-run" in done.stdout and "exit codes:" in done.stdout


def test_second_run_while_one_holds_the_lock_exits_75(hubspot_fake, mailerlite_fake, tmp_path):
    env = fake_env(hubspot_fake, mailerlite_fake, tmp_path)
    with filelock.FileLock(str(tmp_path / "state.db") + ".lock", timeout=0):
        done = run_main([], env, tmp_path)
    assert done.returncode == 75
    # An ordinary overlap (the earlier run is within SYNC_MAX_RUNTIME): nothing for cron to mail.
    assert (done.stdout, done.stderr) == ("", "")
    assert hubspot_fake.log == []


def test_a_reader_that_goes_away_ends_the_output_quietly(tmp_path):
    # `python main.py --sandbox | head -1`: the reader quits after one line.
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HUBSPOT_", "MAILERLITE_", "SYNC_"))}
    clean.update(TMPDIR=str(tmp_path), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, str(MAIN), "--sandbox"], env=clean, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) in (0, 1), err
    assert "BrokenPipe" not in err and "Please report" not in err and "Traceback" not in err


def test_no_env_file_is_named_as_such(tmp_path):
    env = {"SYNC_STATE_DB": str(tmp_path / "s.db")}
    clone = tmp_path / "app"
    clone.mkdir()
    for name in ("main.py",):
        (clone / name).write_text(MAIN.read_text())
    shutil.copytree(MAIN.parent / "sync", clone / "sync")
    done = subprocess.run([sys.executable, str(clone / "main.py")], env={**_clean(), **env}, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"ERROR: no .env file at {clone / '.env'} and no tokens in the environment: copy .env.example to "
        f"{clone / '.env'} and fill in HUBSPOT_ACCESS_TOKEN and MAILERLITE_API_KEY"]


def _clean():
    return {k: v for k, v in os.environ.items() if not k.startswith(("HUBSPOT_", "MAILERLITE_", "SYNC_"))}


def test_a_stopped_run_is_one_line(hubspot_fake, mailerlite_fake, tmp_path):
    seed_contacts(hubspot_fake, 250)
    hubspot_fake.daily_limit = 2
    done = run_main([], fake_env(hubspot_fake, mailerlite_fake, tmp_path), tmp_path)
    assert done.returncode == 3
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ERROR: ") and "daily API limit" in lines[0], done.stderr
    assert lines[0].endswith("; nothing read or sent")  # stopped at its first request


def test_one_rule_for_relative_paths_and_the_resolved_path_in_errors(hubspot_fake, mailerlite_fake, tmp_path):
    from sync.config import PROJECT_DIR
    env = fake_env(hubspot_fake, mailerlite_fake, tmp_path)
    # On the command line: from the current folder.
    done = run_main(["--mapping", "nope.toml"], env, tmp_path)
    assert done.returncode == 2 and f"mapping file {tmp_path / 'nope.toml'} does not exist" in done.stderr
    # In .env or the environment: beside main.py, wherever cron starts the job.
    done = run_main([], dict(env, SYNC_MAPPING_FILE="nope.toml"), tmp_path)
    assert done.returncode == 2 and f"mapping file {PROJECT_DIR / 'nope.toml'} does not exist" in done.stderr
