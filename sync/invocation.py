"""How to start this program again, as a hint that works from cron mail: the absolute
interpreter and main.py paths (cron has neither the working folder nor the venv activated)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

MAIN_PY = Path(__file__).resolve().parent.parent / "main.py"
COMMAND = f"{shlex.quote(sys.executable or 'python')} {shlex.quote(str(MAIN_PY))}"
