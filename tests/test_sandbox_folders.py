"""The sandbox's folder is private to each user and checkout."""

from __future__ import annotations

import os
import shutil
import stat

from sync import cli
from tests.common import run_sandbox
from tests.conftest import FAST
from tests.test_cli_subprocess import MAIN


def test_each_user_and_checkout_has_its_own_private_sandbox(tmp_path):
    (tmp_path / "tmp").mkdir()
    other = tmp_path / "other-checkout"
    shutil.copytree(MAIN.parent / "sync", other / "sync", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(MAIN, other / "main.py")
    shutil.copy(MAIN.parent / "mapping.example.toml", other / "mapping.example.toml")
    for main_py in (MAIN, other / "main.py"):
        assert run_sandbox(main_py, tmp_path).returncode == 1  # the sample's invalid address, on purpose
    folders = sorted((tmp_path / "tmp").iterdir())
    assert len(folders) == 2, folders
    for folder in folders:
        assert f"-{os.getuid()}-" in folder.name
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert (folder / "sync_state.db").exists()


def test_a_sandbox_folder_of_someone_else_is_not_used(tmp_path, monkeypatch):
    planted = tmp_path / "planted"
    planted.symlink_to(tmp_path)  # not a folder of the user's own making
    code = cli.main(["--sandbox"], FAST, sandbox_dir=planted)
    assert code == 2 and (tmp_path / "planted").is_symlink()
