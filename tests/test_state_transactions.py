"""The state's transactions survive an interruption between BEGIN and the work it guards."""

from __future__ import annotations

from sync.state import State


def test_a_transaction_left_open_by_a_signal_does_not_stop_the_run_being_recorded(tmp_path):
    state = State(tmp_path / "state.db")
    try:
        run_id = state.start_run("full", dry_run=False)
        # What a SIGTERM between `BEGIN IMMEDIATE` and the `with` body leaves behind.
        state.conn.execute("BEGIN IMMEDIATE")
        state.conn.execute("INSERT INTO meta(key, value) VALUES ('half', 'written')")
        state.finish_run(run_id, {"read": 1}, 143, "stopped by SIGTERM")
        [run] = state.runs(1)
        assert (run["exit_code"], run["message"], run["read"]) == (143, "stopped by SIGTERM", 1)
        assert state.conn.execute("SELECT COUNT(*) FROM meta WHERE key='half'").fetchone() == (0,)
    finally:
        state.close()
