"""What the sandbox prints: an error ends the output, flags it cannot honour are refused in one line,
--reset only resets, --check has one mapping heading, and no command is wrapped in the middle."""

from __future__ import annotations

import os
import re

import pytest

from sync import cli
from tests.conftest import FAST

# A command as the sandbox prints it: `python main.py --sandbox --touch 5`.
COMMAND_RE = re.compile(r"python main\.py(?: --[a-z-]+(?: (?:[A-Z0-9]+)\b)?)*")


@pytest.fixture
def sandbox(monkeypatch, tmp_path, capsys):
    for key in list(os.environ):
        if key.startswith(("HUBSPOT_", "MAILERLITE_", "SYNC_", "HEALTHCHECK_")):
            monkeypatch.delenv(key)
    folder = tmp_path / "sandbox"

    def run(*args, columns=80):
        monkeypatch.setenv("COLUMNS", str(columns))
        capsys.readouterr()
        try:
            code = cli.main(["--sandbox", *args], FAST, sandbox_dir=folder)
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_a_mapping_error_ends_the_output(sandbox, tmp_path):
    mapping = tmp_path / "mapping.toml"
    mapping.write_text('[fields]\njobtitel = "job_title"\n')
    code, out, err = sandbox("--mapping", str(mapping))
    assert code == 2
    assert err.strip().splitlines()[-1].startswith("ERROR: HubSpot has no contact property jobtitel")
    assert "now holds" not in out and "Try next" not in out and "For real" not in out


def test_env_file_is_refused_in_one_line(sandbox, tmp_path):
    env = tmp_path / "client.env"
    env.write_text("HUBSPOT_ACCESS_TOKEN=x\n")
    code, out, err = sandbox("--env-file", str(env))
    assert code == 2 and out == ""
    assert err.splitlines() == ["main.py: error: --sandbox uses no --env-file: it has its own fake accounts"]


def test_reset_only_resets(sandbox):
    assert sandbox()[0] == 1  # the sample's invalid address
    code, out, err = sandbox("--reset")
    assert (code, err) == (0, "") and out.strip().splitlines() == [
        "The sandbox starts over: the next python main.py --sandbox runs on fresh sample data."]
    code, out, _ = sandbox()
    assert code == 1 and "fresh sample data" in out


def test_reset_with_a_run_flag_is_refused(sandbox):
    code, _, err = sandbox("--reset", "--touch", "3")
    assert code == 2 and "--reset only starts the sandbox over" in err and len(err.splitlines()) == 1


def test_check_has_one_mapping_heading_and_no_note_about_engagement_when_it_is_off(sandbox):
    code, out, _ = sandbox("--check")
    assert code == 0, out
    assert len(re.findall(r"^Mapping", out, flags=re.M)) == 1, out
    assert "engagement" not in out.lower(), out


def split_commands(out: str):
    """Commands a line break cuts in two: found in a line joined with the next, across the join."""
    lines = out.splitlines()
    for line, following in zip(lines, lines[1:]):
        joined = f"{line.rstrip()} {following.strip()}"
        for match in COMMAND_RE.finditer(joined):
            if match.start() < len(line.rstrip()) < match.end():
                yield match.group(0)


def test_no_command_is_wrapped_in_the_middle(sandbox):
    sandbox()  # the runs after it name the kept folder, a long path, before the --reset hint
    for columns in range(44, 121, 4):  # where a line breaks depends on the folder's length
        code, out, _ = sandbox(columns=columns)
        assert "--reset" in out and "python main.py --check" in out
        assert list(split_commands(out)) == [], (columns, out)


def test_every_line_fits_80_columns_but_a_command_or_path_alone_on_its_line(sandbox):
    for args in ((), (), ("--touch", "3"), ("--dry-run",), ("--check",), ("--history",)):
        code, out, err = sandbox(*args)
        for line in (out + err).splitlines():
            # Longer only when it cannot be broken: a command, or a path, alone on its line.
            alone = line.strip()
            assert len(line) <= 80 or COMMAND_RE.fullmatch(alone) or " " not in alone, line
