"""Looking back: the run history and the contacts that need a person's attention."""

from __future__ import annotations

import csv
import json
import time
from typing import Dict, List, TextIO

from .redaction import escape_unsafe, redact
from .state import RUN_COUNTS, State

REJECTED_COLUMNS = ("email", "hubspot_id", "kind", "reason", "attempts", "first_seen", "last_seen")
# --history's counts: the stored ones (state.RUN_COUNTS, the summary's keys) up to "failed", to keep a line short.
HISTORY_COUNTS = RUN_COUNTS[:RUN_COUNTS.index("failed") + 1]


def _when(epoch: object) -> str:
    if not isinstance(epoch, int):
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def history_lines(runs: List[Dict[str, object]]) -> List[str]:
    """One line per run, newest first."""
    lines = []
    for run in runs:
        started, finished = run.get("started_at"), run.get("finished_at")
        duration = f"{int(finished) - int(started)} s" if isinstance(finished, int) and isinstance(started, int) \
            else "running or killed"
        mode = f"{run['mode']}{' dry-run' if run.get('dry_run') else ''}"
        counts = "  ".join(f"{k.replace('_', ' ')} {run.get(k) or 0}"
                           for k in HISTORY_COUNTS)
        code = run.get("exit_code")
        lines.append(f"{_when(started)}  {mode:<19} {counts}  {duration}  exit {'-' if code is None else code}")
    return lines


def print_history(state: State, out: TextIO, limit: int = 20) -> None:
    lines = history_lines(state.runs(limit))
    if not lines:
        print("No runs yet.", file=out)
    for line in lines:
        print(line, file=out)


def history_json(state: State, limit: int = 20) -> str:
    """The last runs, newest first, as one JSON array (for scripts)."""
    return json.dumps(state.runs(limit), sort_keys=True)


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
                         _when(row["first_seen"]), _when(row["last_seen"])])
    return len(rows)
