"""Issue 23, items 4-9: a newcomer's first hour (and a cron user's first month) has no surprises."""

from __future__ import annotations

import ast
import csv
import json
import os
import re
import runpy
import shlex
import shutil
import stat
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import filelock
import pytest

from sync import cli
from tests.conftest import seed_contacts
from tests.test_cli_subprocess import MAIN, fake_env, run_main

# -- item 6: the Python version, checked before anything that fails on an old Python ---------------------------


@pytest.mark.parametrize("version", [(3, 8, 10, "final", 0), (3, 6, 9, "final", 0)])
def test_an_old_python_is_named_with_what_to_do(version, monkeypatch, capsys):
    monkeypatch.setattr(sys, "version_info", version)
    monkeypatch.setattr(sys, "executable", "/usr/bin/python3")
    monkeypatch.setattr(sys, "argv", [str(MAIN), "--help"])
    with pytest.raises(SystemExit) as stopped:
        runpy.run_path(str(MAIN), run_name="__main__")
    message = str(stopped.value.code)
    found = ".".join(str(part) for part in version[:3])
    assert message.count("\n") == 0 and f"/usr/bin/python3 is Python {found}" in message
    assert "3.9 or newer" in message and "Setup Python App" in message and "python3.11" in message
    assert capsys.readouterr().out == ""  # stopped before --help: nothing else was imported or run


def test_a_new_enough_python_passes_the_check():
    checks = runpy.run_path(str(MAIN), run_name="not_main")
    assert checks["python_version_problem"]((3, 9, 0), "/usr/bin/python3") is None
    assert checks["python_version_problem"]((3, 13, 1), "/usr/bin/python3") is None
    assert "3.8.18" in checks["python_version_problem"]((3, 8, 18), "/opt/python")


def test_main_py_itself_parses_on_old_pythons():
    # No f-strings or annotations in main.py: an old interpreter must get as far as the check.
    tree = ast.parse(MAIN.read_text())
    newer = [type(node).__name__ for node in ast.walk(tree)
             if isinstance(node, (ast.JoinedStr, ast.AnnAssign, ast.NamedExpr))
             or (isinstance(node, ast.arg) and node.annotation is not None)
             or (isinstance(node, ast.FunctionDef) and node.returns is not None)]
    assert newer == []


# -- item 5: cron-grade messages -------------------------------------------------------------------------------


def test_hints_give_the_interpreter_and_main_py_by_absolute_path(hubspot_fake, mailerlite_fake, tmp_path):
    seed_contacts(hubspot_fake, 3)
    hubspot_fake.add_contact({"email": "broken@"}, modified_ms=1)
    elsewhere = tmp_path / "home"
    elsewhere.mkdir()
    done = run_main([], fake_env(hubspot_fake, mailerlite_fake, tmp_path), elsewhere)
    assert done.returncode == 1
    hint = done.stderr.split("(which and why: ", 1)[1].split(")")[0]
    interpreter, main_py, flag = shlex.split(hint)
    assert (interpreter, main_py, flag) == (sys.executable, str(MAIN), "--rejected")
    # The hint runs as printed, from the folder cron starts in, with no venv activated.
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV",)}
    env.update(fake_env(hubspot_fake, mailerlite_fake, tmp_path))
    again = subprocess.run(shlex.split(hint), cwd=elsewhere, env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "broken@" in again.stdout


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


def test_help_lists_every_exit_code(tmp_path):
    done = run_main(["--help"], {}, tmp_path)
    epilog = done.stdout.split("exit codes:", 1)[1]
    codes = [line.split()[0] for line in epilog.splitlines() if line.strip() and line.split()[0].isdigit()]
    assert codes == ["0", "1", "2", "3", "75", "130", "143"]
    assert all(len(line) <= 80 for line in done.stdout.splitlines())


class _RefusingPings(BaseHTTPRequestHandler):
    status = 404

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(type(self).status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.mark.parametrize("status", [404, 500])
def test_a_failing_healthcheck_ping_names_the_http_status(run, hubspot_fake, monkeypatch, status):
    _RefusingPings.status = status
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RefusingPings)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("HEALTHCHECK_URL", f"http://127.0.0.1:{server.server_port}/ping/abc")
        seed_contacts(hubspot_fake, 2)
        result = run()
    finally:
        server.shutdown()
        server.server_close()
    assert result.code == 0
    assert f"healthcheck ping to 127.0.0.1 failed (HTTP {status}" in result.err


# -- item 7: 80 columns ---------------------------------------------------------------------------------------


def test_check_and_history_fit_80_columns_and_json_keeps_every_field(run, hubspot_fake, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)  # not a terminal: 80 columns, as in cron mail
    seed_contacts(hubspot_fake, 5, company="Vereinigte Hüttenwerke und Maschinenfabriken Aktiengesellschaft")
    hubspot_fake.add_contact({"email": "bad"}, modified_ms=1)
    run()
    run("--dry-run")
    check = run("--check")
    assert "Mapping:" in check.out and "Vereinigte" in check.out
    run.capsys.readouterr()
    code = cli.main(["--env-file", str(run.env_file), "--history"])  # the text view (the runner adds --json)
    text = run.capsys.readouterr().out
    assert code == 0 and "rejected 1" in text and "dry run" in text
    for line in check.out.splitlines() + text.splitlines():
        assert len(line) < 80, line
    runs = json.loads(run("--history").out)
    assert [r["dry_run"] for r in runs] == [True, False]  # booleans, like the run summary's
    assert set(runs[0]) >= {"read", "created", "updated", "unchanged", "skipped", "rejected", "failed",
                            "not_reactivated", "left_scope", "started_at", "finished_at", "exit_code", "mode"}


def test_a_narrow_terminal_gets_narrower_history(run, hubspot_fake, monkeypatch):
    seed_contacts(hubspot_fake, 3)
    run()
    monkeypatch.setenv("COLUMNS", "50")
    run.capsys.readouterr()
    assert cli.main(["--env-file", str(run.env_file), "--history"]) == 0
    lines = run.capsys.readouterr().out.splitlines()
    assert len(lines) >= 3 and all(len(line) < 50 for line in lines)


# -- item 8: the sandbox is private and explained ---------------------------------------------------------------


def _sandbox(main_py: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HUBSPOT_", "MAILERLITE_", "SYNC_"))}
    env.update(TMPDIR=str(tmp_path / "tmp"), COLUMNS="200")
    return subprocess.run([sys.executable, str(main_py), "--sandbox", *args], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)


def test_each_user_and_checkout_has_its_own_private_sandbox(tmp_path):
    (tmp_path / "tmp").mkdir()
    other = tmp_path / "other-checkout"
    shutil.copytree(MAIN.parent / "sync", other / "sync", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(MAIN, other / "main.py")
    shutil.copy(MAIN.parent / "mapping.example.toml", other / "mapping.example.toml")
    for main_py in (MAIN, other / "main.py"):
        assert _sandbox(main_py, tmp_path).returncode == 1  # the sample's invalid address, on purpose
    folders = sorted((tmp_path / "tmp").iterdir())
    assert len(folders) == 2, folders
    for folder in folders:
        assert f"-{os.getuid()}-" in folder.name
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert (folder / "sync_state.db").exists()


def test_a_sandbox_folder_of_someone_else_is_not_used(tmp_path, monkeypatch):
    from sync import sandbox
    planted = tmp_path / "planted"
    planted.symlink_to(tmp_path)  # not a folder of the user's own making
    monkeypatch.setattr(sandbox, "SANDBOX_DIR", planted)
    code = cli.main(["--sandbox"])
    assert code == 2 and (tmp_path / "planted").is_symlink()


def test_the_sandbox_says_what_its_data_holds_and_keeps_accents(tmp_path):
    (tmp_path / "tmp").mkdir()
    first = _sandbox(MAIN, tmp_path)
    assert "300 made-up HubSpot contacts" in first.stdout and "without an email address" in first.stdout
    assert "soren." in first.stdout and "Søren" in first.stdout and "sren." not in first.stdout
    assert "The most opens" not in first.stdout and "Engagement" in first.stdout and "is off" in first.stdout
    again = _sandbox(MAIN, tmp_path, "--json")
    summary = json.loads(again.stdout.splitlines()[-1])
    assert (summary["created"], summary["updated"]) == (0, 0)
    if summary["read"]:  # within the search-lag margin of the first run: said why
        assert "minutes of HubSpot changes again" in again.stderr + again.stdout


def test_the_sandbox_shows_engagement_when_the_mapping_turns_it_on(tmp_path):
    (tmp_path / "tmp").mkdir()
    mapping = tmp_path / "mapping.toml"
    mapping.write_text((MAIN.parent / "mapping.example.toml").read_text().replace("# engagement = true",
                                                                                   "engagement = true"))
    done = _sandbox(MAIN, tmp_path, "--mapping", str(mapping))
    assert "The most opens" in done.stdout and "is off" not in done.stdout


# -- item 4: a dry run shows what, not only how many -----------------------------------------------------------


def test_a_dry_run_lists_each_planned_action_with_the_fields_that_change(run, hubspot_fake, mailerlite_fake,
                                                                         tmp_path):
    ids = seed_contacts(hubspot_fake, 6)
    assert run().code == 0
    hubspot_fake.update_contact(ids[0], {"city": "Maribor"})  # a value changes
    hubspot_fake.update_contact(ids[1], {"company": ""})  # a field is emptied
    hubspot_fake.update_contact(ids[2], {"hs_email_optout": "true"})  # opts out
    hubspot_fake.archive_contact(ids[3])  # leaves
    new = hubspot_fake.add_contact({"email": "=new@example.com", "firstname": "Zoë"})
    writes_before = len(mailerlite_fake.log)
    plan_file = tmp_path / "plan.csv"
    result = run("--dry-run", "--full", "--verbose", "--output", str(plan_file))
    assert result.code == 0 and result.summary["would_send"] == 4
    assert len(mailerlite_fake.log) == writes_before or all(
        entry.method == "GET" for entry in mailerlite_fake.log[writes_before:])  # nothing written
    rows = {row["hubspot_id"]: row for row in csv.DictReader(plan_file.open())}
    assert stat.S_IMODE(plan_file.stat().st_mode) == 0o600  # addresses: owner-only
    # --full reads MailerLite's listing (adoption.py): the fields are exactly those that differ from it.
    assert (rows[ids[0]]["action"], rows[ids[0]]["fields"]) == ("update", "city")
    assert (rows[ids[1]]["action"], rows[ids[1]]["fields"]) == ("update", "company")
    assert rows[ids[2]]["action"] == "update as unsubscribed"
    assert rows[ids[3]]["action"] in ("leave", "leave groups", "unsubscribe")
    assert rows[ids[3]]["email"] == "person3@example.com" and "HubSpot" in rows[ids[3]]["detail"]
    assert rows[new]["action"] == "create" and rows[new]["email"] == "'=new@example.com"  # no formula
    assert "name" in rows[new]["fields"].split(", ")
    assert set(rows) == {ids[0], ids[1], ids[2], ids[3], new}  # the unchanged contacts are not listed
    lines = [line for line in result.err.splitlines() if "dry run: would" in line]
    assert len(lines) == 5 and any("would create =new@example.com" in line for line in lines)


def test_a_plain_dry_run_lists_nothing(run, hubspot_fake):
    seed_contacts(hubspot_fake, 3)
    result = run("--dry-run")
    assert result.code == 0 and result.summary["would_send"] == 3 and "dry run: would" not in result.err


def test_output_without_rejected_or_dry_run_is_refused(run, tmp_path):
    with pytest.raises(SystemExit) as stopped:
        run("--output", str(tmp_path / "x.csv"))
    assert stopped.value.code == 2 and not (tmp_path / "x.csv").exists()


# -- item 9: every message the program prints has an entry in docs/troubleshooting.md ---------------------------

SOURCES = [MAIN] + sorted(p for p in (MAIN.parent / "sync").rglob("*.py") if "fakes" not in p.parts)
TROUBLESHOOTING = MAIN.parent / "docs" / "troubleshooting.md"
# Lines that only carry another message (the summary line, an exception's own text, a warning said
# once): what they carry is collected where it is made.
CARRIERS = {"{}{}", "{}; done so far: {}", "{} {}", "contact {}: {}", "{}: {}", "{}, got {}"}


def _error_classes(trees):
    names = {"SyncError", "KeyboardInterrupt"}
    grew = True
    while grew:
        grew = False
        for tree in trees:
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef) and node.name not in names and any(
                        getattr(base, "id", getattr(base, "attr", None)) in names for base in node.bases):
                    names.add(node.name)
                    grew = True
    return names


def _text(node):
    """A message's text with its placeholders as {} (f-strings, % and str.format alike)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return re.sub(r"%[-+ #0-9.]*[sdrif]", "{}", node.value)
    if isinstance(node, ast.JoinedStr):
        return "".join(_text(v) if isinstance(v, ast.Constant) else "{}" for v in node.values)
    if isinstance(node, ast.BinOp):
        return (_text(node.left) or "") + "{}"
    return None


def program_messages():
    """(where, text) of every message the program can print: errors it raises, lines it logs at
    WARNING or ERROR, argument errors and main.py's own exits. Collected from the source."""
    trees = {path: ast.parse(path.read_text()) for path in SOURCES}
    raised = _error_classes(trees.values())
    found = []
    for path, tree in trees.items():
        for node in ast.walk(tree):
            if path == MAIN and isinstance(node, ast.Return) and node.value is not None:  # the version check's line
                text = _text(node.value)
                if text:
                    found.append((f"{path.name}:{node.lineno}", text))
            if not isinstance(node, ast.Call) or not node.args:
                continue
            name = getattr(node.func, "id", getattr(node.func, "attr", None))
            if name in raised or name in ("error", "warning", "exit"):
                text = _text(node.args[0])
                if text == "{}" and len(node.args) > 1:
                    text = _text(node.args[1])
                if text and text not in CARRIERS and text != "{}":
                    found.append((f"{path.name}:{node.lineno}", text))
    return found


def stable_words(text):
    """The first words that do not change from one occurrence to the next (up to four)."""
    for chunk in text.split("{}"):
        words = re.sub(r"[`'\"]", "", chunk).strip(" ,;:.()").split()
        if len(words) >= 2:
            return " ".join(words[:4]).strip(" ,;:.()").lower()
    return None


def test_every_message_the_program_prints_is_in_troubleshooting():
    doc = " ".join(re.sub(r"[`'\"]", "", TROUBLESHOOTING.read_text(encoding="utf-8")).lower().split())
    messages = program_messages()
    assert len(messages) > 60  # the collector finds them (it would pass vacuously otherwise)
    missing = [(where, text) for where, text in messages if stable_words(text) and stable_words(text) not in doc]
    assert missing == [], "\n".join(f"{where}: {text}" for where, text in missing)


def test_verbose_shows_the_syncs_own_lines_not_library_debug(hubspot_fake, mailerlite_fake, tmp_path):
    seed_contacts(hubspot_fake, 3)
    done = run_main(["--verbose"], fake_env(hubspot_fake, mailerlite_fake, tmp_path), tmp_path)
    assert done.returncode == 0 and "full sync: read 3" in done.stderr
    assert "acquire" not in done.stderr.lower() and "Starting new HTTP" not in done.stderr  # filelock, urllib3


def test_gitignore_covers_what_a_user_creates():
    ignored = subprocess.run(["git", "check-ignore", "--no-index", "mapping.toml", "sync.log", "sync.log.1",
                              "sync_state.db", "sync_state.db-journal", "sync_state.db-wal", "sync_state.db-shm",
                              "sync_state.db.lock", ".env", "clientB.env.db"],
                             cwd=MAIN.parent, capture_output=True, text=True).stdout.split()
    assert set(ignored) == {"mapping.toml", "sync.log", "sync.log.1", "sync_state.db", "sync_state.db-journal",
                            "sync_state.db-wal", "sync_state.db-shm", "sync_state.db.lock", ".env", "clientB.env.db"}
    kept = subprocess.run(["git", "check-ignore", "--no-index", "mapping.example.toml", ".env.example"],
                          cwd=MAIN.parent, capture_output=True, text=True).stdout.split()
    assert kept == []


def test_the_readme_is_short_and_says_what_a_cron_user_needs():
    readme = (MAIN.parent / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 300
    assert "OWNER" not in readme and "github.com/" not in readme  # no address to guess
    headings = re.findall(r"^#+ (.+)$", readme, flags=re.M)
    assert "Rotating a token" in headings
    # The Python version is said before the first install command.
    assert readme.index("3.9 or newer") < readme.index("pip install") and "Setup Python App" in readme
    for page, heading in (("consent.md", "Consent"), ("write-back.md", "Write-back (optional)"),
                          ("engagement.md", "Engagement (optional)")):
        assert heading in headings and f"](docs/{page})" in readme
        assert len((MAIN.parent / "docs" / page).read_text(encoding="utf-8").splitlines()) > 10


def test_check_wraps_its_problems_to_the_terminal(hubspot_fake, mailerlite_fake, tmp_path):
    from tests.test_operations import run_in_pty
    seed_contacts(hubspot_fake, 3)
    mapping = tmp_path / "mapping.toml"
    mapping.write_text('create_missing_fields = false\n[fields]\ncompany = "employer_of_record_name"\n')
    code, screen, _ = run_in_pty(["--check", "--mapping", str(mapping)], fake_env(hubspot_fake, mailerlite_fake,
                                                                               tmp_path), tmp_path, columns=80,
                                 stdout_too=True)
    lines = screen.replace("\r", "").splitlines()
    assert code == 2 and "employer_of_record_name" in screen
    assert max(len(line) for line in lines) < 80, screen
    assert any(line.startswith("  - MailerLite has no field") for line in lines)  # the problem, wrapped
