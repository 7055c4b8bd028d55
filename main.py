#!/usr/bin/env python3
"""HubSpot -> MailerLite contact sync. Run `python main.py --help`."""

# This file is read by whatever Python cron or a hosting panel starts, so its own syntax stays
# old (no f-strings, no annotations): the version check below must be reached to say what to do.
import sys

NEEDED = (3, 9)


def python_version_problem(version_info, executable):
    """One line saying what was found, what is needed and how to choose another interpreter;
    None when this Python will do."""
    if tuple(version_info[:2]) >= NEEDED:
        return None
    found = ".".join(str(part) for part in version_info[:3])
    return ("error: hubspot-mailerlite-sync needs Python %d.%d or newer, but %s is Python %s; "  # noqa: UP031
            "choose another interpreter: in cPanel's \"Setup Python App\" pick 3.9 or newer, or make the "
            "venv with python3.11 (any 3.9 or newer) and put that venv's python in the cron line"
            % (NEEDED[0], NEEDED[1], executable or "python", found))


def _stop_on_old_python():
    problem = python_version_problem(sys.version_info, sys.executable)
    if problem:
        sys.exit(problem)


_stop_on_old_python()  # before importing anything that fails on an old Python

try:
    from sync.cli import main
except ImportError as exc:  # a fresh machine without the dependencies, or a partly copied program
    missing = exc.name or str(exc)
    if missing == "sync" or missing.startswith("sync."):
        sys.exit("error: the sync folder beside main.py is missing or incomplete (%s); copy or unpack "  # noqa: UP031
                 "the whole program again" % missing)
    sys.exit("error: %s is not installed; run: %s -m pip install -r requirements.txt"  # noqa: UP031
             % (missing, sys.executable or "python"))

if __name__ == "__main__":
    sys.exit(main())
