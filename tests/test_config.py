"""Settings from .env and the environment: precedence, validation, one-line errors."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from sync.config import KNOWN_SETTINGS, load_settings, misspelt_settings, shared_env_file
from sync.errors import ConfigError

BASE = "HUBSPOT_ACCESS_TOKEN=pat-1\nMAILERLITE_API_KEY=ml-1\n"


def env_file(tmp_path, text, mode=0o600):
    path = tmp_path / ".env"
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def test_environment_wins_over_the_file(tmp_path):
    settings = load_settings(env_file(tmp_path, BASE), environ={"MAILERLITE_API_KEY": "from-env"})
    assert (settings.hubspot_token, settings.mailerlite_token) == ("pat-1", "from-env")


@pytest.mark.parametrize("text", [
    BASE,
    "\ufeff" + BASE,  # saved by Notepad with a byte-order mark
    "export HUBSPOT_ACCESS_TOKEN=pat-1\nexport MAILERLITE_API_KEY=ml-1\n",
    'HUBSPOT_ACCESS_TOKEN="pat-1"\nMAILERLITE_API_KEY=\'ml-1\'  # a comment\n',
    "# comment\n\n  HUBSPOT_ACCESS_TOKEN = pat-1\r\nMAILERLITE_API_KEY=ml-1\r\n",
])
def test_usual_env_file_spellings(tmp_path, text):
    settings = load_settings(env_file(tmp_path, text), environ={})
    assert (settings.hubspot_token, settings.mailerlite_token) == ("pat-1", "ml-1")


@pytest.mark.parametrize("text,line", [
    (BASE + "this line is nonsense\n", 3),
    ("HUBSPOT_ACCESS_TOKEN pat-1\n" + BASE, 1),
    (BASE + 'SYNC_LOG_FILE="unterminated\n', 3),
])
def test_malformed_lines_are_named(tmp_path, text, line):
    with pytest.raises(ConfigError) as err:
        load_settings(env_file(tmp_path, text), environ={})
    assert f"line {line}" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("key,value,message", [
    ("HUBSPOT_BASE_URL", "http://api.hubapi.com", "must be an https:// URL"),
    ("MAILERLITE_BASE_URL", "ftp://x", "must be an https:// URL"),
    ("SYNC_HTTP_TIMEOUT", "soon", "must be a number of seconds"),
    ("SYNC_HTTP_TIMEOUT", "-1", "must be a number of seconds"),
    ("HEALTHCHECK_URL", "hc-ping.com/x", "HEALTHCHECK_URL must be an http(s) URL"),
    ("MAILERLITE_GROUPS", "x" * 300, "at most 255 characters"),
])
def test_bad_values_are_one_line_errors(tmp_path, key, value, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_settings(env_file(tmp_path, BASE), environ={key: value})


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080", "http://localhost:1/api", "http://[::1]:9/api",
                                 "https://eu1.api.example.com"])
def test_allowed_base_urls(tmp_path, url):
    assert load_settings(env_file(tmp_path, BASE), environ={"HUBSPOT_BASE_URL": url}).hubspot_base_url == url


def test_readable_env_file_is_advised(tmp_path):
    # Said once per state file, not by every load (sync/advisories.py; tests/test_operations.py).
    shared = shared_env_file(env_file(tmp_path, BASE, 0o644))
    assert shared is not None and "can be read by other users" in shared and "chmod 600" in shared
    assert "the sync works" in shared and "(mode 644)" in shared
    assert shared_env_file(env_file(tmp_path, BASE, 0o600)) is None


@pytest.mark.parametrize("name, closest", [("SYNC_MAPING_FILE", "SYNC_MAPPING_FILE"),
                                           ("HUBSPOT_ACCES_TOKEN", "HUBSPOT_ACCESS_TOKEN"),
                                           ("MAILERLITE_GROUP", "MAILERLITE_GROUPS"),
                                           ("SYNC_SOMETHING_ELSE", ""),
                                           ("HEALTHCHECKS_URL", "HEALTHCHECK_URL")])
def test_misspelt_settings_get_the_closest_name(tmp_path, name, closest):
    path = env_file(tmp_path, BASE + f"{name}=x\nPATH_TO_SOMETHING=unrelated\n")
    assert misspelt_settings(path) == [(name, closest)]


def test_known_settings_are_not_misspelt(tmp_path):
    text = "".join(f"{name}=1\n" for name in KNOWN_SETTINGS)
    assert misspelt_settings(env_file(tmp_path, text)) == []


def test_relative_paths_are_beside_main_py(tmp_path):
    from sync.config import PROJECT_DIR
    settings = load_settings(env_file(tmp_path, BASE + "SYNC_STATE_DB=data/s.db\nSYNC_MAPPING_FILE=m.toml\n"),
                             environ={})
    assert settings.state_db == PROJECT_DIR / "data" / "s.db" and settings.mapping_file == PROJECT_DIR / "m.toml"


# -- hostile settings through main.py (issue 15 items 3 and 8) -----------------------------------------

@pytest.mark.parametrize("url", ["http://evil.example\\@127.0.0.1:{port}", "http://user:pw@127.0.0.1:{port}",
                                 "http://127.0.0.1:{port} /x", "http://[::1", "http://127.0.0.1:port/",
                                 "https://", "http://127.0.0.1:{port}/a\tb"])
def test_malformed_or_misleading_base_urls_are_one_line_errors(run, hubspot_fake, monkeypatch, url):
    port = hubspot_fake.url.rsplit(":", 1)[1]
    monkeypatch.setenv("HUBSPOT_BASE_URL", url.format(port=port))
    result = run()
    assert result.code == 2, result.err
    assert result.err.count("\n") == 1 and "HUBSPOT_BASE_URL" in result.err and "unexpected" not in result.err
    assert not hubspot_fake.log  # nothing was sent anywhere


def _fifo(tmp_path):
    import os
    path = tmp_path / "fifo.env"
    os.mkfifo(path)
    return path


def _huge(tmp_path):
    path = tmp_path / "huge.env"
    path.write_text("HUBSPOT_ACCESS_TOKEN=x\n" + "".join(f"KEY_{i}=value {i}\n" for i in range(100_000)))
    path.chmod(0o600)
    return path


@pytest.mark.parametrize("make,message", [(_fifo, "not a regular file"), (_huge, "KB"),
                                          (lambda tmp_path: tmp_path, "not a regular file"),
                                          (lambda tmp_path: Path("/dev/zero"), "not a regular file")],
                         ids=["fifo", "huge", "folder", "dev-zero"])
def test_an_env_file_that_is_not_a_settings_file_is_one_line(run, tmp_path, make, message):
    from sync import cli
    path = make(tmp_path)
    code = cli.main(["--env-file", str(path), "--json"])  # a FIFO would hang here before the fix
    err = run.capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err


@pytest.mark.parametrize("target", ["/dev/zero", "folder", "fifo"])
def test_a_mapping_file_that_is_not_a_file_is_one_line(run, tmp_path, target):
    import os
    path = {"/dev/zero": Path("/dev/zero"), "folder": tmp_path}.get(target, tmp_path / "fifo.toml")
    if target == "fifo":
        os.mkfifo(path)
    result = run("--mapping", str(path))
    assert result.code == 2 and "not a regular file" in result.err and result.err.count("\n") == 1, result.err


def test_a_log_file_on_a_full_disk_is_one_line_and_the_run_goes_on(run, hubspot_fake, mailerlite_fake):
    from tests.conftest import seed_contacts
    seed_contacts(hubspot_fake, 2)
    hubspot_fake.add_contact({"email": "broken"}, modified_ms=1)  # a warning to write
    result = run("--log-file", "/dev/full")
    assert "Logging error" not in result.err and "Traceback" not in result.err
    assert result.err.count("cannot write the log file /dev/full") == 1, result.err
    assert result.code == 1 and result.summary["created"] == 2


def test_dev_null_as_env_file_means_no_file(caplog):
    with caplog.at_level(logging.WARNING):
        settings = load_settings(Path("/dev/null"), environ={"HUBSPOT_ACCESS_TOKEN": "pat-1",
                                                             "MAILERLITE_API_KEY": "ml-1"}, env_file_given=True)
    assert settings.hubspot_token == "pat-1" and caplog.text == ""


@pytest.mark.parametrize("kind", ["folder", "fifo"])
def test_a_log_file_that_is_a_folder_or_a_fifo_is_one_line(run, tmp_path, kind):
    import os
    path = tmp_path / "logdir"
    path.mkdir() if kind == "folder" else os.mkfifo(path)
    result = run("--log-file", str(path))  # a FIFO nobody reads would hang here before the fix
    assert result.code == 2 and f"cannot write the log file {path}" in result.err, result.err
    assert result.err.count("\n") == 1
