"""The line a run ends with, in two forms: the log file's (every count, one line, as it has always
been) and the one a person reads on stderr or in cron mail, which fits in 80 columns: the most
detail that fits, the problem counts always, and a command on a line of its own (an absolute
command can be longer than 80 columns, and is never cut or wrapped in the middle)."""

from __future__ import annotations

from typing import Iterable, Optional

from .columns import COLUMNS, INDENT
from .summary import SUMMARY_COUNTS, Summary

# Zeros left out but for these; the log file's line and --json have every count.
LINE_ALWAYS = ("read", "created", "updated", "unchanged")
LINE_LEFT_OUT = ("unsubscribed", "mass_leave_held")  # as the line has always been
PROBLEM_COUNTS = ("rejected", "failed", "write_back_failed", "consent_pending")


def describe(summary: Summary) -> str:
    """Every count of the run (zeros left out but the first four): the log file's line."""
    d = summary.as_dict()
    text = ", ".join(f"{k.replace('_', ' ')} {d[k]}" for k in SUMMARY_COUNTS
                     if k not in LINE_LEFT_OUT and (d[k] or k in LINE_ALWAYS))
    if summary.dry_run:
        text += f", would send {d['would_send']}"
    return f"{_mode(summary)}: {text} in {summary.duration_seconds:.1f} s"


def _mode(summary: Summary) -> str:
    return f"{summary.mode} sync{' (dry run)' if summary.dry_run else ''}"


def _short(summary: Summary) -> str:
    """Read, sent and the problems: what is left of the line when every count does not fit."""
    parts = [f"read {summary['read']}", f"sent {summary['created'] + summary['updated']}"]
    if summary.dry_run:
        parts[1] = f"would send {summary['would_send']}"
    parts += [f"{k.replace('_', ' ')} {summary[k]}" for k in PROBLEM_COUNTS if summary[k]]
    return f"{_mode(summary)}: {', '.join(parts)} in {summary.duration_seconds:.1f} s"


def _problems(summary: Summary) -> str:
    return ", ".join(f"{k.replace('_', ' ')} {summary[k]}" for k in PROBLEM_COUNTS if summary[k]) or _mode(summary)


def fitted(prefix: str, candidates: Iterable[str], width: int = COLUMNS) -> str:
    """The first candidate that fits in `width` columns after `prefix` ("WARNING: "), else the last."""
    chosen = ""
    for chosen in candidates:
        if len(prefix) + len(chosen) <= width:
            break
    return chosen


def for_person(summary: Summary, level: str, command: Optional[str] = None) -> str:
    """The closing line for stderr: `level` is the prefix's word (INFO, WARNING, ERROR); `command`
    (the --rejected hint's), when given, goes on its own line below."""
    prefix = f"{level}: "
    if level == "ERROR":  # why it stopped, then what it did before
        message = summary.message
        if not any(summary[k] for k in SUMMARY_COUNTS):  # a row of zeros says less than this
            return f"{message}; nothing read or sent"
        # The message is the program's own words, often long itself: what was done stays, short.
        return fitted(prefix, (f"{message}; done so far: {describe(summary)}",
                               f"{message}; done so far: {_short(summary)}"))
    tail = "; which and why:" if command else ""
    line = fitted(prefix, (describe(summary) + tail, _short(summary) + tail, _problems(summary) + tail))
    return f"{line}\n{INDENT}{command}" if command else line
