"""Command line: flags, logging on stderr, one summary at the end, exit codes."""

from __future__ import annotations

import argparse
import json
import logging
import logging.handlers
import os
import select
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, TextIO, Tuple

import filelock

from . import __version__
from .advisories import ENV_FILE_SHARED, UNKNOWN_SETTING, Advisories
from .config import Settings, env_file_path, load_settings, load_state_path, misspelt_settings, shared_env_file
from .engine import Engine, RunOptions, Summary
from .errors import (
    EXIT_ABORTED,
    EXIT_CONFIG,
    EXIT_LOCKED,
    EXIT_OK,
    EXIT_PARTIAL,
    ConfigError,
    LockHeld,
    StateError,
    SyncError,
)
from .healthcheck import ping
from .hubspot import HubSpotWriter
from .mailerlite import MailerLiteClient
from .mapping import Mapping
from .mapping_file import load_mapping
from .preflight import Preflight
from .progress import Progress
from .reports import export_rejected, history_json, print_history
from .state import State

PROGRAM = "hubspot-mailerlite-sync"
COMMAND = "python main.py"
log = logging.getLogger("sync")
summary_log = logging.getLogger("sync.summary")  # the one line per run that the log file keeps
LOG_FILE_BYTES = 1_000_000
LOG_FILE_BACKUPS = 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="main.py",
        description="Sync HubSpot contacts into MailerLite subscribers. Settings come from the "
                    "environment and a .env file beside main.py (see .env.example).",
        epilog="Exit codes: 0 all good; 1 some contacts rejected or failed; 2 configuration or "
               "credential error; 3 aborted (outage, HubSpot daily limit), progress kept; "
               "75 another run holds the lock.")
    parser.add_argument("--sandbox", action="store_true",
                        help="try it without any account: the real sync against built-in fake HubSpot and "
                             "MailerLite APIs with sample data, on this machine only; kept between runs")
    parser.add_argument("--touch", type=_count, metavar="N",
                        help="with --sandbox: edit N sample contacts in the fake HubSpot first, to watch only "
                             "those go")
    parser.add_argument("--reset", action="store_true",
                        help="with --sandbox: start over from fresh sample data")
    parser.add_argument("--dry-run", action="store_true", help="read and plan, write nothing to MailerLite")
    parser.add_argument("--full", action="store_true",
                        help="re-read every HubSpot contact (after a mapping change, say); "
                             "only contacts whose mapped data changed are sent")
    parser.add_argument("--force", action="store_true",
                        help="with --full: resend every contact even if MailerLite already has it")
    parser.add_argument("--check", action="store_true",
                        help="check tokens, scopes, properties, fields, groups and lists; show the mapping with "
                             "sample values; write nothing")
    parser.add_argument("--history", action="store_true",
                        help="show the last runs, one line each (with --json: as JSON)")
    parser.add_argument("--rejected", action="store_true",
                        help="export the rejected and failed contacts as CSV (to stdout or --output)")
    parser.add_argument("--output", type=Path, metavar="FILE", help="with --rejected: write the CSV here")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object on stdout")
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("--quiet", action="store_true", help="only errors on stderr")
    verbosity.add_argument("--verbose", action="store_true", help="detailed progress on stderr")
    parser.add_argument("--env-file", type=Path, metavar="PATH", help="read settings from this file instead of .env")
    parser.add_argument("--mapping", type=Path, metavar="PATH",
                        help="mapping file (TOML) to use instead of SYNC_MAPPING_FILE; see mapping.example.toml")
    parser.add_argument("--log-file", type=Path, metavar="PATH",
                        help="append run summaries and warnings to this rotating log file (or SYNC_LOG_FILE)")
    parser.add_argument("--version", action="version", version=f"{PROGRAM} {__version__}")
    return parser


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
    args = parser.parse_args(argv)
    if args.output and not args.rejected:
        parser.error("--output goes with --rejected (it names the CSV file); without --rejected nothing is "
                     "written there")
    if (args.touch or args.reset) and not args.sandbox:
        parser.error("--touch and --reset go with --sandbox")
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
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s" if verbose
                                           else "%(levelname)s: %(message)s"))
    handler.setLevel(level)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("urllib3", "hubspot"):  # their debug lines can echo request headers
        logging.getLogger(noisy).setLevel(logging.WARNING)


class _SummaryOrWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or record.name == summary_log.name


def add_log_file(path: Path) -> None:
    """A rotating log file: one line per run summary, plus warnings and errors."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(path, maxBytes=LOG_FILE_BYTES, backupCount=LOG_FILE_BACKUPS,
                                                       encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write the log file {path}: {exc.strerror or exc}") from None
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    handler.addFilter(_SummaryOrWarning())
    logging.getLogger().addHandler(handler)


@contextmanager
def run_lock(state_db: Path) -> Iterator[None]:
    """One run at a time. The OS drops the lock when a process dies, so it is never stale."""
    lock = filelock.FileLock(str(state_db) + ".lock", timeout=0)
    try:
        state_db.parent.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except filelock.Timeout:
        raise LockHeld(f"another run is in progress (lock {state_db}.lock); this one exits") from None
    except OSError as exc:
        raise StateError(f"cannot create the lock file {state_db}.lock ({exc.strerror or exc}); make the "
                         f"folder {state_db.parent} writable or set SYNC_STATE_DB") from None
    try:
        yield
    finally:
        lock.release()


def clients(settings: Settings, progress: Optional[Progress] = None) -> Tuple[HubSpotWriter, MailerLiteClient]:
    timeout = (min(10.0, settings.http_timeout), settings.http_timeout)
    hs_wait = (lambda reason, secs: progress.waiting(reason, secs, "HubSpot")) if progress else None
    ml_wait = (lambda reason, secs: progress.waiting(reason, secs, "MailerLite")) if progress else None
    return (HubSpotWriter(settings.hubspot_token, settings.hubspot_base_url, timeout=timeout, on_wait=hs_wait),
            MailerLiteClient(settings.mailerlite_token, settings.mailerlite_base_url, timeout=timeout,
                             on_wait=ml_wait))


def run_sync(settings: Settings, options: RunOptions, mapping: Mapping, progress: Progress,
             advice: Sequence[Tuple[str, str]] = ()) -> Summary:
    """One run: the lock, the state, the clients and the engine. `advice` is (key, message) said once."""
    with run_lock(settings.state_db):
        state = State(settings.state_db)
        try:
            Advisories(state).settle(advice)
            reader, client = clients(settings, progress)
            return Engine(reader, client, state, mapping, options, on_progress=progress.update).run()
        finally:
            progress.close()
            state.close()


def describe(summary: Summary) -> str:
    d = summary.as_dict()
    text = ", ".join(f"{k.replace('_', ' ')} {d[k]}" for k in
                     ("read", "created", "updated", "unchanged", "skipped", "rejected", "failed", "not_reactivated",
                      "left_scope", "written_back", "write_back_unmatched", "write_back_failed",
                      "write_back_requests")
                     if d[k] or k in ("read", "created", "updated", "unchanged"))
    if summary.dry_run:
        text += f", would send {d['would_send']}"
    return f"{summary.mode} sync{' (dry run)' if summary.dry_run else ''}: {text} in {summary.duration_seconds:.1f} s"


def report(summary: Summary, as_json: bool, command: str = COMMAND) -> None:
    """The one line a run ends with (stderr, and the log file); the JSON summary on stdout if asked."""
    if as_json:
        print(json.dumps(summary.as_dict(), sort_keys=True))
    details = ""
    if summary.counts["rejected"] or summary.counts["failed"]:
        details = f" (which and why: {command} --rejected)"
    if summary.exit_code == EXIT_OK:
        summary_log.info("%s", describe(summary))
    elif summary.exit_code == EXIT_PARTIAL:
        summary_log.warning("%s%s", describe(summary), details)
    else:  # one line: why it stopped, then what it did before
        summary_log.error("%s; done so far: %s", summary.message, describe(summary))


def advice_for(env_file: Path) -> List[Tuple[str, str]]:
    """(key, message) for the settings' advisories: a .env others can read, misspelt names."""
    found = []
    shared = shared_env_file(env_file)
    if shared:
        found.append((f"{ENV_FILE_SHARED}{env_file}", shared))
    for name, close in misspelt_settings(env_file):
        hint = f"did you mean {close}? " if close else ""
        found.append((f"{UNKNOWN_SETTING}{name}", f"{env_file}: the program reads no setting {name}; {hint}it is "
                                                 f"ignored until renamed"))
    return found


def state_commands(args: argparse.Namespace, out: TextIO, path: Path, command: str = COMMAND) -> int:
    """--history and --rejected: read the state, need no token."""
    if not path.exists():
        raise ConfigError(f"no state database at {path} yet: run {command} first{_sandbox_hint(args, command)}")
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
                with open(args.output, "w", encoding="utf-8", newline="") as handle:
                    count = export_rejected(state, handle)
            except OSError as exc:
                raise ConfigError(f"cannot write {os.path.abspath(args.output)}: {exc.strerror or exc}") from None
            log.info("%d rejected or failed contacts written to %s", count, args.output)
        else:
            export_rejected(state, out)
        return EXIT_OK
    finally:
        state.close()


def _sandbox_hint(args: argparse.Namespace, command: str) -> str:
    from . import sandbox  # the command line may know the sandbox; the sandbox never knows it

    if command == COMMAND and sandbox.sandbox_state().exists():
        flag = "--history" if args.history else "--rejected"
        return f" (the sandbox keeps its own: {sandbox.COMMAND} {flag})"
    return ""


def sandbox_command(args: argparse.Namespace) -> int:
    """--sandbox: the same run as for real, with settings pointing at the built-in fakes."""
    from . import sandbox

    if args.reset:
        sandbox.reset()
    if args.history or args.rejected:
        return state_commands(args, sys.stdout, sandbox.sandbox_state(), sandbox.COMMAND)
    with sandbox.Sandbox(touch_count=args.touch or 0) as box:
        mapping_path = args.mapping or sandbox.default_mapping()
        mapping = load_mapping(mapping_path)
        box.introduce(mapping_path, sys.stderr if args.json else sys.stdout)
        if args.check:
            return Preflight(*clients(box.settings), mapping, sys.stdout).run()
        progress = Progress(enabled=sys.stderr.isatty() and not args.quiet)
        options = RunOptions(full=args.full, force=args.force, dry_run=args.dry_run, count_total=progress.enabled)
        summary = run_sync(box.settings, options, mapping, progress)
        report(summary, args.json, sandbox.COMMAND)
        if not args.json:
            box.tell(summary, sys.stdout)
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


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    configure_logging(args.quiet, args.verbose)
    if args.force and not args.full:
        log.error("--force only makes sense with --full")
        return EXIT_CONFIG
    settings: Optional[Settings] = None
    try:
        if args.sandbox:
            return sandbox_command(args)  # the only way the product reaches the fake APIs
        if args.history or args.rejected:
            return state_commands(args, sys.stdout, load_state_path(args.env_file,
                                                                    env_file_given=args.env_file is not None))
        settings = load_settings(args.env_file, env_file_given=args.env_file is not None)
        log_file = args.log_file or settings.log_file
        if log_file:
            add_log_file(log_file)
        mapping = load_mapping(args.mapping or settings.mapping_file, settings.groups)
        write_back = settings.write_back or mapping.write_back
        advice = advice_for(env_file_path(args.env_file))
        if args.check:
            for _, message in advice:
                log.warning("%s", message)
            return Preflight(*clients(settings), mapping, sys.stdout, check_write_back=write_back).run()
        progress = Progress(enabled=sys.stderr.isatty() and not args.quiet)
        options = RunOptions(full=args.full, force=args.force, dry_run=args.dry_run, count_total=progress.enabled,
                             write_back=write_back, write_back_hours=settings.write_back_hours)
        summary = run_sync(settings, options, mapping, progress, advice)
    except SyncError as exc:
        log.error("%s", exc)
        if args.json:
            print(json.dumps({"exit_code": exc.exit_code, "error": str(exc)}, sort_keys=True))
        if settings is not None and exc.exit_code != EXIT_LOCKED:
            ping(settings.healthcheck_url, success=False)
        return exc.exit_code
    except BrokenPipeError:
        return _reader_went_away(EXIT_OK)
    except KeyboardInterrupt:
        log.error("interrupted; what was synced so far is kept")
        return 130
    except Exception as exc:  # a bug: one line (no message: it could hold data), the details with --verbose
        log.debug("unexpected error", exc_info=True)
        log.error("unexpected %s; what was synced so far is kept. Please report it, with the output of "
                  "--verbose", exc.__class__.__name__)
        return EXIT_ABORTED
    try:
        report(summary, args.json)
    except BrokenPipeError:
        if _reader_went_away(summary.exit_code) == EXIT_ABORTED:
            return EXIT_ABORTED
    if not args.dry_run:
        ping(settings.healthcheck_url, success=summary.exit_code == EXIT_OK)
    return summary.exit_code
