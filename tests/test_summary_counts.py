"""The summary's counts are listed once (summary.SUMMARY_COUNTS); the closing line, the runs table
and --history take theirs from it."""

from __future__ import annotations

from collections import Counter

from sync import cli, closing_line, reports
from sync.state import RUN_COUNTS
from sync.summary import SUMMARY_COUNTS, Summary


def test_the_stored_counts_are_summary_keys_in_the_same_order():
    assert list(RUN_COUNTS) == [k for k in SUMMARY_COUNTS if k in RUN_COUNTS]


def test_the_closing_line_names_every_nonzero_count_but_the_ones_left_out():
    summary = Summary("incremental", False, Counter({k: 7 for k in SUMMARY_COUNTS}))
    line = cli.describe(summary)
    for key in SUMMARY_COUNTS:
        assert (f"{key.replace('_', ' ')} 7" in line) == (key not in closing_line.LINE_LEFT_OUT), key


def test_the_closing_line_keeps_the_main_counts_even_at_zero():
    line = cli.describe(Summary("full", False, Counter()))
    assert line.startswith("full sync: read 0, created 0, updated 0, unchanged 0 in ")


def test_history_shows_the_stored_counts_up_to_failed_and_the_rest_when_not_zero():
    run = {"mode": "full", "started_at": 1, "finished_at": 3, "exit_code": 0, **{k: 5 for k in RUN_COUNTS}}
    zeros = {**run, "not_reactivated": 0, "left_scope": 0}
    head, *counts = reports.history_lines([zeros])
    assert head.endswith("  full, exit 0, 2 s")
    assert " ".join(counts) == "  read 5, created 5, updated 5, unchanged 5, skipped 5, rejected 5, failed 5"
    head, *counts = reports.history_lines([run], width=40)
    assert " ".join(c.strip() for c in counts).endswith("failed 5, not reactivated 5, left scope 5")
    assert all(len(line) < 40 for line in counts)


def test_a_run_stopped_before_anything_was_read_says_so_instead_of_a_row_of_zeros():
    stopped = Summary("full", False, Counter(), message="HubSpot rejected the access token")
    assert closing_line.for_person(stopped, "ERROR") == "HubSpot rejected the access token; nothing read or sent"
    stopped.counts["read"] = 3
    assert closing_line.for_person(stopped, "ERROR").startswith(
        "HubSpot rejected the access token; done so far: full sync: read 3, ")
