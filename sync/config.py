"""Settings from the environment and a `.env` file, validated once at start-up."""

from __future__ import annotations

import io
import logging
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Tuple
from urllib.parse import urlsplit

from dotenv import dotenv_values
from dotenv.parser import parse_stream

from .errors import ConfigError
from .hubspot_schema import DEFAULT_API_VERSION as DEFAULT_HUBSPOT_API_VERSION
from .mapping_file import env_group_names

log = logging.getLogger(__name__)

# The folder holding main.py: cron starts jobs in the home directory, so defaults never
# depend on the working directory.
PROJECT_DIR = Path(__file__).resolve().parent.parent

DEFAULT_HUBSPOT_BASE_URL = "https://api.hubapi.com"
DEFAULT_MAILERLITE_BASE_URL = "https://connect.mailerlite.com/api"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class Settings:
    hubspot_token: str
    mailerlite_token: str
    hubspot_base_url: str = DEFAULT_HUBSPOT_BASE_URL
    mailerlite_base_url: str = DEFAULT_MAILERLITE_BASE_URL
    state_db: Path = PROJECT_DIR / "sync_state.db"
    http_timeout: float = 60.0  # seconds to wait for an answer (connecting gets at most 10)
    mapping_file: Optional[Path] = None
    groups: Tuple[str, ...] = ()  # MAILERLITE_GROUPS: every synced subscriber joins these
    log_file: Optional[Path] = None
    healthcheck_url: Optional[str] = None
    write_back: bool = False  # SYNC_WRITE_BACK: MailerLite unsubscribes/bounces/spam back to HubSpot
    write_back_hours: float = 24.0  # SYNC_WRITE_BACK_HOURS: how often (it reads every inactive subscriber)
    hubspot_api_version: str = DEFAULT_HUBSPOT_API_VERSION  # HUBSPOT_API_VERSION: the date-based version

    def __repr__(self) -> str:  # never show the tokens, even in a debugger or a traceback
        return (f"Settings(hubspot_base_url={self.hubspot_base_url!r}, "
                f"mailerlite_base_url={self.mailerlite_base_url!r}, state_db={str(self.state_db)!r})")


def _parse_env_file(env_file: Path) -> dict:
    """KEY=value lines; a line that is not one is an error naming it (never a silent skip)."""
    try:
        text = env_file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {env_file}: {exc.__class__.__name__}; check the file") from None
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            raise ConfigError(f"{env_file} line {binding.original.line}: not a KEY=value setting; fix or remove it")
    _warn_if_shared(env_file)
    return {k: v for k, v in dotenv_values(stream=io.StringIO(text)).items() if v is not None}


def _warn_if_shared(env_file: Path) -> None:
    """Tokens in a file other users can read are a leak waiting to happen (POSIX only)."""
    if os.name != "posix":
        return
    try:
        mode = env_file.stat().st_mode
    except OSError:
        return
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        log.warning("%s is readable by other users; protect the tokens in it: chmod 600 %s", env_file, env_file)


def read_env(env_file: Optional[Path], environ: Mapping[str, str]) -> dict:
    """The `.env` file's values overlaid by the real environment (the environment wins)."""
    values: dict = {}
    if env_file is not None and env_file.exists():
        values.update(_parse_env_file(env_file))
    values.update(environ)
    return values


def _base_url(values: Mapping[str, str], name: str, default: str) -> str:
    url = (values.get(name) or "").strip() or default
    parts = urlsplit(url)
    secure = parts.scheme == "https" and parts.hostname
    loopback = parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS
    if not (secure or loopback):
        # A typo must not send a token in the clear.
        raise ConfigError(f"{name} must be an https:// URL (http:// only for 127.0.0.1/localhost), got {url!r}")
    return url.rstrip("/")


def _required(values: Mapping[str, str], name: str, *aliases: str) -> str:
    for key in (name, *aliases):
        value = (values.get(key) or "").strip()
        if value:
            return value
    raise ConfigError(f"{name} is not set: add it to .env (see .env.example) or the environment")


def _values(env_file: Optional[Path], environ: Optional[Mapping[str, str]], env_file_given: bool) -> dict:
    if env_file_given and env_file is not None and not env_file.exists():
        raise ConfigError(f"--env-file {env_file} does not exist")
    return read_env(env_file if env_file is not None else PROJECT_DIR / ".env",
                    os.environ if environ is None else environ)


def load_settings(env_file: Optional[Path] = None, environ: Optional[Mapping[str, str]] = None,
                  env_file_given: bool = False) -> Settings:
    """Build Settings; a missing required value is a ConfigError naming it."""
    values = _values(env_file, environ, env_file_given)
    # HUBSPOT_API_KEY is accepted as an alias: older setups name the private-app token so.
    hubspot_token = _required(values, "HUBSPOT_ACCESS_TOKEN", "HUBSPOT_API_KEY")
    mailerlite_token = _required(values, "MAILERLITE_API_KEY")
    state_db = (values.get("SYNC_STATE_DB") or "").strip()
    return Settings(
        hubspot_token=hubspot_token,
        mailerlite_token=mailerlite_token,
        hubspot_base_url=_base_url(values, "HUBSPOT_BASE_URL", DEFAULT_HUBSPOT_BASE_URL),
        mailerlite_base_url=_base_url(values, "MAILERLITE_BASE_URL", DEFAULT_MAILERLITE_BASE_URL),
        state_db=_state_path(state_db),
        http_timeout=_positive_number(values, "SYNC_HTTP_TIMEOUT", 60.0),
        mapping_file=_project_path(values.get("SYNC_MAPPING_FILE") or ""),
        groups=env_group_names(values.get("MAILERLITE_GROUPS")),
        log_file=_project_path(values.get("SYNC_LOG_FILE") or ""),
        healthcheck_url=_healthcheck(values.get("HEALTHCHECK_URL") or ""),
        write_back=_flag(values, "SYNC_WRITE_BACK"),
        write_back_hours=_positive_number(values, "SYNC_WRITE_BACK_HOURS", 24.0),
        hubspot_api_version=_api_version(values.get("HUBSPOT_API_VERSION") or ""),
    )


def _api_version(raw: str) -> str:
    """A HubSpot date-based API version, YYYY-MM (HubSpot ships one each March and September)."""
    version = raw.strip() or DEFAULT_HUBSPOT_API_VERSION
    if not re.fullmatch(r"20[0-9]{2}-(0[1-9]|1[0-2])", version):
        raise ConfigError(f"HUBSPOT_API_VERSION must be a HubSpot API version like {DEFAULT_HUBSPOT_API_VERSION} "
                          f"(YYYY-MM), got {version[:20]!r}")
    return version


def _flag(values: Mapping[str, str], name: str) -> bool:
    raw = (values.get(name) or "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _healthcheck(raw: str) -> Optional[str]:
    url = raw.strip()
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"HEALTHCHECK_URL must be an http(s) URL, got {url!r}")
    return url


def load_state_path(env_file: Optional[Path] = None, environ: Optional[Mapping[str, str]] = None,
                    env_file_given: bool = False) -> Path:
    """Only where the state lives: --history and --rejected need no token."""
    return _state_path((_values(env_file, environ, env_file_given).get("SYNC_STATE_DB") or "").strip())


def _project_path(raw: str) -> Optional[Path]:
    """A relative path is taken beside main.py, not in whatever folder cron starts in."""
    raw = raw.strip()
    if not raw:
        return None
    path = Path(raw).expanduser()
    return path if path.is_absolute() else PROJECT_DIR / path


def _positive_number(values: Mapping[str, str], name: str, default: float) -> float:
    raw = (values.get(name) or "").strip()
    if not raw:
        return default
    try:
        number = float(raw)
    except ValueError:
        number = -1.0
    if not 0 < number < 86400:
        raise ConfigError(f"{name} must be a number of seconds above 0, got {raw!r}")
    return number


def _state_path(raw: str) -> Path:
    return _project_path(raw) or PROJECT_DIR / "sync_state.db"
