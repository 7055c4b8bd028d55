"""--help: the flags in three groups (run, inspect, set up), three examples, and every exit code
with what the README's table says of it, within 80 columns."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sync import cli
from tests.test_cli_subprocess import run_main

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.fixture
def help_text(monkeypatch, capsys) -> str:
    monkeypatch.setenv("COLUMNS", "80")
    with pytest.raises(SystemExit) as stopped:
        cli.main(["--help"])
    assert stopped.value.code == 0
    return capsys.readouterr().out


def section(text: str, heading: str) -> str:
    return text.split(f"\n{heading}", 1)[1].split("\n\n", 1)[0]


def test_flags_are_grouped_by_what_they_are_for(help_text):
    headings = re.findall(r"^(\S[^:\n]*):$", help_text, flags=re.M)
    assert [h.split(" (")[0] for h in headings if not h.startswith(("usage", "options"))][:3] == [
        "run", "inspect", "set up"]
    assert "--dry-run" in section(help_text, "run") and "--full" in section(help_text, "run")
    assert "--check" in section(help_text, "inspect") and "--rejected" in section(help_text, "inspect")
    assert "--env-file" in section(help_text, "set up") and "--sandbox" in section(help_text, "set up")


def test_three_examples(help_text):
    examples = [line for line in section(help_text, "examples:").splitlines() if line.strip()]
    assert len(examples) == 3 and all(line.strip().startswith("python main.py") for line in examples)


def test_exit_codes_are_complete_and_agree_with_the_readme(help_text):
    codes = section(help_text, "exit codes:")
    described = dict(re.findall(r"^  (\d+)\s+(.*(?:\n {7}.*)*)", codes, flags=re.M))
    assert list(described) == ["0", "1", "2", "3", "75", "130", "143"]
    assert "consent actions" in described["1"] and "mass-leave guard" in described["3"]
    readme = " ".join(README.read_text(encoding="utf-8").split())
    table = readme.split("Exit codes are stable", 1)[1].split("The `--json` summary", 1)[0]
    assert sorted(re.findall(r"\*\*(\d+)\*\*", table), key=int) == sorted(described, key=int)
    assert "consent actions" in table and "mass-leave guard" in table


def test_help_fits_80_columns(help_text):
    assert max(len(line) for line in help_text.splitlines()) <= 80


def test_help_lists_every_exit_code(tmp_path):
    done = run_main(["--help"], {}, tmp_path)
    epilog = done.stdout.split("exit codes:", 1)[1]
    codes = [line.split()[0] for line in epilog.splitlines() if line.strip() and line.split()[0].isdigit()]
    assert codes == ["0", "1", "2", "3", "75", "130", "143"]
    assert all(len(line) <= 80 for line in done.stdout.splitlines())
