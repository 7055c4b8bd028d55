"""Command line: flags, logging on stderr, one summary at the end, exit codes."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import filelock

from . import __version__
from .config import Settings, load_settings
from .engine import Engine, RunOptions, Summary
from .errors import EXIT_CONFIG, EXIT_OK, EXIT_PARTIAL, LockHeld, SyncError
from .hubspot import HubSpotReader
from .mailerlite import MailerLiteClient
from .mapping import Mapping
from .mapping_file import load_mapping
from .preflight import Preflight
from .state import State

log = logging.getLogger("sync")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="main.py",
        description="Sync HubSpot contacts into MailerLite subscribers. Settings come from the "
                    "environment and a .env file beside main.py (see .env.example).",
        epilog="Exit codes: 0 all good; 1 some contacts rejected or failed; 2 configuration or "
               "credential error; 3 aborted (outage, HubSpot daily limit), progress kept; "
               "75 another run holds the lock.")
    parser.add_argument("--dry-run", action="store_true", help="read and plan, write nothing to MailerLite")
    parser.add_argument("--full", action="store_true",
                        help="re-read every HubSpot contact (after a mapping change, say); "
                             "only contacts whose mapped data changed are sent")
    parser.add_argument("--force", action="store_true",
                        help="with --full: resend every contact even if MailerLite already has it")
    parser.add_argument("--check", action="store_true",
                        help="check tokens, scopes, properties, fields, groups and lists; show the mapping with "
                             "sample values; write nothing")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object on stdout")
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("--quiet", action="store_true", help="only errors on stderr")
    verbosity.add_argument("--verbose", action="store_true", help="detailed progress on stderr")
    parser.add_argument("--env-file", type=Path, metavar="PATH", help="read settings from this file instead of .env")
    parser.add_argument("--mapping", type=Path, metavar="PATH",
                        help="mapping file (TOML) to use instead of SYNC_MAPPING_FILE; see mapping.example.toml")
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
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("urllib3", "hubspot"):  # their debug lines can echo request headers
        logging.getLogger(noisy).setLevel(logging.WARNING)


@contextmanager
def run_lock(state_db: Path) -> Iterator[None]:
    """One run at a time. The OS drops the lock when a process dies, so it is never stale."""
    state_db.parent.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(str(state_db) + ".lock", timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise LockHeld(f"another run is in progress (lock {state_db}.lock); this one exits") from None
    try:
        yield
    finally:
        lock.release()


def clients(settings: Settings) -> Tuple[HubSpotReader, MailerLiteClient]:
    timeout = (min(10.0, settings.http_timeout), settings.http_timeout)
    return (HubSpotReader(settings.hubspot_token, settings.hubspot_base_url, timeout=timeout),
            MailerLiteClient(settings.mailerlite_token, settings.mailerlite_base_url, timeout=timeout))


def run_sync(settings: Settings, options: RunOptions, mapping: Mapping) -> Summary:
    with run_lock(settings.state_db):
        state = State(settings.state_db)
        try:
            reader, client = clients(settings)
            return Engine(reader, client, state, mapping, options).run()
        finally:
            state.close()


def describe(summary: Summary) -> str:
    d = summary.as_dict()
    text = ", ".join(f"{k.replace('_', ' ')} {d[k]}" for k in
                     ("read", "created", "updated", "unchanged", "skipped", "rejected", "failed", "not_reactivated"))
    if summary.dry_run:
        text += f", would send {d['would_send']}"
    return f"{summary.mode} sync{' (dry run)' if summary.dry_run else ''}: {text} in {summary.duration_seconds:.1f} s"


def report(summary: Summary, as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary.as_dict(), sort_keys=True))
    if summary.exit_code == EXIT_OK:
        log.info("%s", describe(summary))
    elif summary.exit_code == EXIT_PARTIAL:
        log.warning("%s", describe(summary))
    else:
        log.error("%s", summary.message)
        log.warning("%s", describe(summary))


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.quiet, args.verbose)
    if args.force and not args.full:
        log.error("--force only makes sense with --full")
        return EXIT_CONFIG
    try:
        settings = load_settings(args.env_file, env_file_given=args.env_file is not None)
        mapping = load_mapping(args.mapping or settings.mapping_file, settings.groups)
        if args.check:
            return Preflight(*clients(settings), mapping, sys.stdout).run()
        summary = run_sync(settings, RunOptions(full=args.full, force=args.force, dry_run=args.dry_run), mapping)
    except SyncError as exc:
        log.error("%s", exc)
        if args.json:
            print(json.dumps({"exit_code": exc.exit_code, "error": str(exc)}, sort_keys=True))
        return exc.exit_code
    except KeyboardInterrupt:
        log.error("interrupted; what was synced so far is kept")
        return 130
    report(summary, args.json)
    return summary.exit_code
