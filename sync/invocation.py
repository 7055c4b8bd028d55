"""How to start this program again, as a hint that works from cron mail: the absolute
interpreter and main.py paths (cron has neither the working folder nor the venv activated), and
the run's --env-file when it had one: pasted without it, a hint would show (or sync) the default
.env's client instead of this one."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Optional

MAIN_PY = Path(__file__).resolve().parent.parent / "main.py"
COMMAND = f"{shlex.quote(sys.executable or 'python')} {shlex.quote(str(MAIN_PY))}"

_env_file: Optional[str] = None  # this run's --env-file, absolute; set once by the command line


def use_env_file(env_file: Optional[Path]) -> None:
    """Called by the command line for each run (None: the default .env)."""
    global _env_file
    _env_file = os.path.abspath(env_file) if env_file is not None else None


def command() -> str:
    """The command that repeats this run's settings: COMMAND, plus --env-file when it had one."""
    return COMMAND if _env_file is None else f"{COMMAND} --env-file {shlex.quote(_env_file)}"
