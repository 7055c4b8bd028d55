"""Running like a good cron job: progress on a terminal, silence when fine, logs, pings, reports."""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import List, Optional

import pytest

from sync import cli
from sync.invocation import COMMAND
from tests.conftest import FAST, messages, seed_contacts
from tests.test_cli_subprocess import MAIN, fake_env, run_main


def run_in_pty(args, env, cwd, columns: Optional[int] = None, stdout_too: bool = False) -> tuple:
    """Run main.py with stderr (and stdout, if asked) on a pseudo-terminal; returns (exit code, what the
    terminal showed, stdout). With `columns`, the terminal has that width as a real one reports it
    (TIOCSWINSZ, no COLUMNS variable); without, COLUMNS=160."""
    master, slave = pty.openpty()
    full_env = {k: v for k, v in os.environ.items()
                if not k.startswith(("HUBSPOT_", "MAILERLITE_", "SYNC_")) and k not in ("COLUMNS", "LINES")}
    full_env.update(env)
    if columns:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    else:
        full_env["COLUMNS"] = "160"
    proc = subprocess.Popen([sys.executable, str(MAIN), *args], env=full_env, cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=slave if stdout_too else subprocess.PIPE, stderr=slave)
    os.close(slave)
    chunks: List[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    proc.wait(timeout=120)
    reader.join(timeout=5)
    os.close(master)
    return proc.returncode, b"".join(chunks).decode("utf-8", "replace"), proc.stdout.read().decode() \
        if proc.stdout else ""


def screen_lines(screen: str) -> List[str]:
    """Every line the terminal drew, a progress bar's redraws (after a carriage return) included."""
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)
    return [part for line in plain.split("\n") for part in line.split("\r")]


def one_rate_limit_wait(mailerlite_fake, seconds: float = 2.2) -> None:
    """MailerLite's third batch (the second page's first: the bar has its total by then) is answered
    with its own 429, whose Retry-After is `seconds`: one wait long enough to be shown
    (progress.WAIT_SHOWN_AFTER) whatever the machine's speed. A used-up window gave waits as short as
    the machine was slow, and a run of many windows."""
    def limited(request):
        response = mailerlite_fake.rate_limited_response()
        response.headers["Retry-After"] = f"{seconds:.3f}"
        return response

    mailerlite_fake.faults.only_paths = ("/api/batch",)
    mailerlite_fake.faults.script.extend([None, None, limited])


def test_progress_bar_and_rate_limit_wait_on_a_terminal(hubspot_fake, mailerlite_fake, tmp_path):
    seed_contacts(hubspot_fake, 200)
    one_rate_limit_wait(mailerlite_fake)
    code, screen, stdout = run_in_pty([], fake_env(hubspot_fake, mailerlite_fake, tmp_path), tmp_path)
    assert code == 0, screen
    assert "HubSpot -> MailerLite" in screen and "contacts" in screen
    assert re.search(r"waiting \d+ s for MailerLite's rate limit", screen), screen
    assert "full sync: read 200, created 200" in screen  # the readable end summary
    assert stdout == ""


@pytest.mark.parametrize("columns", [80, 120])
def test_the_progress_bar_fits_the_terminal(hubspot_fake, mailerlite_fake, tmp_path, columns):
    seed_contacts(hubspot_fake, 300)
    one_rate_limit_wait(mailerlite_fake)  # a wait, so that its longer text is drawn too
    code, screen, _ = run_in_pty([], fake_env(hubspot_fake, mailerlite_fake, tmp_path), tmp_path, columns)
    assert code == 0, screen
    bars = [line for line in screen_lines(screen) if "%|" in line]
    assert bars, screen
    for line in screen_lines(screen):
        assert len(line.rstrip()) < columns, line  # one short of the width: never wraps
    for line in bars:
        assert len(line.split("|")[1]) >= 10, line  # the bar itself stays readable
    assert any("/300" in line for line in bars)  # and the count is not cut
    assert any("waiting" in line for line in bars), screen  # the wait's longer text was drawn too
    assert not re.search(r"\d{5,} contacts/s", screen)  # no rate over the first page alone


@pytest.mark.parametrize("columns", [80, 120])
def test_the_sandbox_output_fits_the_terminal(tmp_path, columns):
    env = {"TMPDIR": str(tmp_path), "HOME": str(tmp_path)}
    code, screen, _ = run_in_pty(["--sandbox"], env, tmp_path, columns, stdout_too=True)
    assert code == 1, screen
    assert "now holds 298 subscribers" in screen and "job_title=" in screen
    for line in screen_lines(screen):
        if not line.startswith(("WARNING: ", "INFO: ")):  # log lines wrap; what the sandbox draws must not
            assert len(line.rstrip()) < columns, line


def test_no_progress_without_a_terminal_and_quiet(hubspot_fake, mailerlite_fake, tmp_path):
    seed_contacts(hubspot_fake, 120)
    done = run_main([], fake_env(hubspot_fake, mailerlite_fake, tmp_path), tmp_path)
    assert (done.returncode, done.stderr, done.stdout) == (0, "", "")
    code, screen, _ = run_in_pty(["--quiet", "--full", "--force"], fake_env(hubspot_fake, mailerlite_fake, tmp_path),
                                 tmp_path)
    assert code == 0 and screen == ""


def test_problems_reach_stderr_once_and_concisely(hubspot_fake, mailerlite_fake, tmp_path):
    seed_contacts(hubspot_fake, 20)
    hubspot_fake.add_contact({"email": "broken@"}, modified_ms=1)
    done = run_main([], fake_env(hubspot_fake, mailerlite_fake, tmp_path), tmp_path)
    assert done.returncode == 1
    # One line for the problem within 80 columns, the command that shows it on a line of its own.
    assert done.stderr.splitlines() == [
        "WARNING: full sync: read 21, sent 20, rejected 1 in "
        + re.search(r"in (\d+\.\d) s", done.stderr).group(1) + " s; which and why:", "  " + COMMAND + " --rejected"]
    assert len(done.stderr.splitlines()[0]) <= 80


def test_verbose_without_a_terminal_tells_what_it_does(hubspot_fake, mailerlite_fake, tmp_path):
    seed_contacts(hubspot_fake, 5)
    done = run_main(["--verbose"], fake_env(hubspot_fake, mailerlite_fake, tmp_path), tmp_path)
    assert done.returncode == 0 and "full sync: read 5, created 5" in done.stderr


def test_log_file_is_written_and_rotated(run, hubspot_fake, mailerlite_fake, monkeypatch, tmp_path):
    seed_contacts(hubspot_fake, 3)
    hubspot_fake.add_contact({"email": "x@y"}, modified_ms=1)
    log_file = tmp_path / "logs" / "sync.log"
    small = replace(FAST, log_file_bytes=400)
    run("--log-file", str(log_file), tunables=small)
    text = log_file.read_text()
    assert "full sync: read 4, created 3" in text and "rejected 1" in text
    assert "hs-test-token" not in text
    for _ in range(6):
        run("--log-file", str(log_file), tunables=small)
    assert (tmp_path / "logs" / "sync.log.1").exists() and not (tmp_path / "logs" / "sync.log.4").exists()
    assert "incremental sync: read 0" in log_file.read_text()


def test_log_file_from_the_environment(run, hubspot_fake, mailerlite_fake, monkeypatch, tmp_path):
    monkeypatch.setenv("SYNC_LOG_FILE", str(tmp_path / "env.log"))
    run()
    assert "full sync" in (tmp_path / "env.log").read_text()


class _Pings(BaseHTTPRequestHandler):
    seen: List[str] = []

    def do_GET(self) -> None:  # noqa: N802
        type(self).seen.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def ping_server():
    _Pings.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Pings)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/ping/abc", _Pings.seen
    server.shutdown()


def test_healthcheck_pings_success_and_failure(run, hubspot_fake, mailerlite_fake, monkeypatch, ping_server):
    url, seen = ping_server
    monkeypatch.setenv("HEALTHCHECK_URL", url)
    seed_contacts(hubspot_fake, 3)
    assert run().code == 0
    assert seen == ["/ping/abc"]
    monkeypatch.setenv("MAILERLITE_API_KEY", "wrong")
    hubspot_fake.add_contact({"email": "new@example.com"})
    assert run().code == 2
    assert seen == ["/ping/abc", "/ping/abc/fail"]


def test_a_dead_healthcheck_url_does_not_fail_the_run(run, hubspot_fake, mailerlite_fake, monkeypatch):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HEALTHCHECK_URL", f"http://127.0.0.1:{port}/ping")
    seed_contacts(hubspot_fake, 3)
    result = run()
    assert result.code == 0 and "healthcheck ping to 127.0.0.1 failed" in result.err


def test_history_lists_runs_two_lines_each_within_80_columns(run, hubspot_fake, mailerlite_fake):
    seed_contacts(hubspot_fake, 4)
    hubspot_fake.add_contact({"email": "bad"}, modified_ms=1)
    run()
    run()
    capsys = run.capsys
    capsys.readouterr()
    code = cli.main(["--env-file", str(run.env_file), "--history"])  # the text view: no --json
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and code == 0
    head = r"^\d\d\d\d-\d\d-\d\d \d\d:\d\d:\d\d  {mode}, exit {code}, \d+ s$"
    counts = "  read {read}, created {created}, updated 0, unchanged 0, skipped 0, rejected {rejected}, failed 0"
    assert re.match(head.format(mode="incremental", code=0), lines[0]), lines[0]
    assert lines[1] == counts.format(read=0, created=0, rejected=0)
    assert re.match(head.format(mode="full", code=1), lines[2]), lines[2]
    assert lines[3] == counts.format(read=5, created=4, rejected=1)
    assert max(len(line) for line in lines) < 80


def test_history_needs_no_token(run, monkeypatch):
    run()
    monkeypatch.delenv("HUBSPOT_ACCESS_TOKEN")
    monkeypatch.delenv("MAILERLITE_API_KEY")
    assert run("--history").code == 0


def test_rejected_export_is_exact_csv(run, hubspot_fake, mailerlite_fake, tmp_path):
    mailerlite_fake.undeliverable_domains.add("blocked.example")
    seed_contacts(hubspot_fake, 2)
    bad = hubspot_fake.add_contact({"email": "=cmd@blocked.example"}, modified_ms=1)
    worse = hubspot_fake.add_contact({"email": "nope"}, modified_ms=1)
    run()
    result = run("--rejected")
    rows = list(csv.reader(io.StringIO(result.out)))
    assert rows[0] == ["email", "hubspot_id", "kind", "reason", "attempts", "first_seen", "last_seen"]
    assert [r[:5] for r in rows[1:]] == [
        ["'=cmd@blocked.example", bad, "rejected", "MailerLite: email: The email must be a valid email address.", "1"],
        ["nope", worse, "rejected", "invalid email address 'nope'", "1"],
    ]
    out_file = tmp_path / "rejected.csv"
    assert run("--rejected", "--output", str(out_file)).code == 0
    assert out_file.read_text() == result.out


def test_history_json_is_json(run, hubspot_fake, mailerlite_fake):
    seed_contacts(hubspot_fake, 3)
    run()
    run("--dry-run")
    result = run("--history")  # the runner adds --json
    runs = json.loads(result.out)
    assert result.code == 0 and [(r["mode"], r["dry_run"], r["exit_code"]) for r in runs] == [
        ("incremental", 1, 0), ("full", 0, 0)]
    assert runs[1]["created"] == 3


def test_output_without_rejected_is_an_error_not_a_sync(run, hubspot_fake, mailerlite_fake, tmp_path):
    seed_contacts(hubspot_fake, 3)
    with pytest.raises(SystemExit) as stopped:
        run("--output", str(tmp_path / "out.csv"))
    assert stopped.value.code == 2
    assert "--output goes with --rejected" in run.capsys.readouterr().err
    assert mailerlite_fake.log == [] and not (tmp_path / "out.csv").exists()


def test_version_names_the_program(capsys):
    with pytest.raises(SystemExit) as stopped:
        cli.main(["--version"])
    assert stopped.value.code == 0
    assert re.fullmatch(r"hubspot-mailerlite-sync \d+\.\d+\.\d+\n", capsys.readouterr().out)


def test_reports_before_any_run_say_so(run, monkeypatch, tmp_path):
    result = run("--history", sandbox_dir=tmp_path / "no-sandbox")
    # The runner passes --env-file, and the hint repeats it (test_command_hints: a hint names its client).
    assert result.code == 2 and f"run {COMMAND} --env-file " in result.err and "sandbox" not in result.err


def test_advisories_are_said_once_under_cron_and_by_every_check(hubspot_fake, mailerlite_fake, tmp_path):
    # A working token without crm.schemas.contacts.read, a .env as cPanel's File Manager makes it
    # (mode 644) and a misspelt setting: each is worth one mail, not one every hour.
    hubspot_fake.tokens["hs-test-token"] = {"crm.objects.contacts.read"}
    seed_contacts(hubspot_fake, 5)
    env_file = tmp_path / "sync.env"
    settings = dict(fake_env(hubspot_fake, mailerlite_fake, tmp_path), SYNC_MAPING_FILE="mapping.toml")
    env_file.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
    env_file.chmod(0o644)
    first = run_main(["--env-file", str(env_file)], {}, tmp_path)
    assert first.returncode == 0
    # One line each, and the command that repeats them on a line of its own below each.
    warnings = messages(first.stderr)
    assert len(warnings) == 3 and all(w.startswith("WARNING: ") for w in warnings), first.stderr
    assert "HubSpot rejected the access token" not in first.stderr
    assert any("lacks the scope crm.schemas.contacts.read: contacts still sync" in w for w in warnings)
    assert any(f"{env_file} can be read by other users" in w and "chmod 600" in w for w in warnings)
    assert any("SYNC_MAPING_FILE; did you mean SYNC_MAPPING_FILE?" in w for w in warnings)
    hubspot_fake.add_contact({"email": "new@example.com"})
    second = run_main(["--env-file", str(env_file)], {}, tmp_path)
    assert (second.returncode, second.stderr) == (0, "")  # cron mails nothing
    assert mailerlite_fake.subscriber("new@example.com") is not None
    for _ in range(2):
        check = run_main(["--env-file", str(env_file), "--check"], {}, tmp_path)
        assert "can be read by other users" in check.stderr and "did you mean SYNC_MAPPING_FILE" in check.stderr
    env_file.chmod(0o600)  # fixed, then broken again: said again
    assert run_main(["--env-file", str(env_file)], {}, tmp_path).stderr == ""
    env_file.chmod(0o644)
    assert "can be read by other users" in run_main(["--env-file", str(env_file)], {}, tmp_path).stderr


def test_check_without_a_network_says_each_cause_once_and_exits_3(run, monkeypatch):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    monkeypatch.setenv("HUBSPOT_BASE_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("MAILERLITE_BASE_URL", f"http://127.0.0.1:{port}/api")
    result = run("--check")
    assert result.code == 3  # an outage: try again later (2 is for the settings)
    down = [line for line in result.out.splitlines() if "could not be reached" in line]
    assert [line.split(" ")[0] for line in down] == ["HubSpot", "MailerLite"], result.out
    assert "next run continues" not in result.out and "problem" not in result.out
    assert "All checks passed" not in result.out


@pytest.mark.parametrize("columns", [40, 60, 80, 100, 120, 200])
@pytest.mark.parametrize("notes", [
    ["sent 1200", "rejected 1, failed 0", "110 contacts/s", "unchanged 30"],
    ["waiting 12 s for MailerLite's rate limit"],
    ["waiting 12 s for HubSpot's recovery (HubSpot answered 503 {x})"],
    [],
])
def test_the_bar_layout_fits_every_width(columns, notes):
    from tqdm import tqdm

    from sync.progress import MIN_BAR, fit
    line = tqdm.format_meter(1234, 5000, 3.0, ncols=columns - 1, bar_format=fit(columns, "HubSpot -> MailerLite",
                                                                                  "1234/5000", notes))
    assert len(line) < columns, line
    assert len(line.split("|")[1]) >= MIN_BAR, line
    if notes and columns >= 80:
        assert notes[0][:40] in line  # the most important note is kept (if need be, cut)
