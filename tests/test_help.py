"""--help."""

from __future__ import annotations

from tests.test_cli_subprocess import run_main


def test_help_lists_every_exit_code(tmp_path):
    done = run_main(["--help"], {}, tmp_path)
    epilog = done.stdout.split("exit codes:", 1)[1]
    codes = [line.split()[0] for line in epilog.splitlines() if line.strip() and line.split()[0].isdigit()]
    assert codes == ["0", "1", "2", "3", "75", "130", "143"]
    assert all(len(line) <= 80 for line in done.stdout.splitlines())
