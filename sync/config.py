"""Settings from the environment and a `.env` file, validated once at start-up."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import sqlite3
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import List, Mapping, Optional, Sequence, Tuple
from urllib.parse import urlsplit

from dotenv.parser import parse_stream
from dotenv.variables import parse_variables
from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

from .errors import ConfigError
from .hubspot_schema import DEFAULT_API_VERSION as DEFAULT_HUBSPOT_API_VERSION
from .mapping_file import env_group_names
from .redaction import register_secrets
from .suggest import closest
from .text_files import hand_written_text

log = logging.getLogger(__name__)

# The folder holding main.py: cron starts jobs in the home directory, so defaults never
# depend on the working directory.
PROJECT_DIR = Path(__file__).resolve().parent.parent

DEFAULT_HUBSPOT_BASE_URL = "https://api.hubapi.com"
DEFAULT_MAILERLITE_BASE_URL = "https://connect.mailerlite.com/api"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
ENV_FILE_MAX_BYTES = 256 * 1024  # a settings file is a few lines; anything this big is the wrong file
SETTINGS_FILE_KEY = "settings_file"  # state meta: the settings file (.env) its last finished run read
DEFAULT_MAX_RUNTIME = 3000.0  # 50 minutes: an hourly run ends before the next one starts


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
    max_runtime: float = DEFAULT_MAX_RUNTIME  # SYNC_MAX_RUNTIME: seconds; then the run stops, progress kept
    hubspot_api_version: str = DEFAULT_HUBSPOT_API_VERSION  # HUBSPOT_API_VERSION: the date-based version
    engagement: bool = False  # SYNC_ENGAGEMENT: MailerLite emails sent, opens, clicks, rates onto HubSpot contacts
    engagement_hours: float = 24.0  # SYNC_ENGAGEMENT_HOURS: how often (it reads every subscriber)
    consent_sweep_hours: float = 24.0  # SYNC_CONSENT_SWEEP_HOURS: how often let-go addresses' consent is read
    # SYNC_ASSOCIATIONS_HOURS: how often synced contacts' companies and deals associations are read again
    associations_hours: float = 24.0
    hubspot_token_origin: str = ""  # "HUBSPOT_ACCESS_TOKEN, read from <file>" (or "from the environment")
    mailerlite_key_origin: str = ""  # "MAILERLITE_API_KEY, read from <file>" (or "from the environment")
    settings_file: Optional[Path] = None  # the .env read (--env-file, or .env beside main.py), even if absent

    def __repr__(self) -> str:  # never show the tokens, even in a debugger or a traceback
        return (f"Settings(hubspot_base_url={self.hubspot_base_url!r}, "
                f"mailerlite_base_url={self.mailerlite_base_url!r}, state_db={str(self.state_db)!r})")


def _read_env_text(env_file: Path) -> str:
    """The file's text; a FIFO, a device or a huge file is an error at once, never a hang."""
    try:
        # O_NONBLOCK: opening a FIFO nobody writes to would otherwise wait for ever.
        fd = os.open(str(env_file), os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        try:
            info = os.fstat(fd)
            if stat.S_ISCHR(info.st_mode) and os.path.samefile(env_file, os.devnull):
                return ""  # --env-file /dev/null: no file, everything from the environment
            if not stat.S_ISREG(info.st_mode):
                raise ConfigError(f"{env_file} is not a regular file; point --env-file at the settings file")
            if info.st_size > ENV_FILE_MAX_BYTES:
                raise ConfigError(f"{env_file} is {info.st_size // 1024} KB; a settings file holds a few lines: "
                                  f"is it the right file?")
            data = os.read(fd, ENV_FILE_MAX_BYTES + 1)
        finally:
            os.close(fd)
        return hand_written_text(data, str(env_file))
    except OSError as exc:
        raise ConfigError(f"cannot read {env_file}: {exc.__class__.__name__}; check the file") from None


def _parse_env_file(env_file: Path) -> dict:
    """KEY=value lines; a line that is not one is an error naming it (never a silent skip)."""
    text = _read_env_text(env_file)
    values: dict = {}
    # Parsed once: python-dotenv's dotenv_values() takes minutes on a long file (quadratic).
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            raise ConfigError(f"{env_file} line {binding.original.line}: not a KEY=value setting; fix or remove it")
        if binding.key is not None and binding.value is not None:
            values[binding.key] = binding.value
    return {k: _interpolate(v, values) for k, v in values.items()}


def _interpolate(value: str, values: Mapping[str, str]) -> str:
    """${NAME} and ${NAME:-default} as python-dotenv expands them."""
    if "${" not in value:
        return value
    env = {**os.environ, **values}
    return "".join(atom.resolve(env) for atom in parse_variables(value))


def shared_env_file(env_file: Path) -> Optional[str]:
    """Tokens in a file other users can read are a leak waiting to happen (POSIX only): the
    advice, or None. Said once, not every hour (see sync/advisories.py)."""
    if os.name != "posix":
        return None
    try:
        mode = env_file.stat().st_mode
    except OSError:
        return None
    if not stat.S_ISREG(mode) or not mode & (stat.S_IRGRP | stat.S_IROTH):  # /dev/null is no secret
        return None
    return (f"{env_file} can be read by other users of this machine (mode {stat.S_IMODE(mode):o}): the sync "
            f"works, but the tokens in it are exposed; fix: chmod 600 {env_file}")


# Every setting the program reads; a name in .env close to one of these is a likely typo.
KNOWN_SETTINGS = ("HUBSPOT_ACCESS_TOKEN", "HUBSPOT_API_KEY", "MAILERLITE_API_KEY", "HUBSPOT_BASE_URL",
                  "MAILERLITE_BASE_URL", "SYNC_STATE_DB", "SYNC_HTTP_TIMEOUT", "SYNC_MAPPING_FILE",
                  "MAILERLITE_GROUPS", "SYNC_LOG_FILE", "HEALTHCHECK_URL", "SYNC_WRITE_BACK",
                  "SYNC_WRITE_BACK_HOURS", "SYNC_MAX_RUNTIME", "HUBSPOT_API_VERSION", "SYNC_ENGAGEMENT",
                  "SYNC_ENGAGEMENT_HOURS", "SYNC_CONSENT_SWEEP_HOURS", "SYNC_ASSOCIATIONS_HOURS")
OUR_PREFIXES = ("HUBSPOT_", "MAILERLITE_", "SYNC_", "HEALTHCHECK")


ENVIRONMENT_PREFIXES = ("HUBSPOT_", "MAILERLITE_", "SYNC_")  # in the environment only these are surely ours


def misspelt_settings(env_file: Path, known: Sequence[str] = KNOWN_SETTINGS) -> List[Tuple[str, str]]:
    """(name, closest known name or "") for each name in the .env file that the program does not
    read but that looks meant for it: ours by its prefix, or close to one of ours."""
    try:
        names = [b.key for b in parse_stream(io.StringIO(env_file.read_text(encoding="utf-8-sig"))) if b.key]
    except (OSError, UnicodeDecodeError):
        return []
    found = []
    for name in dict.fromkeys(names):
        if name in known:
            continue
        close = closest(name, known, cutoff=0.75)
        if close or name.upper().startswith(OUR_PREFIXES):
            found.append((name, close))
    return found


def misspelt_environment(environ: Mapping[str, str], known: Sequence[str] = KNOWN_SETTINGS) -> List[Tuple[str, str]]:
    """(name, closest known name or "") for each environment variable named like one of ours
    (HUBSPOT_*, MAILERLITE_*, SYNC_*) that the program does not read."""
    return [(name, closest(name, known, cutoff=0.75)) for name in sorted(environ)
            if name.upper().startswith(ENVIRONMENT_PREFIXES) and name not in known]


def env_file_path(env_file: Optional[Path], project: Path = PROJECT_DIR) -> Path:
    """The .env file used: --env-file (from the current folder) or .env beside main.py (`project`,
    the folder holding main.py: PROJECT_DIR; the tests pass their own)."""
    return Path(os.path.abspath(env_file)) if env_file is not None else project / ".env"


def _missing_env_file(values: Mapping[str, str], env_file: Path) -> None:
    """No .env and no token in the environment: say that the file is missing, and where it was looked for."""
    if env_file.exists() or any((values.get(k) or "").strip() for k in
                                ("HUBSPOT_ACCESS_TOKEN", "HUBSPOT_API_KEY", "MAILERLITE_API_KEY")):
        return
    raise ConfigError(f"no .env file at {env_file} and no tokens in the environment: copy .env.example to "
                      f"{env_file} and fill in HUBSPOT_ACCESS_TOKEN and MAILERLITE_API_KEY")


def read_env(env_file: Optional[Path], environ: Mapping[str, str]) -> dict:
    """The `.env` file's values overlaid by the real environment (the environment wins). A variable set to
    nothing (Docker's `X=${X}`, a crontab's `X=`) is not set, as an empty value is everywhere else: it
    never hides the file's value (the file's token, or its state file and mapping, for the defaults)."""
    values: dict = {}
    if env_file is not None and env_file.exists():
        values.update(_parse_env_file(env_file))
    values.update((name, value) for name, value in environ.items() if value.strip() or name not in values)
    return values


def _base_url(values: Mapping[str, str], name: str, default: str) -> str:
    url = (values.get(name) or "").strip() or default
    must = f"{name} must be an https:// URL (http:// only for 127.0.0.1/localhost)"
    # No user-info, backslashes or blanks: parsers disagree about such URLs (is the host of
    # http://evil.example\@127.0.0.1 the first or the second?), and the HTTP stack's is the one that counts.
    if "\\" in url or "@" in url or any(ch.isspace() or not ch.isprintable() for ch in url):
        raise ConfigError(f"{must}, with no user name, backslash or blank in it; got {url!r}")
    try:
        host = (parse_url(url).host or "").lower()  # what urllib3 (both clients' HTTP stack) connects to
        split = urlsplit(url)
        split.port  # noqa: B018  (raises on a port that is not a number)
    except (LocationParseError, ValueError):
        raise ConfigError(f"{must}; {url!r} is not a valid URL") from None
    if host.strip("[]") != (split.hostname or ""):
        raise ConfigError(f"{must}; {url!r} is not a valid URL")
    secure = split.scheme == "https" and bool(host)
    loopback = split.scheme == "http" and host in LOOPBACK_HOSTS
    if not (secure or loopback):
        # A typo must not send a token in the clear.
        raise ConfigError(f"{must}, got {url!r}")
    return url.rstrip("/")


def _required(values: Mapping[str, str], settings_file: Path, name: str, *aliases: str) -> str:
    for key in (name, *aliases):
        value = (values.get(key) or "").strip()
        if value:
            return value
    other_case = [key for key in values if key.upper() in (name, *aliases) and (values.get(key) or "").strip()]
    if other_case:  # the environment ignores case on Windows; a settings file never does
        raise ConfigError(f"{name} is not set: {settings_file} or the environment has {other_case[0]}; write the "
                          f"name in capitals, {name}")
    raise ConfigError(f"{name} is not set: add it to {settings_file} (see .env.example) or the environment")


def _token(values: Mapping[str, str], settings_file: Path, name: str, *aliases: str) -> str:
    """A token goes into an HTTP header: printable ASCII only (anything else is a pasting accident)."""
    token = _required(values, settings_file, name, *aliases)
    if not token.isascii() or not token.isprintable() or " " in token:
        # The message never shows the value: it is a secret, however mangled.
        raise ConfigError(f"{name} holds a character that cannot be in a token (a control character, a blank "
                          f"or non-ASCII text); copy the token again")
    return token


def _token_origin(environ: Mapping[str, str], env_file: Optional[Path], *names: str,
                  project: Path = PROJECT_DIR) -> str:
    """Which setting held the token and where it was read: what to check when it is refused. The
    names are tried in the order the token is taken (_required), each from the environment first."""
    file_values = read_env(env_file_path(env_file, project), {})
    for name in names:
        if (environ.get(name) or "").strip():
            return f"{name}, read from the environment"
        if (file_values.get(name) or "").strip():
            return f"{name}, read from {env_file_path(env_file, project)}"
    return names[0]


def _raw_settings(env_file: Optional[Path], environ: Optional[Mapping[str, str]], env_file_given: bool,
                  project: Path = PROJECT_DIR) -> dict:
    if env_file_given and env_file is not None and not env_file.exists():
        raise ConfigError(f"--env-file {env_file_path(env_file)} does not exist")
    return read_env(env_file if env_file is not None else project / ".env",
                    os.environ if environ is None else environ)


def load_settings(env_file: Optional[Path] = None, environ: Optional[Mapping[str, str]] = None,
                  env_file_given: bool = False, project: Path = PROJECT_DIR) -> Settings:
    """Build Settings; a missing required value is a ConfigError naming it. `project` is the folder
    holding main.py, where .env, the shared state and relative paths are found."""
    values = _raw_settings(env_file, environ, env_file_given, project)
    settings_file = env_file_path(env_file, project)
    _missing_env_file(values, settings_file)
    # HUBSPOT_API_KEY is accepted as an alias: older setups name the private-app token so.
    hubspot_token = _token(values, settings_file, "HUBSPOT_ACCESS_TOKEN", "HUBSPOT_API_KEY")
    mailerlite_token = _token(values, settings_file, "MAILERLITE_API_KEY")
    register_secrets((hubspot_token, mailerlite_token))  # from here on, no output can show them
    state_db = _state_path((values.get("SYNC_STATE_DB") or "").strip(), env_file, project)
    if not (values.get("SYNC_STATE_DB") or "").strip():
        _no_silent_state_move(env_file, state_db, project)
    return Settings(
        hubspot_token=hubspot_token,
        mailerlite_token=mailerlite_token,
        hubspot_base_url=_base_url(values, "HUBSPOT_BASE_URL", DEFAULT_HUBSPOT_BASE_URL),
        mailerlite_base_url=_base_url(values, "MAILERLITE_BASE_URL", DEFAULT_MAILERLITE_BASE_URL),
        state_db=state_db,
        settings_file=settings_file,
        http_timeout=_positive_number(values, "SYNC_HTTP_TIMEOUT", 60.0),
        mapping_file=_project_path(values.get("SYNC_MAPPING_FILE") or "", project),
        groups=env_group_names(values.get("MAILERLITE_GROUPS")),
        log_file=_project_path(values.get("SYNC_LOG_FILE") or "", project),
        healthcheck_url=_healthcheck(values.get("HEALTHCHECK_URL") or ""),
        write_back=_flag(values, "SYNC_WRITE_BACK"),
        write_back_hours=_positive_number(values, "SYNC_WRITE_BACK_HOURS", 24.0),
        max_runtime=_positive_number(values, "SYNC_MAX_RUNTIME", DEFAULT_MAX_RUNTIME),
        hubspot_api_version=_api_version(values.get("HUBSPOT_API_VERSION") or ""),
        engagement=_flag(values, "SYNC_ENGAGEMENT"),
        engagement_hours=_positive_number(values, "SYNC_ENGAGEMENT_HOURS", 24.0),
        consent_sweep_hours=_positive_number(values, "SYNC_CONSENT_SWEEP_HOURS", 24.0),
        associations_hours=_positive_number(values, "SYNC_ASSOCIATIONS_HOURS", 24.0),
        hubspot_token_origin=_token_origin(os.environ if environ is None else environ, env_file,
                                           "HUBSPOT_ACCESS_TOKEN", "HUBSPOT_API_KEY", project=project),
        mailerlite_key_origin=_token_origin(os.environ if environ is None else environ, env_file,
                                            "MAILERLITE_API_KEY", project=project),
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
                    env_file_given: bool = False, project: Path = PROJECT_DIR) -> Path:
    """Only where the state lives: --history and --rejected need no token."""
    values = _raw_settings(env_file, environ, env_file_given, project)
    # Any token that is set is still kept out of what they print (rows from older versions).
    register_secrets((values.get(k) or "").strip() for k in ("HUBSPOT_ACCESS_TOKEN", "HUBSPOT_API_KEY",
                                                                 "MAILERLITE_API_KEY"))
    return _state_path((values.get("SYNC_STATE_DB") or "").strip(), env_file, project)


def _project_path(raw: str, project: Path = PROJECT_DIR) -> Optional[Path]:
    """A relative path is taken beside main.py, not in whatever folder cron starts in."""
    raw = raw.strip()
    if not raw:
        return None
    path = Path(raw).expanduser()
    return path if path.is_absolute() else project / path


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


def _state_path(raw: str, env_file: Optional[Path] = None, project: Path = PROJECT_DIR) -> Path:
    return _project_path(raw, project) or default_state_path(env_file, project)


def default_state_path(env_file: Optional[Path], project: Path = PROJECT_DIR) -> Path:
    """Where the state lives without SYNC_STATE_DB. The default .env keeps it beside main.py (existing
    installs keep their state); any other --env-file keeps it beside that file, named after it
    (clientB.env -> clientB.state.db), so each client has its own state, lock and history."""
    shared = project / "sync_state.db"
    if env_file is None:
        return shared
    path = env_file_path(env_file, project)
    if path == project / ".env" or path.parent == Path(os.devnull).parent:  # /dev/null: no file at all
        return shared
    name = path.name[:-len(".env")] if path.name.endswith(".env") else path.stem
    return path.parent / (f"{name}.state.db" if name else "sync_state.db")


def recorded_settings_file(state_db: Path) -> Optional[str]:
    """The settings file the state's last finished run read (SETTINGS_FILE_KEY), or None when the
    state has no such record (written by an older version) or cannot be read."""
    try:
        connection = sqlite3.connect(state_db.as_uri() + "?mode=ro", uri=True, timeout=5)
        try:
            row = connection.execute("SELECT value FROM meta WHERE key = ?", (SETTINGS_FILE_KEY,)).fetchone()
        finally:
            connection.close()
        value = json.loads(row[0]) if row else None
    except (sqlite3.Error, ValueError):
        return None
    return value if isinstance(value, str) else None


def _no_silent_state_move(env_file: Optional[Path], state_db: Path, project: Path = PROJECT_DIR) -> None:
    """An install that ran --env-file with the shared state before this version: which client that
    state belongs to cannot be told here, so the run stops and says what to do (nothing is written).
    Unless the shared state records that its runs came from another settings file (the default .env
    of the install's first client, typically): then it is not this one's, and this one starts its own."""
    shared = project / "sync_state.db"
    if state_db == shared or state_db.exists() or not shared.exists():
        return
    recorded = recorded_settings_file(shared)
    if recorded is not None and recorded != str(env_file_path(env_file)):
        return
    raise ConfigError(f"settings from {env_file_path(env_file)} now keep their own state at {state_db}, which does "
                      f"not exist yet, while the shared state {shared} does. If that state is this client's, move it "
                      f"(mv {shared} {state_db}); if it is another client's, set SYNC_STATE_DB={state_db} in "
                      f"{env_file_path(env_file)} to start this client's own")
