"""Looking back: the run history and the contacts that need a person's attention."""

from __future__ import annotations

import csv
import json
import textwrap
import time
from typing import Dict, List, TextIO

from .progress import terminal_columns
from .redaction import escape_unsafe, redact
from .state import RUN_COUNTS, State

REJECTED_COLUMNS = ("email", "hubspot_id", "kind", "reason", "attempts", "first_seen", "last_seen")
# --history's counts: the stored ones (state.RUN_COUNTS, the summary's keys); these always, the rest when not zero.
HISTORY_ALWAYS = RUN_COUNTS[:RUN_COUNTS.index("failed") + 1]
NO_BREAK = "\u00a0"  # not a space to textwrap
HISTORY_WIDTH = 80  # at most: a cron mail or a narrow terminal; --json has every field


def _when(epoch: object) -> str:
    if not isinstance(epoch, int):
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def _iso(epoch: object) -> str:
    """A time in a CSV: ISO 8601 in UTC, marked Z, so a spreadsheet or a script reads it the same anywhere."""
    if not isinstance(epoch, int):
        return "-"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def history_lines(runs: List[Dict[str, object]], width: int = HISTORY_WIDTH) -> List[str]:
    """Each run, newest first: when, mode, how it ended and how long it took on one line, its
    counts (and why it stopped, if it did) on the next, wrapped to `width` columns."""
    lines = []
    for run in runs:
        started, finished = run.get("started_at"), run.get("finished_at")
        duration = f"{int(finished) - int(started)} s" if isinstance(finished, int) and isinstance(started, int) \
            else "running or killed"
        mode = f"{run['mode']}{' dry run' if run.get('dry_run') else ''}"
        code = run.get("exit_code")
        lines.append(f"{_when(started)}  {mode}, exit {'-' if code is None else code}, {duration}")
        # A count's name and number are glued (a no-break space), so that wrapping never leaves
        # "failed" at the end of one line and its number alone on the next.
        counts = ", ".join(f"{k.replace('_', NO_BREAK)}{NO_BREAK}{run.get(k) or 0}" for k in RUN_COUNTS
                           if k in HISTORY_ALWAYS or run.get(k))
        message = run.get("message")
        text = counts + (f"; {message}" if message else "")
        lines += [line.replace(NO_BREAK, " ") for line in
                  textwrap.wrap(text, max(40, width - 1), initial_indent="  ", subsequent_indent="  ",
                                break_on_hyphens=False)]
    return lines


def print_history(state: State, out: TextIO, limit: int = 20) -> None:
    lines = history_lines(state.runs(limit), min(HISTORY_WIDTH, terminal_columns(out)))
    if not lines:
        print("No runs yet.", file=out)
    for line in lines:
        print(escape_unsafe(line), file=out)


def history_json(state: State, limit: int = 20) -> str:
    """The last runs, newest first, as one JSON array (for scripts); dry_run a boolean, as in the summary."""
    runs = [{**run, "dry_run": bool(run.get("dry_run"))} for run in state.runs(limit)]
    return json.dumps(runs, sort_keys=True)


def _cell(value: object) -> object:
    """Keep spreadsheet programs from running HubSpot data as a formula (CSV injection), and
    terminals from running escape sequences; no token (a server may have echoed one)."""
    if not isinstance(value, str):
        return value
    value = escape_unsafe(redact(value))
    if value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def export_rejected(state: State, out: TextIO) -> int:
    """Rejected and failed contacts, and consent actions that keep failing (kind "unsubscribe pending" or
    "group removal pending"), as CSV, for a person to look into. Returns the count."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(REJECTED_COLUMNS)
    rows = state.problems() + state.pending_problems()  # contacts, then consent actions MailerLite has not taken
    for row in rows:
        writer.writerow([_cell(row["email"]), row["hubspot_id"], row["kind"], _cell(row["reason"]), row["attempts"],
                         _iso(row["first_seen"]), _iso(row["last_seen"])])
    return len(rows)
