"""Settings from .env and the environment: precedence, validation, one-line errors."""

from __future__ import annotations

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
