#!/usr/bin/env python3
"""HubSpot -> MailerLite contact sync. Run `python main.py --help`."""

import sys

if sys.version_info < (3, 9):  # noqa: UP036 - a clear message on old Pythons
    sys.exit("hubspot-mailerlite-sync needs Python 3.9 or newer")

try:
    from sync.cli import main
except ImportError as exc:  # a fresh machine without the dependencies
    sys.exit(f"error: {exc.name or exc} is not installed; run: pip install -r requirements.txt")

if __name__ == "__main__":
    sys.exit(main())
