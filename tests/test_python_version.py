"""main.py names an old Python with what to do, and parses on old Pythons."""

from __future__ import annotations

import ast
import runpy
import sys

import pytest

from tests.test_cli_subprocess import MAIN


@pytest.mark.parametrize("version", [(3, 8, 10, "final", 0), (3, 6, 9, "final", 0)])
def test_an_old_python_is_named_with_what_to_do(version, monkeypatch, capsys):
    monkeypatch.setattr(sys, "version_info", version)
    monkeypatch.setattr(sys, "executable", "/usr/bin/python3")
    monkeypatch.setattr(sys, "argv", [str(MAIN), "--help"])
    with pytest.raises(SystemExit) as stopped:
        runpy.run_path(str(MAIN), run_name="__main__")
    message = str(stopped.value.code)
    found = ".".join(str(part) for part in version[:3])
    assert message.count("\n") == 0 and f"/usr/bin/python3 is Python {found}" in message
    assert "3.9 or newer" in message and "Setup Python App" in message and "python3.11" in message
    assert capsys.readouterr().out == ""  # stopped before --help: nothing else was imported or run


def test_a_new_enough_python_passes_the_check():
    checks = runpy.run_path(str(MAIN), run_name="not_main")
    assert checks["python_version_problem"]((3, 9, 0), "/usr/bin/python3") is None
    assert checks["python_version_problem"]((3, 13, 1), "/usr/bin/python3") is None
    assert "3.8.18" in checks["python_version_problem"]((3, 8, 18), "/opt/python")


def test_main_py_itself_parses_on_old_pythons():
    # No f-strings or annotations in main.py: an old interpreter must get as far as the check.
    tree = ast.parse(MAIN.read_text())
    newer = [type(node).__name__ for node in ast.walk(tree)
             if isinstance(node, (ast.JoinedStr, ast.AnnAssign, ast.NamedExpr))
             or (isinstance(node, ast.arg) and node.annotation is not None)
             or (isinstance(node, ast.FunctionDef) and node.returns is not None)]
    assert newer == []
