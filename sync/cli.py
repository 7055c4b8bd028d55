"""Command line: flags, logging on stderr, one summary at the end, exit codes."""

from __future__ import annotations

import argparse
import codecs
import copy
import io
import json
import logging
import logging.handlers
import os
import select
import signal
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, Dict, Iterator, List, NoReturn, Optional, Sequence, TextIO, Tuple

import filelock

from . import __version__, invocation
from .accounts import state_problem
from .advisories import ENV_FILE_SHARED, UNKNOWN_SETTING, Advisories
from .closing_line import describe, for_person
from .columns import PERSON
from .config import (
    DEFAULT_HUBSPOT_BASE_URL,
    DEFAULT_MAILERLITE_BASE_URL,
    PROJECT_DIR,
    SETTINGS_FILE_KEY,
    Settings,
    env_file_path,
    load_settings,
    load_state_path,
    misspelt_environment,
    misspelt_settings,
    shared_env_file,
)
from .dry_run_report import PlanReport
from .endpoints import endpoint_label
from .engine import Engine, RunOptions
from .errors import (
    EXIT_ABORTED,
    EXIT_CONFIG,
    EXIT_INTERRUPTED,
    EXIT_LOCKED,
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_TERMINATED,
    ConfigError,
    Interrupted,
    LockHeld,
    StateError,
    SyncError,
    stop_caught,
    stop_requested,
)
from .healthcheck import ping
from .hubspot import HubSpotWriter
from .mailerlite import MailerLiteClient
from .mapping import Mapping
from .mapping_file import load_mapping
from .preflight import Preflight
from .private_files import create_private, foreign_owner, foreign_state_message, open_private
from .progress import Progress
from .redaction import redact, safe_text
from .reports import export_rejected, history_json, print_history
from .retrying import RetryPolicy
from .state import State
from .summary import Summary, attached, failure_dict
from .tunables import DEFAULTS, Tunables

PROGRAM = "hubspot-mailerlite-sync"
# Exit 75 is ordinary (the hourly run met the one before it, still going): said quietly unless the
# lock has been held longer than SYNC_MAX_RUNTIME plus this margin, when the holder may be hung.
LOCK_STALE_MARGIN_S = 600.0
log = logging.getLogger("sync")
summary_log = logging.getLogger("sync.summary")  # the one line per run that the log file keeps
# The waits, retry budgets and clock every run is built with (tunables.py). The one seam for tests:
# tests/conftest.py replaces it once with faster waits; main() also takes one as an argument.
TUNABLES: Tunables = DEFAULTS


class _Parser(argparse.ArgumentParser):
    """argparse, but a command line with --json that it refuses still answers one JSON object on stdout."""

    json_wanted = False

    def error(self, message: str) -> NoReturn:
        if self.json_wanted:
            _print_failure(EXIT_CONFIG, message)
        super().error(message)

    def refuse(self, message: str) -> NoReturn:
        """A combination of flags that would silently do something else: one line, exit 2 (the usage
        block argparse adds to a misspelt flag says nothing about it)."""
        if self.json_wanted:
            _print_failure(EXIT_CONFIG, message)
        self.exit(EXIT_CONFIG, f"{self.prog}: error: {message}\n")


EXAMPLES = """examples:
  python main.py --sandbox            try it on fake accounts, nothing leaves
  python main.py --check              tokens, scopes, mapping; writes nothing
  python main.py --dry-run --verbose  what a run would send, a line a contact"""
# As the README's table says them; `python main.py` alone is the real sync (cron: README, Schedule).
EXIT_CODES = """exit codes:
  0    all good
  1    finished, but some contacts were rejected or failed, or consent actions
       (an unsubscribe, a group removal) wait for MailerLite (see --rejected)
  2    configuration or credential problem; fix it, then run again
  3    stopped early (an outage, HubSpot's daily limit, SYNC_MAX_RUNTIME, the
       mass-leave guard); what was done is kept and the next run continues
  75   an earlier run still holds the lock; this one exits (quietly, unless
       the lock is older than SYNC_MAX_RUNTIME allows)
  130  interrupted (Ctrl-C, SIGINT); progress kept
  143  stopped by SIGTERM; progress kept"""


def build_parser() -> _Parser:
    parser = _Parser(
        prog="main.py",
        description="Sync HubSpot contacts into MailerLite subscribers. Settings come from the\n"
                    "environment and a .env file beside main.py (see .env.example).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"{EXAMPLES}\n\n{EXIT_CODES}")
    run = parser.add_argument_group("run (python main.py alone is the real sync)")
    run.add_argument("--dry-run", action="store_true",
                     help="read and plan, write nothing to MailerLite (with --verbose: each planned action)")
    run.add_argument("--full", action="store_true",
                     help="re-read every HubSpot contact and compare it with MailerLite (a changed mapping does "
                          "this by itself); only contacts that differ are sent")
    run.add_argument("--force", action="store_true",
                     help="with --full: resend every contact even if MailerLite already has it")
    run.add_argument("--allow-mass-leave", action="store_true",
                     help="for this run only: let more contacts leave the sync than the mass-leave guard "
                          "allows (mass_leave_percent / mass_leave_min in the mapping file)")
    run.add_argument("--json", action="store_true", help="print the summary as one JSON object on stdout")
    verbosity = run.add_mutually_exclusive_group()
    verbosity.add_argument("--quiet", action="store_true", help="only errors on stderr")
    verbosity.add_argument("--verbose", action="store_true", help="detailed progress on stderr")
    run.add_argument("--log-file", type=Path, metavar="PATH",
                     help="append run summaries and warnings to this rotating log file (or SYNC_LOG_FILE)")
    inspect = parser.add_argument_group("inspect")
    inspect.add_argument("--check", action="store_true",
                         help="check tokens, scopes, properties, fields, groups and lists; show the mapping with "
                              "sample values; write nothing")
    inspect.add_argument("--history", action="store_true",
                         help="show the last runs, two lines each (with --json: as JSON)")
    inspect.add_argument("--rejected", action="store_true",
                         help="export the rejected and failed contacts as CSV (to stdout or --output)")
    inspect.add_argument("--output", type=Path, metavar="FILE",
                         help="with --rejected: write the CSV here; with --dry-run: each planned action as CSV")
    setup = parser.add_argument_group("set up")
    setup.add_argument("--env-file", type=Path, metavar="PATH", help="read settings from this file instead of .env")
    setup.add_argument("--mapping", type=Path, metavar="PATH",
                       help="mapping file (TOML) to use instead of SYNC_MAPPING_FILE; see mapping.example.toml")
    setup.add_argument("--sandbox", action="store_true",
                       help="try it without any account: the real sync against fake HubSpot and MailerLite "
                            "APIs with sample data, on this machine only; kept between runs")
    setup.add_argument("--touch", type=_count, metavar="N",
                       help="with --sandbox: edit N sample contacts in the fake HubSpot first, to watch only "
                            "those go")
    setup.add_argument("--reset", action="store_true",
                       help="with --sandbox: start over (only that: the next run uses fresh sample data)")
    parser.add_argument("--version", action="version", version=f"{PROGRAM} {__version__}")
    return parser


class SafeFormatter(logging.Formatter):
    """The boundary for log lines: no token, no raw control or escape sequence from HubSpot data."""

    def format(self, record: logging.LogRecord) -> str:
        record = copy.copy(record)  # other handlers get the record as it was
        record.msg, record.args = safe_text(record.getMessage()), None
        return redact(super().format(record))  # a traceback (--verbose) may quote a token too


class PersonFormatter(SafeFormatter):
    """stderr's: a record's form for a person (the closing line within 80 columns, a command on a line
    of its own) when it has one; its lines kept apart by safe_text's escaping are joined back."""

    def format(self, record: logging.LogRecord) -> str:
        person = getattr(record, PERSON, None)
        if person is None:
            return super().format(record)
        lines = str(person).split("\n")
        record = copy.copy(record)
        record.msg, record.args = lines[0], None
        return "\n".join([super().format(record), *(redact(safe_text(line)) for line in lines[1:])])


class SafeOutput:
    """stdout for --check, which shows HubSpot sample values: escaped and redacted, never run by
    the terminal (newlines kept)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def write(self, text: str) -> int:
        return self.out.write("\n".join(safe_text(line) for line in text.split("\n")))

    def flush(self) -> None:
        self.out.flush()

    def fileno(self) -> int:  # the terminal's width (--check fits it)
        return self.out.fileno()


def _count(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if not 0 < number <= 1000:
        raise argparse.ArgumentTypeError(f"must be a number from 1 to 1000, got {text!r}")
    return number


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    """The flags; combinations that would silently do something else are errors (exit 2)."""
    parser = build_parser()
    parser.json_wanted = "--json" in (sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if args.output and not (args.rejected or args.dry_run):
        parser.refuse("--output goes with --rejected or --dry-run: it names their CSV")
    if (args.touch or args.reset) and not args.sandbox:
        parser.refuse("--touch and --reset go with --sandbox")
    if args.reset and (args.touch or args.check or args.dry_run or args.full or args.history or args.rejected):
        parser.refuse("--reset only starts the sandbox over: give the other flags to the next run")
    if args.sandbox and args.env_file:
        parser.refuse("--sandbox uses no --env-file: it has its own fake accounts")
    return args


def configure_logging(quiet: bool, verbose: bool) -> None:
    """Logs go to stderr. Silent under a scheduler unless something is wrong."""
    if verbose:
        level = logging.DEBUG
    elif quiet:
        level = logging.ERROR
    else:
        level = logging.INFO if sys.stderr.isatty() else logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    # --verbose says more, in the same form as every other output (the log file has the timestamps).
    handler.setFormatter(PersonFormatter("%(levelname)s: %(message)s"))
    handler.setLevel(level)
    handler.addFilter(_OwnLines(verbose))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("urllib3", "hubspot"):  # their debug lines can echo request headers
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _own(record: logging.LogRecord) -> bool:
    return record.name == log.name or record.name.startswith(log.name + ".")


class _OwnLines(logging.Filter):
    """Only the program's own lines: what goes wrong in a library (urllib3's "Failed to parse headers"
    and its traceback, twice a request, for a server answering malformed headers) reaches the program
    as an exception, which it says in its own words. --verbose adds a library's warnings, one line
    each (no traceback)."""

    def __init__(self, verbose: bool = False) -> None:
        super().__init__()
        self.verbose = verbose

    def filter(self, record: logging.LogRecord) -> bool:
        if _own(record):
            return True
        if not self.verbose or record.levelno < logging.WARNING:
            return False
        record.exc_info, record.exc_text, record.stack_info = None, None, None  # no other handler takes it
        return True


class _SummaryOrWarning(logging.Filter):
    """The log file: the program's own warnings and errors, and each run's closing line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return _own(record) and (record.levelno >= logging.WARNING or record.name == summary_log.name)


class PrivateLogFile(logging.handlers.RotatingFileHandler):
    """Rotating log of email addresses: every file it makes is 0600, and a write that fails (a
    full disk) is said once, in one line, instead of a "Logging error" traceback per record."""

    def _open(self) -> io.TextIOWrapper:
        path = Path(self.baseFilename)
        if not path.exists():
            create_private(path)
        return super()._open()

    def handleError(self, record: logging.LogRecord) -> None:
        exc = sys.exc_info()[1]
        logging.getLogger().removeHandler(self)  # the sync goes on; its log file cannot
        try:
            self.close()
        except OSError:
            pass
        reason = (exc.strerror if isinstance(exc, OSError) else None) or exc.__class__.__name__
        log.error("cannot write the log file %s (%s); the run goes on without it", self.baseFilename, reason)


def add_log_file(path: Path, tunables: Tunables = DEFAULTS) -> None:
    """A rotating log file: one line per run summary, plus warnings and errors."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            raise IsADirectoryError(21, "it is a folder")
        if path.is_fifo():  # opening it would wait for ever for a reader
            raise OSError(0, "it is a FIFO, not a file")
        create_private(path)
        handler = PrivateLogFile(path, maxBytes=tunables.log_file_bytes, backupCount=tunables.log_file_backups,
                                 encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write the log file {path}: {exc.strerror or exc}") from None
    handler.setFormatter(SafeFormatter("%(asctime)s %(levelname)s %(message)s"))
    handler.addFilter(_SummaryOrWarning())
    logging.getLogger().addHandler(handler)


def lock_held(lock_path: Path, max_runtime: float) -> LockHeld:
    """The error for a lock another run holds: quiet while that run may still be within its
    SYNC_MAX_RUNTIME (the lock file's mtime is when it took the lock), loud once it cannot be."""
    try:
        held_s = time.time() - lock_path.stat().st_mtime
    except OSError:
        held_s = 0.0
    if held_s <= max_runtime + LOCK_STALE_MARGIN_S:
        return LockHeld(f"another run is in progress (lock {lock_path}); this one exits", quiet=True)
    return LockHeld(f"another run has held the lock {lock_path} for {held_s / 60:.0f} min, longer than "
                    f"SYNC_MAX_RUNTIME ({max_runtime:.0f} s) allows: it may be hung; find it with "
                    f"`fuser {lock_path}` (or ps) and stop it; no run syncs until it ends")


@contextmanager
def run_lock(state_db: Path, max_runtime: float = float("inf")) -> Iterator[None]:
    """One run at a time. The OS drops the lock when a process dies, so it is never stale."""
    lock_path = Path(str(state_db) + ".lock")
    lock = filelock.FileLock(str(lock_path), timeout=0)
    try:
        state_db.parent.mkdir(parents=True, exist_ok=True)
        lock.acquire()
        os.utime(lock_path)  # its mtime says since when it is held (filelock itself leaves it alone)
    except filelock.Timeout:
        raise lock_held(lock_path, max_runtime) from None
    except OSError as exc:
        if lock.is_locked:
            lock.release()
        owner = foreign_owner(lock_path, state_db)
        if owner:
            raise StateError(foreign_state_message(state_db, owner)) from None
        raise StateError(f"cannot create the lock file {state_db}.lock ({exc.strerror or exc}); make the "
                         f"folder {state_db.parent} writable or set SYNC_STATE_DB") from None
    try:
        yield
    finally:
        lock.release()


def clients(settings: Settings, progress: Optional[Progress] = None, started: Optional[float] = None,
            tunables: Optional[Tunables] = None) -> Tuple[HubSpotWriter, MailerLiteClient]:
    """Both API clients, each with its own retry policy under the run's one deadline."""
    tunables = tunables or TUNABLES
    timeout = (min(10.0, settings.http_timeout), settings.http_timeout)
    # A reason can quote the server (a 429's policy name): shown escaped, like every log line.
    hs_wait = (lambda reason, secs: progress.waiting(safe_text(reason), secs, "HubSpot")) if progress else None
    ml_wait = (lambda reason, secs: progress.waiting(safe_text(reason), secs, "MailerLite")) if progress else None
    # Both clients check the run's deadline before each request and each wait (retrying.py).
    deadline = (time.monotonic() if started is None else started) + settings.max_runtime
    return (HubSpotWriter(settings.hubspot_token, settings.hubspot_base_url, timeout=timeout, on_wait=hs_wait,
                          retry=RetryPolicy.from_tunables(tunables, deadline), api_version=settings.hubspot_api_version,
                          tunables=tunables, token_origin=settings.hubspot_token_origin,
                          endpoint=endpoint_label(settings.hubspot_base_url, "HUBSPOT_BASE_URL",
                                                  DEFAULT_HUBSPOT_BASE_URL)),
            MailerLiteClient(settings.mailerlite_token, settings.mailerlite_base_url, timeout=timeout,
                             on_wait=ml_wait, retry=RetryPolicy.from_tunables(tunables, deadline), tunables=tunables,
                             endpoint=endpoint_label(settings.mailerlite_base_url, "MAILERLITE_BASE_URL",
                                                     DEFAULT_MAILERLITE_BASE_URL),
                             key_origin=settings.mailerlite_key_origin))


def run_sync(settings: Settings, options: RunOptions, mapping: Mapping, progress: Progress,
             started: Optional[float] = None, advice: Sequence[Tuple[str, str]] = (),
             tunables: Optional[Tunables] = None) -> Summary:
    """One run: the lock, the state, the clients and the engine. `advice` is (key, message) said once."""
    tunables = tunables or TUNABLES
    with run_lock(settings.state_db, settings.max_runtime):
        state = State(settings.state_db, busy_timeout_s=tunables.state_busy_timeout_s)
        try:
            Advisories(state, record=not options.dry_run).settle(advice)
            reader, client = clients(settings, progress, started, tunables)
            summary = Engine(reader, client, state, mapping, options, on_progress=progress.update,
                             tunables=tunables).run()
            if settings.settings_file is not None and not options.dry_run and summary.exit_code != EXIT_CONFIG:
                # Whose state this is, for a later --env-file that finds it beside main.py (config.py).
                state.set_json(SETTINGS_FILE_KEY, str(settings.settings_file))
            return summary
        finally:
            progress.close()
            state.close()


def report(summary: Summary, as_json: bool, command: Optional[str] = None) -> None:
    """The one line a run ends with (stderr, and the log file); the JSON summary on stdout if asked.
    The log file keeps every count on one line; stderr gets the form that fits 80 columns, with
    the --rejected hint on its own line (closing_line.py)."""
    if as_json:
        print(redact(json.dumps(summary.as_dict(), sort_keys=True)))
    hint = None
    if summary.counts["rejected"] or summary.counts["failed"] or summary.counts["consent_pending"]:
        hint = f"{command or invocation.command()} --rejected"
    if summary.exit_code == EXIT_OK:
        summary_log.info("%s", describe(summary), extra={PERSON: for_person(summary, "INFO")})
    elif summary.exit_code == EXIT_PARTIAL:
        details = f" (which and why: {hint})" if hint else ""
        summary_log.warning("%s%s", describe(summary), details, extra={PERSON: for_person(summary, "WARNING", hint)})
    else:  # one line: why it stopped, then what it did before
        summary_log.error("%s; done so far: %s", summary.message, describe(summary),
                          extra={PERSON: for_person(summary, "ERROR")})


def advice_for(env_file: Path, environ: Optional[Dict[str, str]] = None) -> List[Tuple[str, str]]:
    """(key, message) for the settings' advisories: a .env others can read, misspelt names (in the
    file, or variables of the environment named like ours)."""
    found = []
    shared = shared_env_file(env_file)
    if shared:
        found.append((f"{ENV_FILE_SHARED}{env_file}", shared))
    unknown = [(str(env_file), name, close) for name, close in misspelt_settings(env_file)]
    unknown += [("the environment", name, close)
                for name, close in misspelt_environment(dict(os.environ) if environ is None else environ)]
    for where, name, close in unknown:
        hint = f"did you mean {close}? " if close else ""
        found.append((f"{UNKNOWN_SETTING}{name}", f"{where}: the program reads no setting {name}; {hint}it is "
                                                 f"ignored until renamed"))
    return found


def state_commands(args: argparse.Namespace, out: TextIO, path: Path, command: Optional[str] = None,
                   sandbox_dir: Optional[Path] = None) -> int:
    """--history and --rejected: read the state, need no token."""
    command = command or invocation.command()
    if not path.exists():
        hint = _sandbox_hint(args, command, sandbox_dir)
        raise ConfigError(f"no state database at {path} yet: run {command} first{hint}")
    state = State(path)
    try:
        if args.history:
            if args.json:
                print(history_json(state), file=out)
            else:
                print_history(state, out)
            return EXIT_OK
        last = state.runs(1)
        if last and last[0].get("dry_run"):
            log.warning("the last run was a dry run, and a dry run records nothing: this list is from the last "
                        "real run, if any; %s (without --dry-run) records what it rejects", command)
        if args.output:
            try:
                with open_private(args.output) as handle:
                    count = export_rejected(state, handle)
            except OSError as exc:
                raise ConfigError(f"cannot write {os.path.abspath(args.output)}: {exc.strerror or exc}") from None
            log.info("%d rejected or failed contacts written to %s", count, args.output)
        else:
            export_rejected(state, out)
        return EXIT_OK
    finally:
        state.close()


@contextmanager
def dry_run_plan(args: argparse.Namespace) -> Iterator[Optional[PlanReport]]:
    """A dry run's listing of planned actions, when --verbose or --output asks for one (else None:
    nothing is spent on it)."""
    if not args.dry_run or args.rejected or not (args.verbose or args.output):
        yield None
        return
    if not args.output:
        yield PlanReport(verbose=True)
        return
    try:
        handle = open_private(args.output)
    except OSError as exc:
        raise ConfigError(f"cannot write {os.path.abspath(args.output)}: {exc.strerror or exc}") from None
    with handle:
        plan = PlanReport(verbose=args.verbose, out=handle)
        yield plan
    log.info("%d planned actions written to %s", plan.count, args.output)


def _stop_on_signal(signum: int, frame: Optional[FrameType]) -> None:
    """SIGTERM (and SIGINT) end the run like Ctrl-C: recorded, lock released, one line."""
    signal.signal(signum, signal.SIG_IGN)  # a second signal must not cut the clean-up short
    if signum == signal.SIGTERM:
        stop = Interrupted("stopped by SIGTERM; what was synced so far is kept", EXIT_TERMINATED)
    else:
        stop = Interrupted("interrupted (SIGINT); what was synced so far is kept", EXIT_INTERRUPTED)
    stop_requested(stop)  # raised again at the next request if this raise lands in a finalizer
    raise stop


@contextmanager
def _signals_stop_the_run() -> Iterator[None]:
    previous: List[Tuple[signal.Signals, Any]] = []
    try:
        for stopping in (signal.SIGINT, signal.SIGTERM):
            previous.append((stopping, signal.signal(stopping, _stop_on_signal)))
    except ValueError:  # not the main thread (an embedding program): leave its signals alone
        pass
    try:
        yield
    finally:
        stop_caught()
        for signum, handler in previous:
            signal.signal(signum, handler)


def _print_failure(code: int, message: str, summary: Optional[Summary] = None) -> None:
    print(redact(json.dumps(failure_dict(code, message, summary), sort_keys=True)))


def _failed(code: int, message: str, as_json: bool, settings: Optional[Settings], quiet: bool = False,
            summary: Optional[Summary] = None) -> int:
    """A run that ended early: one line on stderr, --json honoured (with the counts of a run that had
    begun), the health check told."""
    log.log(logging.INFO if quiet else logging.ERROR, "%s", message)
    if as_json:
        _print_failure(code, message, summary)
    if settings is not None and code != EXIT_LOCKED:
        try:
            ping(settings.healthcheck_url, success=False)
        except KeyboardInterrupt as exc:  # a signal while pinging: the line above was said; one more
            log.error("%s", str(exc) or "interrupted (SIGINT)")
            return getattr(exc, "exit_code", EXIT_INTERRUPTED)
    return code


def _sandbox_hint(args: argparse.Namespace, command: str, sandbox_dir: Optional[Path] = None) -> str:
    from . import sandbox  # the command line may know the sandbox; the sandbox never knows it

    if command != sandbox.COMMAND and sandbox.sandbox_state(sandbox_dir or sandbox.SANDBOX_DIR).exists():
        flag = "--history" if args.history else "--rejected"
        return f" (the sandbox keeps its own: {sandbox.COMMAND} {flag})"
    return ""


def sandbox_command(args: argparse.Namespace, tunables: Optional[Tunables] = None,
                    folder: Optional[Path] = None) -> int:
    """--sandbox: the same run as for real, with settings pointing at the built-in fakes, kept in
    `folder` (sandbox.SANDBOX_DIR unless given)."""
    from . import sandbox

    folder = folder or sandbox.SANDBOX_DIR
    if args.log_file:  # as for real
        add_log_file(args.log_file, tunables or TUNABLES)
    if args.reset:  # only that: the next run shows the first run again (a run here would exit 1, unasked)
        sandbox.reset(folder)
        print(f"The sandbox starts over: the next {sandbox.COMMAND} runs on fresh sample data.",
              file=sys.stderr if args.json else sys.stdout)
        return EXIT_OK
    if args.history or args.rejected:
        return state_commands(args, sys.stdout, sandbox.sandbox_state(folder), sandbox.COMMAND)
    with sandbox.Sandbox(touch_count=args.touch or 0, folder=folder) as box:
        mapping_path = args.mapping or sandbox.default_mapping(folder)
        mapping = load_mapping(mapping_path)
        box.introduce(mapping_path, sys.stderr if args.json else sys.stdout, checking=args.check)
        if args.check:
            hubspot, mailerlite = clients(box.settings, tunables=tunables)
            # As for real: a note about engagement only when the mapping turns it on.
            return Preflight(hubspot, mailerlite, mapping, SafeOutput(sys.stdout),  # type: ignore[arg-type]
                             check_engagement=mapping.engagement).run()
        progress = Progress(enabled=sys.stderr.isatty() and not args.quiet)
        # Engagement as for real: on only when the mapping turns it on (the sandbox then shows the figures).
        with dry_run_plan(args) as plan:
            options = RunOptions(full=args.full, force=args.force, dry_run=args.dry_run,
                                 count_total=progress.enabled, engagement=mapping.engagement, plan=plan)
            summary = run_sync(box.settings, options, mapping, progress, tunables=tunables)
        report(summary, args.json, sandbox.COMMAND)
        # An error ends the output: the demo's tour below it would bury the one line that matters.
        if not args.json and summary.exit_code in (EXIT_OK, EXIT_PARTIAL):
            box.tell(summary, sys.stdout, engagement=options.engagement)
        return summary.exit_code


def _stdout_gone() -> bool:
    """Whether stdout's reader has gone (a BrokenPipeError from an API connection is no such thing)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll() (Windows): stdout is by far the likelier
        return True


def _reader_went_away(exit_code: int) -> int:
    """The reader of stdout went away (`| head`, quitting `less`): end quietly, as other command-line
    tools do. Any other broken pipe is a bug, reported as such."""
    if not _stdout_gone():
        log.error("unexpected BrokenPipeError; what was synced so far is kept. Please report it, with the "
                  "output of --verbose")
        return EXIT_ABORTED
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python's final flush must not fail again
    except (OSError, ValueError):
        pass
    return exit_code


def main(argv: Optional[List[str]] = None, tunables: Optional[Tunables] = None,
         sandbox_dir: Optional[Path] = None, project_dir: Path = PROJECT_DIR) -> int:
    """The program. `tunables` (waits, retry budgets, clock) defaults to the module's TUNABLES;
    `sandbox_dir`, where --sandbox keeps its fake accounts, to sandbox.SANDBOX_DIR; `project_dir`,
    where .env, the shared state and relative paths of .env are found, to the folder of main.py."""
    with _signals_stop_the_run():
        return _main(argv, tunables, sandbox_dir, project_dir)


def _stdout_takes_any_text() -> None:
    """Reports name people in any alphabet. A stdout that cannot encode them (Windows' `> file` in the ANSI
    code page, a C locale) gets UTF-8 when it is a file or a pipe (as --output writes), escapes on a terminal."""
    stdout = sys.stdout
    try:
        if codecs.lookup(stdout.encoding or "ascii").name == "utf-8":
            return
        reconfigure = stdout.reconfigure  # type: ignore[union-attr]  # TextIOWrapper's, absent from TextIO
        if stdout.isatty():
            reconfigure(errors="backslashreplace")
        else:
            reconfigure(encoding="utf-8")
    except (AttributeError, LookupError, ValueError, OSError):  # not a real stream (embedded): leave it
        pass


def _main(argv: Optional[List[str]], tunables: Optional[Tunables], sandbox_dir: Optional[Path] = None,
          project_dir: Path = PROJECT_DIR) -> int:
    started = time.monotonic()
    _stdout_takes_any_text()
    args = parse_args(argv)
    configure_logging(args.quiet, args.verbose)
    invocation.use_env_file(args.env_file)  # every hint this run prints repeats its --env-file
    if args.force and not args.full:
        return _failed(EXIT_CONFIG, "--force only makes sense with --full", args.json, None)
    settings: Optional[Settings] = None
    try:
        if args.sandbox:
            return sandbox_command(args, tunables, sandbox_dir)  # the only way the product reaches the fake APIs
        if args.history or args.rejected:
            return state_commands(args, sys.stdout, load_state_path(args.env_file,
                                                                    env_file_given=args.env_file is not None,
                                                                    project=project_dir),
                                  sandbox_dir=sandbox_dir)
        settings = load_settings(args.env_file, env_file_given=args.env_file is not None, project=project_dir)
        log_file = args.log_file or settings.log_file
        if log_file:
            add_log_file(log_file, tunables or TUNABLES)
        mapping = load_mapping(args.mapping or settings.mapping_file, settings.groups)
        write_back = settings.write_back or mapping.write_back
        engagement = settings.engagement or mapping.engagement
        advice = advice_for(env_file_path(args.env_file, project_dir))
        if args.check:
            for _, message in advice:
                log.warning("%s", message)
            hubspot, mailerlite = clients(settings, started=started, tunables=tunables)
            check = Preflight(hubspot, mailerlite, mapping, SafeOutput(sys.stdout),  # type: ignore[arg-type]
                              check_write_back=write_back, check_engagement=engagement)
            # What stops a run without being a check of the accounts is listed with the check's problems, so
            # the report never ends "All checks passed." above an exit 2. A setting the program does not read
            # is a setting that silently does nothing.
            check.problems += [f"the program reads no setting {key[len(UNKNOWN_SETTING):]} (the warning above)"
                               for key, _ in advice if key.startswith(UNKNOWN_SETTING)]
            try:
                shared_state = state_problem(settings.state_db, hubspot, mailerlite)
            except SyncError as exc:  # a state this user cannot open, or a damaged one
                shared_state = str(exc)
            if shared_state:
                log.error("%s", shared_state)
                check.problems.append("the state file cannot be used with these settings (the error above)")
            return check.run()
        progress = Progress(enabled=sys.stderr.isatty() and not args.quiet)
        with dry_run_plan(args) as plan:
            options = RunOptions(full=args.full, force=args.force, dry_run=args.dry_run,
                                 count_total=progress.enabled, write_back=write_back,
                                 write_back_hours=settings.write_back_hours, allow_mass_leave=args.allow_mass_leave,
                                 engagement=engagement, engagement_hours=settings.engagement_hours,
                                 consent_sweep_hours=settings.consent_sweep_hours,
                                 associations_hours=settings.associations_hours, plan=plan)
            summary = run_sync(settings, options, mapping, progress, started, advice, tunables)
    except SyncError as exc:
        return _failed(exc.exit_code, str(exc), args.json, settings, getattr(exc, "quiet", False))
    except BrokenPipeError:
        return _reader_went_away(EXIT_OK)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM turned into Interrupted above
        stop_caught()  # what follows (the record said, the ping) is not stopped again
        code = getattr(exc, "exit_code", EXIT_INTERRUPTED)
        return _failed(code, str(exc) or "interrupted (SIGINT); what was synced so far is kept", args.json,
                       settings, summary=attached(exc))
    except Exception as exc:  # a bug: one line (no message: it could hold data), the details with --verbose
        log.debug("unexpected error", exc_info=True)
        return _failed(EXIT_ABORTED, f"unexpected {exc.__class__.__name__}; what was synced so far is kept. Please "
                                     f"report it, with the output of --verbose", args.json, settings,
                       summary=attached(exc))
    try:
        try:
            report(summary, args.json)
        except BrokenPipeError:
            if _reader_went_away(summary.exit_code) == EXIT_ABORTED:
                return EXIT_ABORTED
        if not args.dry_run:
            ping(settings.healthcheck_url, success=summary.exit_code == EXIT_OK)
    except KeyboardInterrupt as exc:  # a signal after the run was recorded (the ping takes seconds): one line
        log.error("%s", str(exc) or "interrupted (SIGINT)")
        return getattr(exc, "exit_code", EXIT_INTERRUPTED)
    return summary.exit_code
