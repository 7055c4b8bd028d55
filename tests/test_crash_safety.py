"""SIGKILL the sync at random moments; a final run must leave MailerLite exactly right."""

from __future__ import annotations

import pytest

from tests.reliability import kill_loop


def test_kill_loop_fast(tmp_path):
    result = kill_loop(kills=6, seed=7, minute_seconds=3, folder=tmp_path)
    assert result.exact, result.problems[:5]
    assert result.killed >= 3, "the kills must land mid-run to prove anything"


@pytest.mark.slow
def test_kill_loop_fifty_runs(tmp_path):
    result = kill_loop(kills=50, seed=2026, minute_seconds=15, folder=tmp_path)
    assert result.exact, result.problems[:5]
    assert result.killed >= 25
