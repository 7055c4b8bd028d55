"""Issue 23, items 1-3: a typo, a revoked key or a second client's settings never damage MailerLite.

Every test drives main.py against the fake HubSpot and MailerLite servers.
"""

from __future__ import annotations

import socket

import pytest

from sync import cli, config
from sync.sandbox.fakes.hubspot import FakeHubSpot
from sync.sandbox.fakes.mailerlite import FakeMailerLite
from tests.conftest import FAST, HS_TOKEN, ML_TOKEN, TIME_SCALE, messages, seed_contacts
from tests.test_operations import ping_server  # noqa: F401  (a fixture)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _writes(fake: FakeMailerLite, since: int = 0) -> list:
    return [r for r in fake.log[since:] if r.method != "GET"]


# -- item 1: a mapping typo stops before writing -------------------------------------------------------

def _mapping(run, text: str) -> str:
    path = run.tmp_path / "mapping.toml"
    path.write_text(text)
    return str(path)


@pytest.fixture
def job_titles(run, hubspot_fake, mailerlite_fake):
    """Ten subscribers with a job title, synced by a correct mapping."""
    mailerlite_fake.add_field("Job title")
    seed_contacts(hubspot_fake, 10, jobtitle="Engineer")
    first = run("--mapping", _mapping(run, '[fields]\njobtitle = "job_title"\n'))
    assert first.code == 0 and first.summary["created"] == 10
    return len(mailerlite_fake.log)


@pytest.mark.parametrize("flags", [("--full",), ()])
def test_a_misspelt_hubspot_property_stops_the_run_before_any_write(run, hubspot_fake, mailerlite_fake, job_titles,
                                                                    flags):
    hubspot_fake.update_contact(str(next(iter(hubspot_fake.contacts))), {"firstname": "Changed"})
    typo = run("--mapping", _mapping(run, '[fields]\njob_titel = "job_title"\n'), *flags)
    assert typo.code == 2
    assert "HubSpot has no contact property job_titel (did you mean jobtitle?)" in typo.summary["message"]
    assert _writes(mailerlite_fake, job_titles) == []
    assert all(s["fields"]["job_title"] == "Engineer" for s in mailerlite_fake.subscribers.values())


@pytest.mark.parametrize("reading", ["absent", "null"])
def test_without_the_schema_scope_names_are_checked_against_the_contacts_read(run, hubspot_fake, mailerlite_fake,
                                                                              job_titles, reading):
    hubspot_fake.tokens[HS_TOKEN] = {"crm.objects.contacts.read"}  # no crm.schemas.contacts.read
    hubspot_fake.unknown_properties = reading
    good = run("--full", "--mapping", _mapping(run, '[fields]\njobtitle = "job_title"\n'))
    assert good.code == 0, good.err  # existing names pass under either reading
    mark = len(mailerlite_fake.log)
    typo = run("--full", "--mapping", _mapping(run, '[fields]\njob_titel = "job_title"\n'))
    if reading == "absent":
        assert typo.code == 2
        # (No did-you-mean here: without the scope HubSpot's list of names cannot be read.)
        assert typo.summary["message"].startswith("HubSpot returned no contact property job_titel; fix the mapping")
        assert _writes(mailerlite_fake, mark) == []
    else:  # HubSpot answering null for it cannot be told from an empty property: the documented limit
        assert typo.code == 0


def test_a_misspelt_mailerlite_field_stops_the_run_before_any_write(run, hubspot_fake, mailerlite_fake, job_titles):
    hubspot_fake.update_contact(str(next(iter(hubspot_fake.contacts))), {"jobtitle": "Manager"})
    typo = run("--mapping", _mapping(run, '[fields]\njobtitle = "job_titel"\n'))
    assert typo.code == 2
    assert "MailerLite has no field job_titel (did you mean job_title?)" in typo.summary["message"]
    assert _writes(mailerlite_fake, job_titles) == []
    check = run("--check", "--mapping", _mapping(run, '[fields]\njobtitle = "job_titel"\n'))
    assert check.code == 2 and "did you mean job_title?" in check.out + check.err


def test_an_unknown_mapping_key_stops_the_run_and_the_check(run, hubspot_fake, mailerlite_fake):
    seed_contacts(hubspot_fake, 3)
    mapping = _mapping(run, "creat_missing_fields = true\n")
    for flags in ((), ("--check",)):
        result = run("--mapping", mapping, *flags)
        assert result.code == 2 and "did you mean create_missing_fields?" in result.err, flags
    assert _writes(mailerlite_fake) == []


@pytest.mark.parametrize("where", ["env file", "environment"])
def test_an_unknown_setting_fails_the_check_and_a_run_warns_in_one_line(run, hubspot_fake, monkeypatch, where):
    if where == "env file":
        run.env_file.write_text("SYNC_WRITE_BAK=true\n")
    else:
        monkeypatch.setenv("SYNC_WRITE_BAK", "true")
    seed_contacts(hubspot_fake, 3)
    check = run("--check")
    assert check.code == 2 and "SYNC_WRITE_BAK; did you mean SYNC_WRITE_BACK?" in check.err
    synced = run()
    assert synced.code == 0
    said = [message for message in messages(synced.err) if "SYNC_WRITE_BAK" in message]
    assert len(said) == 1 and said[0].startswith("WARNING: ") and "did you mean SYNC_WRITE_BACK?" in said[0]


# -- item 2: every run proves both credentials ---------------------------------------------------------

def test_a_revoked_mailerlite_key_fails_an_idle_run_and_pings_fail(run, hubspot_fake, mailerlite_fake, monkeypatch,
                                                                   ping_server):  # noqa: F811
    url, seen = ping_server
    monkeypatch.setenv("HEALTHCHECK_URL", url)
    seed_contacts(hubspot_fake, 3)
    assert run().code == 0
    mailerlite_fake.tokens = {"a-new-key"}  # the old key was revoked; nothing changed in HubSpot
    idle = run()
    assert idle.code == 2 and "check MAILERLITE_API_KEY, read from the environment" in idle.err
    assert seen == ["/ping/abc", "/ping/abc/fail"]


@pytest.mark.parametrize("setting", ["MAILERLITE_BASE_URL", "HUBSPOT_BASE_URL"])
def test_an_unreachable_api_fails_an_idle_run_naming_host_port_and_setting(run, hubspot_fake, monkeypatch,
                                                                           ping_server, setting):  # noqa: F811
    url, seen = ping_server
    monkeypatch.setenv("HEALTHCHECK_URL", url)
    seed_contacts(hubspot_fake, 3)
    assert run().code == 0
    port = _closed_port()
    monkeypatch.setenv(setting, f"http://127.0.0.1:{port}" + ("/api" if setting.startswith("MAILERLITE") else ""))
    idle = run()
    assert idle.code == 3
    message = idle.summary["message"]
    assert f"127.0.0.1:{port} (set by {setting})" in message and "Error" not in message
    assert seen == ["/ping/abc", "/ping/abc/fail"]


@pytest.mark.parametrize("where", ["env file", "environment"])
def test_a_refused_hubspot_token_names_its_setting_and_where_it_was_read(run, hubspot_fake, monkeypatch, where):
    if where == "env file":
        monkeypatch.delenv("HUBSPOT_ACCESS_TOKEN")
        run.env_file.write_text("HUBSPOT_ACCESS_TOKEN=revoked-token\n")
        expected = f"HUBSPOT_ACCESS_TOKEN, read from {run.env_file}"
    else:
        monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", "revoked-token")
        expected = "HUBSPOT_ACCESS_TOKEN, read from the environment"
    result = run()
    assert result.code == 2
    assert "HubSpot rejected the access token" in result.summary["message"]
    assert expected in result.summary["message"] and "revoked-token" not in result.err + result.out


# -- item 3: one state per account ---------------------------------------------------------------------

@pytest.fixture
def client_b():
    hs, ml = FakeHubSpot(time_scale=TIME_SCALE).start(), FakeMailerLite(time_scale=TIME_SCALE).start()
    hs.portal_id, ml.account_id = 2, "99999"
    yield hs, ml
    hs.stop()
    ml.stop()


@pytest.mark.parametrize("known", ["both", "hubspot only", "mailerlite only"])
def test_a_second_clients_settings_on_the_same_state_stop_before_any_write(run, hubspot_fake, mailerlite_fake,
                                                                           monkeypatch, client_b, known):
    hs_b, ml_b = client_b
    if known == "hubspot only":  # the other reading: MailerLite answers carry no account header
        mailerlite_fake.account_id = ml_b.account_id = None
    if known == "mailerlite only":  # ...or the token may not read the account details
        hubspot_fake.account_info_answers = hs_b.account_info_answers = False
    seed_contacts(hubspot_fake, 30)
    assert run().summary["created"] == 30
    seed_contacts(hs_b, 5, start=100)
    monkeypatch.setenv("HUBSPOT_BASE_URL", hs_b.url)
    monkeypatch.setenv("MAILERLITE_BASE_URL", ml_b.base_url)
    for flags in ((), ("--full",), ("--full", "--allow-mass-leave"), ("--check",)):
        other = run(*flags)
        assert other.code == 2, flags
        message = other.summary["message"] if flags != ("--check",) else other.err
        assert "nothing was done" in message and "SYNC_STATE_DB" in message and "--env-file" in message
        if known != "mailerlite only":
            assert "HubSpot portal 1" in message and "HubSpot portal 2" in message
        if known != "hubspot only":
            assert "MailerLite account 83510" in message and "MailerLite account 99999" in message
        assert "allow-mass-leave" not in other.err + other.out
        assert _writes(ml_b) == [] and ml_b.subscribers == {}
    # Client A's state is untouched: its next run finds nothing to do.
    monkeypatch.setenv("HUBSPOT_BASE_URL", hubspot_fake.url)
    monkeypatch.setenv("MAILERLITE_BASE_URL", mailerlite_fake.base_url)
    mark = len(mailerlite_fake.log)
    again = run()
    assert again.code == 0 and again.summary["mode"] == "incremental" and _writes(mailerlite_fake, mark) == []


def test_accounts_nobody_names_never_stop_a_run(run, hubspot_fake, mailerlite_fake):
    hubspot_fake.account_info_answers = False
    mailerlite_fake.account_id = None
    seed_contacts(hubspot_fake, 3)
    assert run().code == 0
    assert run().code == 0


def project_of_env_files(tmp_path, monkeypatch):
    """main.py's folder, empty, and no setting in the environment: each client's come from its own file."""
    project = tmp_path / "project"
    project.mkdir()
    for key in ("HUBSPOT_ACCESS_TOKEN", "MAILERLITE_API_KEY", "HUBSPOT_BASE_URL", "MAILERLITE_BASE_URL",
                "SYNC_STATE_DB"):
        monkeypatch.delenv(key)
    return project


def _client_env(tmp_path, name, hs, ml):
    path = tmp_path / f"{name}.env"
    path.write_text(f"HUBSPOT_ACCESS_TOKEN={HS_TOKEN}\nMAILERLITE_API_KEY={ML_TOKEN}\nHUBSPOT_BASE_URL={hs.url}\n"
                    f"MAILERLITE_BASE_URL={ml.base_url}\nSYNC_HTTP_TIMEOUT=2\n")
    path.chmod(0o600)
    return path


def test_each_env_file_gets_its_own_state_beside_it(run, tmp_path, hubspot_fake, mailerlite_fake, monkeypatch,
                                                    client_b):
    hs_b, ml_b = client_b
    project = project_of_env_files(tmp_path, monkeypatch)
    seed_contacts(hubspot_fake, 4)
    seed_contacts(hs_b, 6, start=100)
    env_a = _client_env(tmp_path, "clientA", hubspot_fake, mailerlite_fake)
    env_b = _client_env(tmp_path, "clientB", hs_b, ml_b)
    assert cli.main(["--quiet", "--env-file", str(env_a)], FAST, project_dir=project) == 0
    assert cli.main(["--quiet", "--env-file", str(env_b)], FAST, project_dir=project) == 0
    assert len(mailerlite_fake.subscribers) == 4 and len(ml_b.subscribers) == 6
    assert (tmp_path / "clientA.state.db").exists() and (tmp_path / "clientB.state.db").exists()
    assert not (project / "sync_state.db").exists()


def test_an_env_file_that_used_the_shared_state_is_told_how_to_keep_it(run, tmp_path, hubspot_fake, mailerlite_fake,
                                                                       monkeypatch):
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.delenv("SYNC_STATE_DB")
    (project / "sync_state.db").write_bytes(b"")  # an older version's shared state
    env = tmp_path / "clientA.env"
    env.write_text("")
    seed_contacts(hubspot_fake, 3)
    code = cli.main(["--json", "--env-file", str(env)], FAST, project_dir=project)
    assert code == 2 and len(mailerlite_fake.log) == 0
    err = run.capsys.readouterr().err
    assert f"mv {project / 'sync_state.db'} {tmp_path / 'clientA.state.db'}" in err
    assert f"SYNC_STATE_DB={tmp_path / 'clientA.state.db'}" in err


@pytest.mark.parametrize("env_file, state", [
    (None, "PROJECT/sync_state.db"),  # the default .env: existing installs keep their state
    ("PROJECT/.env", "PROJECT/sync_state.db"),
    ("/dev/null", "PROJECT/sync_state.db"),  # no file: everything from the environment
    ("/srv/clients/clientB.env", "/srv/clients/clientB.state.db"),
    ("/srv/clients/b/.env", "/srv/clients/b/sync_state.db"),
    ("/srv/clients/acme.conf", "/srv/clients/acme.state.db"),
])
def test_the_default_state_follows_the_env_file(monkeypatch, tmp_path, env_file, state):
    from pathlib import Path
    given = None if env_file is None else Path(env_file.replace("PROJECT", str(tmp_path)))
    assert config.default_state_path(given, tmp_path) == Path(state.replace("PROJECT", str(tmp_path)))
