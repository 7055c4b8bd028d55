"""Every snippet in the README works as printed.

Each fenced block carries its language: `toml` blocks are loaded and checked against the sandbox's
fake HubSpot and MailerLite; `ini` blocks are read as .env files; `sh` blocks run when they
only touch the sandbox, and otherwise have their flags parsed and the files they name checked;
`crontab` and `bat` blocks (which cannot run here) have their schedule, paths and flags checked.
Inline `python main.py ...` commands in the text have their flags parsed too.
"""

from __future__ import annotations

import io
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import List, Tuple

import pytest
from dotenv.parser import parse_stream

from sync.cli import parse_args
from sync.config import KNOWN_SETTINGS, PROJECT_DIR
from sync.mapping_file import load_mapping

README = PROJECT_DIR / "README.md"
LANGUAGES = ("sh", "bat", "toml", "ini", "crontab")
CREATED_BY_THE_READER = {".env", "mapping.toml", "sync.log", "rejected.csv"}


def blocks(language: str) -> List[str]:
    return [body for lang, body in _all_blocks() if lang == language]


def _all_blocks() -> List[Tuple[str, str]]:
    return re.findall(r"^```([\w-]*)\n(.*?)^```$", README.read_text(encoding="utf-8"), flags=re.S | re.M)


def commands(block: str) -> List[str]:
    """The commands of a shell block: comments cut, `a && b` split."""
    found = []
    for line in block.splitlines():
        line = re.split(r"\s#\s", line)[0].strip()
        found += [part.strip() for part in line.split("&&") if part.strip()]
    return found


def main_args(command: str) -> List[str]:
    """The arguments given to main.py in a command, whichever Python starts it."""
    words = shlex.split(command, posix=False)
    at = next(i for i, w in enumerate(words) if w.replace("\\", "/").endswith("main.py"))
    return words[at + 1:]


def _parses(args: List[str]) -> None:
    try:
        parse_args(args)
    except SystemExit as stopped:  # --help and --version exit 0; a bad flag exits 2
        assert stopped.code == 0, f"the README's flags do not parse: {args}"


def test_every_block_says_its_language_so_none_escapes_these_tests():
    found = _all_blocks()
    assert found and all(lang in LANGUAGES for lang, _ in found), [lang for lang, _ in found]


@pytest.mark.parametrize("index", range(len(blocks("toml"))))
def test_mapping_snippets_pass_check_against_the_sandbox(index, tmp_path):
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(blocks("toml")[index], encoding="utf-8")
    load_mapping(mapping)  # a mistake here is a one-line ConfigError
    done = _run(["--sandbox", "--check", "--mapping", str(mapping)], tmp_path)
    assert done.returncode == 0 and "All checks passed." in done.stdout, done.stdout + done.stderr


def test_env_snippets_hold_only_settings_the_program_reads():
    for block in blocks("ini"):
        bindings = list(parse_stream(io.StringIO(block)))
        assert bindings and not [b for b in bindings if b.error]
        assert {b.key for b in bindings if b.key} <= set(KNOWN_SETTINGS)


def test_inline_commands_parse():
    text = README.read_text(encoding="utf-8")
    inline = re.findall(r"`((?:python|venv\S*python)\S* main\.py[^`]*)`", text)
    assert len(inline) >= 5
    for command in inline:
        _parses(main_args(command))


# What each sandbox command in the README promises, in the README's order.
SANDBOX_STORY = [
    ("python main.py --sandbox", 1, "one invalid address on purpose"),  # the Windows block: the same command
    ("python main.py --sandbox", 0, "nothing sent"),
    ("python main.py --sandbox", 0, "nothing sent"),
    ("python main.py --sandbox --touch 5", 0, "Edited 5 sample contacts"),
    ("python main.py --sandbox --rejected", 0, "not-an-email"),
    ("python main.py --sandbox --history", 0, "full"),
    ("python main.py --sandbox --reset", 0, "fresh sample data"),  # only resets: the next run is a first run
    ("python main.py --sandbox", 1, "one invalid address on purpose"),  # Development: the program against its fakes
]


def test_sandbox_commands_run_in_order_and_do_what_they_say(tmp_path):
    """Try it, run as a newcomer would (the install lines excepted: no network here)."""
    found = [c for lang, block in _all_blocks() if lang in ("sh", "bat") for c in commands(block) if "--sandbox" in c]
    found = [c for c in found if "--mapping" not in c]
    assert found == [command for command, _, _ in SANDBOX_STORY]
    for command, code, promise in SANDBOX_STORY:
        done = _run(main_args(command), tmp_path)
        assert done.returncode == code, (command, done.stdout, done.stderr)
        assert promise in done.stdout, (command, done.stdout)
        assert "Traceback" not in done.stderr, (command, done.stderr)


def test_other_shell_commands_name_real_files_and_flags():
    for block in blocks("sh") + blocks("bat"):
        for command in commands(block):
            if "main.py" in command and not command.startswith("schtasks"):  # that one: its own test
                _parses(main_args(command))
            for word in shlex.split(command, posix=False):
                if re.fullmatch(r"[\w.-]+\.(txt|example|toml|py)", word) and word not in CREATED_BY_THE_READER:
                    assert (PROJECT_DIR / word).exists(), f"{command}: no {word} in the project"


def test_crontab_lines_are_valid_and_use_absolute_paths():
    lines = [line for block in blocks("crontab") for line in block.splitlines() if line.strip()]
    assert lines
    for line in lines:
        minute, hour, day, month, weekday, *command = line.split()
        assert 0 <= int(minute) <= 59 and (hour, day, month, weekday) == ("*", "*", "*", "*")
        python, script = command[0], command[1]
        assert python.startswith("/") and python.endswith("/venv/bin/python")
        assert script.startswith("/") and script.endswith("/main.py")
        assert Path(python).parents[2] == Path(script).parent  # the venv made in the project folder
        args = command[2:]
        _parses(args)
        for flag, value in zip(args, args[1:]):
            if flag.startswith("--") and not value.startswith("--"):
                assert value.startswith("/"), f"cron starts jobs elsewhere: {value} must be absolute"


def test_windows_task_uses_absolute_paths():
    tasks = [c for block in blocks("bat") for c in block.splitlines() if c.startswith("schtasks /Create")]
    assert tasks
    for task in tasks:
        run = re.search(r'/TR "([^"]+)"', task).group(1).split()
        assert re.fullmatch(r"[A-Z]:\\.*\\venv\\Scripts\\python\.exe", run[0]) and run[1].endswith("\\main.py")
        _parses(run[2:])


def _run(args: List[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HUBSPOT_", "MAILERLITE_", "SYNC_"))}
    env.update(TMPDIR=str(tmp_path), HOME=str(tmp_path))
    return subprocess.run([sys.executable, str(PROJECT_DIR / "main.py"), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_links_lead_somewhere():
    text = README.read_text(encoding="utf-8")
    anchors = {_slug(h) for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith("#"):
            assert target[1:] in anchors, target
        elif not target.startswith("http"):
            assert (PROJECT_DIR / target).exists(), target


def test_the_json_summary_keys_are_all_listed():
    from collections import Counter

    from sync.engine import Summary
    listed = set(re.findall(r"`(\w+)`", README.read_text(encoding="utf-8").split("The `--json` summary has")[1]
                            .split("\n\n")[0]))
    assert listed == set(Summary("full", False, Counter()).as_dict())


def test_ci_runs_the_readmes_test_command():
    """The Development section's test command is the one CI runs, word for word."""
    section = README.read_text(encoding="utf-8").split("## Development", 1)[1]
    test_command = next(c for c in section.splitlines() if "pytest" in c and c.startswith("pip install"))
    ci = (PROJECT_DIR / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert test_command in ci, f".ci/run does not run the README's test command: {test_command}"
