"""Command line: flags, logging on stderr, one summary at the end, exit codes."""

from __future__ import annotations

import argparse
import json
import logging
import logging.handlers
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Optional, TextIO, Tuple

import filelock

from . import __version__
from .config import Settings, load_settings, load_state_path
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
from .reports import export_rejected, print_history
from .state import State

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
                             "MailerLite APIs with sample data, on this machine only")
    parser.add_argument("--dry-run", action="store_true", help="read and plan, write nothing to MailerLite")
    parser.add_argument("--full", action="store_true",
                        help="re-read every HubSpot contact (after a mapping change, say); "
                             "only contacts whose mapped data changed are sent")
    parser.add_argument("--force", action="store_true",
                        help="with --full: resend every contact even if MailerLite already has it")
    parser.add_argument("--check", action="store_true",
                        help="check tokens, scopes, properties, fields, groups and lists; show the mapping with "
                             "sample values; write nothing")
    parser.add_argument("--history", action="store_true", help="show the last runs, one line each")
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
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


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
    return (HubSpotWriter(settings.hubspot_token, settings.hubspot_base_url, timeout=timeout, on_wait=hs_wait,
                          api_version=settings.hubspot_api_version),
            MailerLiteClient(settings.mailerlite_token, settings.mailerlite_base_url, timeout=timeout,
                             on_wait=ml_wait))


def run_sync(settings: Settings, options: RunOptions, mapping: Mapping, progress: Progress) -> Summary:
    with run_lock(settings.state_db):
        state = State(settings.state_db)
        try:
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


def report(summary: Summary, as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary.as_dict(), sort_keys=True))
    details = ""
    if summary.counts["rejected"] or summary.counts["failed"]:
        details = " (which and why: python main.py --rejected)"
    if summary.exit_code == EXIT_OK:
        summary_log.info("%s", describe(summary))
    elif summary.exit_code == EXIT_PARTIAL:
        summary_log.warning("%s%s", describe(summary), details)
    else:
        log.error("%s", summary.message)
        summary_log.warning("stopped: %s", describe(summary))


def state_commands(args: argparse.Namespace, out: TextIO, path: Path) -> int:
    """--history and --rejected: read the state, need no token."""
    if not path.exists():
        raise ConfigError(f"no state database at {path} yet: run the sync first")
    state = State(path)
    try:
        if args.history:
            print_history(state, out)
            return EXIT_OK
        if args.output:
            try:
                with open(args.output, "w", encoding="utf-8", newline="") as handle:
                    count = export_rejected(state, handle)
            except OSError as exc:
                raise ConfigError(f"cannot write {args.output}: {exc.strerror or exc}") from None
            log.info("%d rejected or failed contacts written to %s", count, args.output)
        else:
            export_rejected(state, out)
        return EXIT_OK
    finally:
        state.close()


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.quiet, args.verbose)
    if args.force and not args.full:
        log.error("--force only makes sense with --full")
        return EXIT_CONFIG
    settings: Optional[Settings] = None
    try:
        if args.sandbox:
            from .sandbox import run_sandbox  # the only way the product reaches the fake APIs

            return run_sandbox(args)
        if args.history or args.rejected:
            return state_commands(args, sys.stdout, load_state_path(args.env_file,
                                                                    env_file_given=args.env_file is not None))
        settings = load_settings(args.env_file, env_file_given=args.env_file is not None)
        log_file = args.log_file or settings.log_file
        if log_file:
            add_log_file(log_file)
        mapping = load_mapping(args.mapping or settings.mapping_file, settings.groups)
        write_back = settings.write_back or mapping.write_back
        if args.check:
            return Preflight(*clients(settings), mapping, sys.stdout, check_write_back=write_back).run()
        progress = Progress(enabled=sys.stderr.isatty() and not args.quiet)
        options = RunOptions(full=args.full, force=args.force, dry_run=args.dry_run, count_total=progress.enabled,
                             write_back=write_back, write_back_hours=settings.write_back_hours)
        summary = run_sync(settings, options, mapping, progress)
    except SyncError as exc:
        log.error("%s", exc)
        if args.json:
            print(json.dumps({"exit_code": exc.exit_code, "error": str(exc)}, sort_keys=True))
        if settings is not None and exc.exit_code != EXIT_LOCKED:
            ping(settings.healthcheck_url, success=False)
        return exc.exit_code
    except KeyboardInterrupt:
        log.error("interrupted; what was synced so far is kept")
        return 130
    except Exception as exc:  # a bug: one line (no message: it could hold data), the details with --verbose
        log.debug("unexpected error", exc_info=True)
        log.error("unexpected %s; what was synced so far is kept. Please report it, with the output of "
                  "--verbose", exc.__class__.__name__)
        return EXIT_ABORTED
    report(summary, args.json)
    if not args.dry_run:
        ping(settings.healthcheck_url, success=summary.exit_code == EXIT_OK)
    return summary.exit_code
