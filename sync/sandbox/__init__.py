"""`python main.py --sandbox`: the real sync against built-in fake HubSpot and MailerLite APIs
on 127.0.0.1, seeded with sample data. No account, no token, nothing leaves the machine.

The product reaches this package only through the --sandbox flag.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, TextIO

from ..config import PROJECT_DIR, Settings
from ..engine import RunOptions
from ..mapping_file import load_mapping
from .fakes.hubspot import SCHEMA_WRITE_SCOPE, WRITE_SCOPE, FakeHubSpot
from .fakes.mailerlite import FakeMailerLite
from .sample import BOUNCED_IN_MAILERLITE, UNSUBSCRIBED_IN_MAILERLITE, seed

HS_TOKEN = "sandbox-hubspot-token"
ML_TOKEN = "sandbox-mailerlite-token"
MINUTE_SECONDS = 1.5  # a MailerLite rate-limit "minute" lasts this long in the sandbox
SANDBOX_DIR = Path(tempfile.gettempdir()) / "hubspot-mailerlite-sync-sandbox"
EXAMPLE_MAPPING = PROJECT_DIR / "mapping.example.toml"
SHOWN = 6


def sandbox_state() -> Path:
    """The sandbox's own state file, in the system's temporary folder: never the real one."""
    return SANDBOX_DIR / "sync_state.db"


def _fresh_state(path: Path) -> None:
    # Each sandbox run starts with empty fakes, so it starts with an empty state too.
    if path.parent.exists():
        shutil.rmtree(path.parent)
    path.parent.mkdir(parents=True)


def run_sandbox(args: argparse.Namespace) -> int:
    from .. import cli  # the command line owns running and reporting; imported late (it imports us late)

    if args.history or args.rejected:
        return cli.state_commands(args, sys.stdout, sandbox_state())
    scale = MINUTE_SECONDS / 60
    hubspot = FakeHubSpot(time_scale=scale).start()
    mailerlite = FakeMailerLite(time_scale=scale).start()
    try:
        hubspot.tokens[HS_TOKEN] = set(hubspot.tokens.pop("hs-test-token")) | {WRITE_SCOPE, SCHEMA_WRITE_SCOPE}
        mailerlite.tokens = {ML_TOKEN}
        seed(hubspot, mailerlite)
        settings = Settings(hubspot_token=HS_TOKEN, mailerlite_token=ML_TOKEN, hubspot_base_url=hubspot.url,
                            mailerlite_base_url=mailerlite.base_url, state_db=sandbox_state(), http_timeout=30.0)
        mapping_path = args.mapping or (EXAMPLE_MAPPING if EXAMPLE_MAPPING.exists() else None)
        mapping = load_mapping(mapping_path)
        print(f"Sandbox: fake HubSpot at {hubspot.url} with {len(hubspot.contacts)} sample contacts, fake "
              f"MailerLite at {mailerlite.url}; mapping {mapping_path or 'built-in default'}.",
              file=sys.stderr if args.json else sys.stdout)
        if args.check:
            return cli.Preflight(*cli.clients(settings), mapping, sys.stdout).run()
        _fresh_state(sandbox_state())
        progress = cli.Progress(enabled=sys.stderr.isatty() and not args.quiet)
        options = RunOptions(full=True, force=args.force, dry_run=args.dry_run, count_total=progress.enabled)
        summary = cli.run_sync(settings, options, mapping, progress)
        cli.report(summary, args.json)
        if not args.json:
            show(mailerlite, sys.stdout)
        return summary.exit_code
    finally:
        hubspot.stop()
        mailerlite.stop()


FIRST_SHOWN = ("name", "last_name")
DEFAULT_KEYS = ("name", "last_name", "company", "country", "city", "phone", "state", "z_i_p")


def _row(sub: Dict[str, Any], groups: Dict[str, str]) -> List[str]:
    # Names first, then the custom fields a mapping adds (the interesting part), then the rest.
    values = {k: v for k, v in sub["fields"].items() if v not in (None, "")}
    order = [k for k in FIRST_SHOWN if k in values] + sorted(k for k in values if k not in DEFAULT_KEYS)
    order += [k for k in values if k not in order]
    fields = ", ".join(f"{k}={values[k]}" for k in order)
    names = ", ".join(sorted(groups.get(g, g) for g in sub["groups"])) or "-"
    return [sub["email"], sub["status"], names, fields[:110] + ("..." if len(fields) > 110 else "")]


def show(mailerlite: FakeMailerLite, out: TextIO) -> None:
    """A short view of what MailerLite now holds, and what to do next."""
    groups = {gid: g["name"] for gid, g in mailerlite.groups.items()}
    subs = list(mailerlite.subscribers.values())
    special = [s for s in subs if s["status"] != "active"][:3]
    picked = [s for s in subs if s["status"] == "active"][:SHOWN - len(special)] + special
    rows = [["email", "status", "groups", "fields"]] + [_row(s, groups) for s in picked]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    print(f"\nMailerLite (sandbox) now holds {len(subs)} subscribers in {len(groups)} groups. A few of them:",
          file=out)
    for row in rows:
        print("  " + "  ".join(c.ljust(w) for c, w in zip(row[:3], widths)) + "  " + row[3], file=out)
    kept = len(UNSUBSCRIBED_IN_MAILERLITE) + len(BOUNCED_IN_MAILERLITE)
    print(f"\nThe {kept} subscribers who had unsubscribed or bounced in MailerLite kept their status. "
          f"Details: python main.py --sandbox --history / --rejected", file=out)
    print("Next: copy .env.example to .env, fill in your HubSpot and MailerLite tokens, then run "
          "python main.py --check", file=out)
