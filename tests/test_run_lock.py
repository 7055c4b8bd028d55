"""The run lock: an ordinary overlap is quiet, a hung run is not."""

from __future__ import annotations

import os
import time
from pathlib import Path

import filelock

from tests.test_cli_subprocess import fake_env, run_main


def test_an_ordinary_overlap_is_quiet_and_a_hung_run_is_not(hubspot_fake, mailerlite_fake, tmp_path):
    env = dict(fake_env(hubspot_fake, mailerlite_fake, tmp_path), SYNC_MAX_RUNTIME="600")
    lock_path = Path(str(tmp_path / "state.db") + ".lock")
    with filelock.FileLock(str(lock_path), timeout=0):
        os.utime(lock_path, (time.time() - 300,) * 2)  # taken five minutes ago
        quiet = run_main([], env, tmp_path)
        os.utime(lock_path, (time.time() - 3 * 3600,) * 2)  # taken three hours ago: SYNC_MAX_RUNTIME is 10 min
        loud = run_main([], env, tmp_path)
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (75, "", "")
    assert loud.returncode == 75 and loud.stdout == ""
    lines = loud.stderr.splitlines()
    assert len(lines) == 1 and "180 min" in lines[0] and "SYNC_MAX_RUNTIME" in lines[0] and str(lock_path) in lines[0]
    assert hubspot_fake.log == []


def test_a_run_marks_when_it_took_the_lock(hubspot_fake, mailerlite_fake, tmp_path):
    env = fake_env(hubspot_fake, mailerlite_fake, tmp_path)
    lock_path = Path(str(tmp_path / "state.db") + ".lock")
    lock_path.touch()
    os.utime(lock_path, (1_000_000_000,) * 2)  # left by a run years ago
    assert run_main([], env, tmp_path).returncode == 0
    assert lock_path.stat().st_mtime > time.time() - 3600
