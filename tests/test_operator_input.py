"""Files an operator writes by hand, as Windows editors save them, and scripts reading --json: each test
drives main.py against the fakes."""

from __future__ import annotations

import json

import pytest

from tests.conftest import HS_TOKEN, ML_TOKEN, seed_contacts
from tests.test_cli_subprocess import fake_env, run_main
from tests.test_operations import ping_server  # noqa: F401 (a fixture)
from tests.test_secrets import secret_run  # noqa: F401 (a fixture)

MAPPING = 'create_missing_fields = true\n[fields]\njobtitle = "job_title"\n'


# -- a mapping file saved by Notepad --------------------------------------------------------------------------

def test_a_mapping_saved_with_a_byte_order_mark_is_read(run, hubspot_fake, mailerlite_fake, tmp_path):
    # Notepad (before Windows 10 1903, and "UTF-8 with BOM" since) starts the file with EF BB BF; the
    # .env file was read past it, the mapping file was "not valid TOML (at line 1, column 1)".
    seed_contacts(hubspot_fake, 3, jobtitle="Engineer")
    mapping = tmp_path / "mapping.toml"
    mapping.write_bytes(b"\xef\xbb\xbf" + MAPPING.replace("\n", "\r\n").encode())
    done = run("--mapping", str(mapping))
    assert done.code == 0, done.err
    assert mailerlite_fake.subscriber("person0@example.com")["fields"]["job_title"] == "Engineer"


@pytest.mark.parametrize("encoding, named", [("cp1252", "line 3"), ("utf-16", "UTF-16")])
def test_a_mapping_not_saved_as_utf8_says_so_in_one_line(run, hubspot_fake, mailerlite_fake, tmp_path,
                                                          encoding, named):
    # Notepad's "ANSI" (an accented group name) or "Unicode" (UTF-16): the run said "cannot read mapping
    # file (UnicodeDecodeError)", which troubleshooting.md explains as a permissions problem.
    seed_contacts(hubspot_fake, 3)
    mapping = tmp_path / "mapping.toml"
    mapping.write_bytes('create_missing_fields = true\r\n[groups]\r\nall = ["Clients été"]\r\n'.encode(encoding))
    done = run("--mapping", str(mapping))
    assert done.code == 2
    lines = done.err.splitlines()
    assert len(lines) == 1, done.err
    assert "is not UTF-8 text" in lines[0] and named in lines[0] and "save it as UTF-8" in lines[0], lines[0]
    assert str(mapping) in lines[0] and "UnicodeDecodeError" not in lines[0]
    assert json.loads(done.out)["exit_code"] == 2
    assert [r for r in mailerlite_fake.log if r.method != "GET"] == []


def test_a_settings_file_not_saved_as_utf8_names_the_line(hubspot_fake, mailerlite_fake, tmp_path):
    env_file = tmp_path / "client.env"
    env_file.write_bytes(f"# Café Müller's account\nHUBSPOT_ACCESS_TOKEN={HS_TOKEN}\nMAILERLITE_API_KEY={ML_TOKEN}\n"
                         .encode("cp1252"))
    env_file.chmod(0o600)
    done = run_main(["--env-file", str(env_file)], {}, tmp_path)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr
    assert f"{env_file} is not UTF-8 text (line 1)" in done.stderr and "save it as UTF-8" in done.stderr
    assert "UnicodeDecodeError" not in done.stderr


# -- --json: one JSON object on stdout on every exit path, with the keys the README promises ------------------

def _one_json_object(stdout: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.strip()]
    assert len(lines) == 1, stdout
    return json.loads(lines[0])


@pytest.mark.parametrize("args, code", [
    (["--force"], 2),  # a flag combination the program refuses
    (["--output", "x.csv"], 2),  # one argparse refuses
    (["--touch", "0", "--sandbox"], 2),  # a value argparse refuses
    (["--bogus"], 2),
], ids=["force-without-full", "output-alone", "touch-zero", "unknown-flag"])
def test_a_refused_command_line_still_answers_json(hubspot_fake, mailerlite_fake, tmp_path, args, code):
    # A script runs `main.py --json ...` and reads stdout: it got nothing at all, not even the exit code.
    done = run_main(["--json", *args], fake_env(hubspot_fake, mailerlite_fake, tmp_path), tmp_path)
    assert done.returncode == code
    answer = _one_json_object(done.stdout)
    assert answer["exit_code"] == code and answer["message"] and answer["message"] in done.stderr
    assert mailerlite_fake.log == [] and hubspot_fake.log == []


@pytest.mark.parametrize("setting, value, said", [
    ("SYNC_MAX_RUNTIME", "an hour", "SYNC_MAX_RUNTIME must be a number of seconds"),
    ("SYNC_MAPPING_FILE", "/nowhere/mapping.toml", "mapping file /nowhere/mapping.toml does not exist"),
])
def test_a_run_stopped_before_it_began_answers_exit_code_and_message(run, monkeypatch, setting, value, said):
    # The README's keys include `message` and `exit_code`; a settings problem printed {"error": ...} only,
    # so `summary["message"]` raised KeyError in the script that reads it.
    monkeypatch.setenv(setting, value)
    done = run()
    assert done.code == 2
    answer = _one_json_object(done.out)
    assert answer["exit_code"] == 2 and said in answer["message"], answer
    assert answer["error"] == answer["message"]  # kept: the key scripts may already read


@pytest.mark.parametrize("signal_name, code", [("SIGTERM", 143), ("bug", 3)])
def test_a_run_stopped_half_way_answers_its_counts(run, hubspot_fake, mailerlite_fake, monkeypatch, signal_name,
                                                    code):
    # Stopped by SIGTERM (a service manager's timeout) or a bug after some contacts went: the run is recorded
    # with its counts, but --json said only {"exit_code", "error"}; a script could not tell what was done.
    from sync import cli
    from sync.mailerlite import MailerLiteClient

    seed_contacts(hubspot_fake, 120)
    real = MailerLiteClient.upsert_batch
    calls = []

    def then_stop(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            if signal_name == "SIGTERM":
                cli._stop_on_signal(cli.signal.SIGTERM, None)
            raise RuntimeError("boom")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(MailerLiteClient, "upsert_batch", then_stop)
    done = run()
    assert done.code == code, done.err
    answer = _one_json_object(done.out)
    assert answer["exit_code"] == code and answer["message"] and answer["mode"] == "full"
    assert 0 < answer["created"] == len(mailerlite_fake.subscribers) < 120
    assert answer["read"] >= answer["created"]


# -- an empty environment variable does not hide the settings file's value ------------------------------------

def test_an_empty_environment_variable_leaves_the_settings_files_value(hubspot_fake, mailerlite_fake, tmp_path):
    # Docker's `environment: - X=${X}`, a wrapper script's `export X=` or a crontab line `X=` set a variable to
    # nothing. Empty means "not set" everywhere else, but it overrode the file: the run said
    # "HUBSPOT_ACCESS_TOKEN is not set: add it to .env" about a token that was in the file, and an empty
    # SYNC_STATE_DB or SYNC_MAPPING_FILE silently swapped the file's state or mapping for the defaults.
    seed_contacts(hubspot_fake, 4, jobtitle="Engineer")
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(MAPPING)
    env_file = tmp_path / "client.env"
    state = tmp_path / "client-state.db"
    env_file.write_text("\n".join(f"{k}={v}" for k, v in {
        **fake_env(hubspot_fake, mailerlite_fake, tmp_path), "SYNC_STATE_DB": str(state),
        "SYNC_MAPPING_FILE": str(mapping)}.items()) + "\n")
    env_file.chmod(0o600)
    blank = {"HUBSPOT_ACCESS_TOKEN": "", "MAILERLITE_API_KEY": " ", "SYNC_STATE_DB": "", "SYNC_MAPPING_FILE": ""}
    done = run_main(["--env-file", str(env_file)], blank, tmp_path)
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    assert state.exists() and not (tmp_path / "client.state.db").exists()
    assert mailerlite_fake.subscriber("person0@example.com")["fields"]["job_title"] == "Engineer"


def test_a_token_set_nowhere_names_the_settings_file_to_put_it_in(hubspot_fake, mailerlite_fake, tmp_path):
    env_file = tmp_path / "clientB.env"
    env_file.write_text(f"MAILERLITE_API_KEY={ML_TOKEN}\n")
    env_file.chmod(0o600)
    done = run_main(["--env-file", str(env_file)], {}, tmp_path)
    assert done.returncode == 2
    assert f"HUBSPOT_ACCESS_TOKEN is not set: add it to {env_file}" in done.stderr, done.stderr


# -- a healthcheck URL with a query string --------------------------------------------------------------------

def test_a_failed_run_pings_fail_also_when_the_url_has_a_query(run, hubspot_fake, monkeypatch,
                                                                ping_server):  # noqa: F811
    # healthchecks.io's slug URLs take ?create=1 (and ?rid=...), Uptime Kuma's push URLs ?status=up&msg=OK: the
    # failure ping appended /fail after the query, so a failed run pinged ".../abc?create=1/fail", which the
    # service reads as a success ping (a query value ending in /fail), and nobody heard of the failure.
    url, seen = ping_server
    monkeypatch.setenv("HEALTHCHECK_URL", url + "?create=1")
    seed_contacts(hubspot_fake, 3)
    assert run().code == 0
    monkeypatch.setenv("MAILERLITE_API_KEY", "revoked")
    assert run().code == 2
    assert seen == ["/ping/abc?create=1", "/ping/abc/fail?create=1"]


@pytest.mark.parametrize("url, success, target", [
    ("https://hc-ping.com/abc", True, "https://hc-ping.com/abc"),
    ("https://hc-ping.com/abc", False, "https://hc-ping.com/abc/fail"),
    ("https://hc-ping.com/abc/", False, "https://hc-ping.com/abc/fail"),
    ("https://hc-ping.com/abc/", True, "https://hc-ping.com/abc"),
    ("https://hc-ping.com/key/backup-job?create=1", False, "https://hc-ping.com/key/backup-job/fail?create=1"),
    ("https://kuma.example/api/push/T0k?status=up&msg=OK", False, "https://kuma.example/api/push/T0k/fail?status=up&msg=OK"),
    ("https://hc-ping.com/abc?rid=1#x", True, "https://hc-ping.com/abc?rid=1#x"),
])
def test_ping_target(url, success, target):
    from sync.healthcheck import ping_target

    assert ping_target(url, success) == target


# -- a top-level setting written below a [section] ------------------------------------------------------------

@pytest.mark.parametrize("text, setting, section", [
    ('[fields]\njobtitle = "job_title"\ncreate_missing_fields = true\n', "create_missing_fields", "fields"),
    ('[fields]\njobtitle = "job_title"\non_leave = "leave"\n', "on_leave", "fields"),
    ('[groups]\nall = ["A"]\n[groups.property]\nlifecyclestage = "Stage: {label}"\nengagement = true\n', "engagement",
     "groups.property"),
    ('[scope.where]\nlifecyclestage = ["customer"]\nmass_leave_percent = 20\n', "mass_leave_percent", "scope.where"),
    ('[consent]\noptout_properties = ["hs_email_optout"]\nwrite_back = true\n', "write_back", "consent"),
])
def test_a_setting_below_a_section_is_named_as_misplaced(tmp_path, text, setting, section):
    # Appending `create_missing_fields = true` at the end of the file puts it in the last [section] (TOML's
    # rule): the error was "[fields] create_missing_fields: give a field key ...", and `on_leave = "leave"`
    # under [fields] read as a HubSpot property on_leave, reported as missing from HubSpot.
    from sync.errors import ConfigError
    from sync.mapping_file import load_mapping

    mapping = tmp_path / "mapping.toml"
    mapping.write_text(text)
    with pytest.raises(ConfigError) as raised:
        load_mapping(mapping)
    message = str(raised.value)
    assert f"{setting} is inside [{section}]" in message and f"move {setting} to the top" in message, message


def test_a_setting_below_a_section_stops_the_check_with_one_line(run, hubspot_fake, tmp_path):
    seed_contacts(hubspot_fake, 2)
    mapping = tmp_path / "mapping.toml"
    mapping.write_text('[fields]\njobtitle = "job_title"\ncreate_missing_fields = true\n')
    done = run("--check", "--mapping", str(mapping))
    assert done.code == 2 and len(done.err.splitlines()) == 1
    assert "create_missing_fields is inside [fields]" in done.err, done.err


def test_a_property_named_like_a_setting_still_maps_when_it_reads_as_a_field(tmp_path):
    from sync.mapping_file import load_mapping

    mapping = tmp_path / "mapping.toml"
    mapping.write_text('[fields]\nengagement = "hs_engagement"\n')  # a custom property named engagement
    assert any(rule.prop == "engagement" for rule in load_mapping(mapping).rules)


# -- stdout that is not UTF-8 (Windows' `> file`, a C locale) ------------------------------------------------

def test_reports_reach_a_stdout_that_is_not_utf8(hubspot_fake, mailerlite_fake, tmp_path):
    # `python main.py --rejected > rejected.csv` on Windows writes in the ANSI code page, as does any stdout of
    # a C locale with UTF-8 mode off: one contact named in another alphabet made --rejected "unexpected
    # UnicodeEncodeError ... please report it" (exit 3), and --check the same on a sample value.
    seed_contacts(hubspot_fake, 3, city="Zürich")
    hubspot_fake.add_contact({"email": "王@例子", "firstname": "王"}, modified_ms=1)
    env = {**fake_env(hubspot_fake, mailerlite_fake, tmp_path), "PYTHONIOENCODING": "ascii"}
    assert run_main([], env, tmp_path).returncode == 1
    rejected = run_main(["--rejected"], env, tmp_path)
    assert (rejected.returncode, rejected.stderr) == (0, ""), rejected.stderr
    assert "王@例子" in rejected.stdout  # UTF-8, as --output writes it
    check = run_main(["--check"], env, tmp_path)
    assert check.returncode == 0 and "Zürich" in check.stdout, check.stderr


# -- a state left by a run as another user (sudo once, then cron) ---------------------------------------------

def _as_nobody_possible() -> bool:
    import os
    import shutil

    return hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("setpriv") is not None


@pytest.mark.skipif(not _as_nobody_possible(), reason="needs root and setpriv to run as another user")
def test_a_state_made_by_another_user_is_named_as_such(hubspot_fake, mailerlite_fake, tmp_path):
    # `sudo python main.py` once, then cron as the user: the lock file and the state are root's (0600). The run
    # said "cannot create the lock file (Permission denied); make the folder writable", about a folder that
    # is writable, and --history "cannot be used (OperationalError: unable to open database file)".
    import os
    import shutil
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from tests.test_cli_subprocess import MAIN

    seed_contacts(hubspot_fake, 3)
    shared = Path(tempfile.mkdtemp(prefix="sync-two-users-"))  # pytest's tmp_path is root's alone (0700)
    try:
        shared.chmod(0o777)  # the folder is writable for both: only the files are root's
        env = fake_env(hubspot_fake, mailerlite_fake, shared)
        assert run_main([], env, shared).returncode == 0  # as root
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("HUBSPOT_", "MAILERLITE_", "SYNC_"))}
        for args in ([], ["--history"]):
            done = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable,
                                   str(MAIN), *args], env={**clean, **env, "HOME": str(shared)}, cwd=shared,
                                  capture_output=True, text=True, timeout=120)
            assert done.returncode == 2
            assert len(done.stderr.splitlines()) == 1, done.stderr
            assert f"{shared / 'state.db'}" in done.stderr and "belongs to root, not to nobody" in done.stderr, \
                done.stderr
            assert "sudo chown nobody" in done.stderr and "make the folder" not in done.stderr
    finally:
        shutil.rmtree(shared)


def test_files_of_another_user_are_told_apart(tmp_path, monkeypatch):
    import os

    from sync.private_files import foreign_owner

    mine = tmp_path / "state.db"
    mine.write_text("")
    assert foreign_owner(tmp_path / "missing.db", mine) is None  # mine, or not there: no one else's
    monkeypatch.setattr(os, "geteuid", lambda: os.stat(mine).st_uid + 1)  # this process as another user
    assert foreign_owner(tmp_path / "missing.db", mine) not in (None, "")


# -- a server that echoes part of a token ---------------------------------------------------------------------

def _echo_part_of_the_key(fake):
    """MailerLite's batch answer quoting the first 30 characters of the key in each refused item (as a proxy
    or an API that shortens what it quotes would), glued to an ellipsis, and the key's last 24."""
    from tests.test_secrets import ML_SECRET, refusals_saying

    return refusals_saying(fake, lambda request: {"message": f"key {ML_SECRET[:30]}... may not import this",
                                                  "errors": {"email": [f"refused for key ending {ML_SECRET[-24:]}"]}})


def test_part_of_a_token_echoed_by_a_server_is_redacted(secret_run, hubspot_fake, mailerlite_fake,  # noqa: F811
                                                       tmp_path):
    # Only the whole token and "Bearer ..." were recognised: a shortened echo went into the state's reason,
    # --rejected and the log as it was.
    from tests.test_secrets import ML_SECRET, everything_written

    run = secret_run
    seed_contacts(hubspot_fake, 3)
    mailerlite_fake.undeliverable_domains.add("example.org")
    hubspot_fake.add_contact({"email": "refused@example.org"}, modified_ms=1)
    mailerlite_fake.faults.rate, mailerlite_fake.faults.kinds = 1.0, (_echo_part_of_the_key(mailerlite_fake),)
    first = run("--log-file", str(run.log_file), "--verbose")
    assert first.code == 1 and first.summary["rejected"] == 1, first.err
    listed = run("--rejected")
    assert "refused for key ending" in listed.out  # the reason is kept, the key is not
    written = everything_written(run).decode("utf-8", "replace") + first.err + first.out + listed.out
    for start in range(len(ML_SECRET) - 16 + 1):
        fragment = ML_SECRET[start:start + 16]
        assert fragment not in written, f"part of the key leaked: characters {start}..{start + 16}"


@pytest.mark.parametrize("text, expected", [
    ("key eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1... refused", "key [redacted] refused"),
    ("ending iJ9.SECRETMAILERLITE.sig", "ending [redacted]"),
    ("pat-na1-7f3a9c2e-0000-4bad", "[redacted]"),
    # Words a made-up token shares with paths and commands are no part of a secret: the sandbox's tokens
    # (sandbox-mailerlite-token) beside a checkout named hubspot-mailerlite-sync.
    ("Mapping: /home/me/hubspot-mailerlite-sync/mapping.example.toml", None),
    ("python main.py --sandbox --rejected; 0123456789 firstname.lastname@example.com", None),
])
def test_fragments_of_tokens(monkeypatch, text, expected):
    from sync import redaction

    monkeypatch.setattr(redaction, "_secrets", set())
    redaction.register_secrets(["eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.SECRETMAILERLITE.sig",
                                "pat-na1-7f3a9c2e-0000-4bad-beef-123456789abc",
                                "sandbox-hubspot-token", "sandbox-mailerlite-token"])
    assert redaction.redact(text) == (text if expected is None else expected)


# -- a missing scope names where scopes are added today -------------------------------------------------------

def test_a_missing_write_scope_says_to_add_it_to_the_service_key(run, hubspot_fake, monkeypatch):
    # HubSpot stopped creating private apps in October 2026 (README, Setup): the message sent new users to a
    # private app they do not have.
    hubspot_fake.tokens["hs-test-token"] = {s for s in hubspot_fake.tokens["hs-test-token"] if "write" not in s}
    seed_contacts(hubspot_fake, 2)
    monkeypatch.setenv("SYNC_WRITE_BACK", "true")
    done = run()
    assert done.code == 2 and "add the scope to the service key or private app" in done.err, done.err


# -- --check never says "All checks passed." above an exit 2 --------------------------------------------------

def test_check_lists_what_would_stop_a_run_among_its_problems(run, hubspot_fake, mailerlite_fake, tmp_path):
    # A misspelt setting (or another pair of accounts' state) made --check exit 2, but its report ended
    # "All checks passed.", which is what a person reads.
    seed_contacts(hubspot_fake, 2)
    run.env_file.write_text("SYNC_WRITE_BAK=true\n")
    check = run("--check")
    assert check.code == 2
    assert "All checks passed." not in check.out and "1 problem(s):" in check.out, check.out
    assert "SYNC_WRITE_BAK" in check.out.split("1 problem(s):")[1]
    run.env_file.write_text("")
    assert run("--check").code == 0 and "All checks passed." in run("--check").out


def test_a_token_under_a_lower_case_name_is_pointed_at(hubspot_fake, mailerlite_fake, tmp_path):
    # Windows' environment ignores case, the settings file does not: "HUBSPOT_ACCESS_TOKEN is not set: add it"
    # about a file that holds it as hubspot_access_token.
    env_file = tmp_path / "client.env"
    env_file.write_text(f"hubspot_access_token={HS_TOKEN}\nMAILERLITE_API_KEY={ML_TOKEN}\n")
    env_file.chmod(0o600)
    done = run_main(["--env-file", str(env_file)], {}, tmp_path)
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1
    assert "HUBSPOT_ACCESS_TOKEN is not set" in done.stderr and "hubspot_access_token" in done.stderr, done.stderr
    assert "in capitals" in done.stderr and HS_TOKEN not in done.stderr
