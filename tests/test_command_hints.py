"""The commands hints print (--rejected, --check) name the interpreter, main.py and the --env-file
used, by absolute path, for cron mail."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

from sync.invocation import COMMAND
from tests.common import client_env_file
from tests.conftest import HS_TOKEN, ML_TOKEN, seed_contacts
from tests.test_cli_subprocess import MAIN, fake_env, run_main
from tests.test_setup_safety import client_b, project_of_env_files  # noqa: F401 (client_b: a fixture)


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
    assert f"which and why:\n  {again} --rejected\n" in done.stderr, done.stderr
    # the misspelt setting's advisory
    assert f"repeated by:)\n  {again} --check\n" in done.stderr, done.stderr
    shown = run_main(["--rejected", "--env-file", str(env_file)], {}, tmp_path)
    assert shown.returncode == 0 and "not-an-email" in shown.stdout

    # Without --env-file the hints stay as they were.
    default = run_main([], {"HUBSPOT_ACCESS_TOKEN": HS_TOKEN, "MAILERLITE_API_KEY": ML_TOKEN,
                            "HUBSPOT_BASE_URL": hubspot_fake.url, "MAILERLITE_BASE_URL": mailerlite_fake.base_url,
                            "SYNC_STATE_DB": str(tmp_path / "a.db")}, tmp_path)
    assert f"which and why:\n  {COMMAND} --rejected\n" in default.stderr, default.stderr


def test_hints_give_the_interpreter_and_main_py_by_absolute_path(hubspot_fake, mailerlite_fake, tmp_path):
    seed_contacts(hubspot_fake, 3)
    hubspot_fake.add_contact({"email": "broken@"}, modified_ms=1)
    elsewhere = tmp_path / "home"
    elsewhere.mkdir()
    done = run_main([], fake_env(hubspot_fake, mailerlite_fake, tmp_path), elsewhere)
    assert done.returncode == 1
    hint = done.stderr.split("which and why:\n  ", 1)[1].split("\n")[0]
    interpreter, main_py, flag = shlex.split(hint)
    assert (interpreter, main_py, flag) == (sys.executable, str(MAIN), "--rejected")
    # The hint runs as printed, from the folder cron starts in, with no venv activated.
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV",)}
    env.update(fake_env(hubspot_fake, mailerlite_fake, tmp_path))
    again = subprocess.run(shlex.split(hint), cwd=elsewhere, env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "broken@" in again.stdout
