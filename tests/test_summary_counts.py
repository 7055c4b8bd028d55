"""The summary's counts are listed once (summary.SUMMARY_COUNTS); the closing line, the runs table
and --history take theirs from it."""

from __future__ import annotations

from collections import Counter

from sync import cli, reports
from sync.state import RUN_COUNTS
from sync.summary import SUMMARY_COUNTS, Summary


def test_the_stored_counts_are_summary_keys_in_the_same_order():
    assert list(RUN_COUNTS) == [k for k in SUMMARY_COUNTS if k in RUN_COUNTS]


def test_the_closing_line_names_every_nonzero_count_but_the_ones_left_out():
    summary = Summary("incremental", False, Counter({k: 7 for k in SUMMARY_COUNTS}))
    line = cli.describe(summary)
    for key in SUMMARY_COUNTS:
        assert (f"{key.replace('_', ' ')} 7" in line) == (key not in cli.LINE_LEFT_OUT), key


def test_the_closing_line_keeps_the_main_counts_even_at_zero():
    line = cli.describe(Summary("full", False, Counter()))
    assert line.startswith("full sync: read 0, created 0, updated 0, unchanged 0 in ")


def test_history_shows_the_stored_counts_up_to_failed():
    run = {"mode": "full", "started_at": 1, "finished_at": 3, "exit_code": 0, **{k: 5 for k in RUN_COUNTS}}
    (line,) = reports.history_lines([run])
    assert "read 5  created 5  updated 5  unchanged 5  skipped 5  rejected 5  failed 5  2 s  exit 0" in line
    assert "not reactivated" not in line and "left scope" not in line
