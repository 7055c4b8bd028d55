"""`python main.py --sandbox`: the real sync against built-in fake HubSpot and MailerLite APIs
on 127.0.0.1, seeded with sample data. No account, no token, nothing leaves the machine.

The command line reaches this package only through the --sandbox flag, and this package never
imports the command line: it hands out settings pointing at the fakes, the command line runs the
sync with them exactly as for real, then this package tells what happened.

Both fake accounts and the sync's state are kept in one folder between runs (until --reset), so
a second run shows what every hourly run does: nothing changed, nothing sent. The folder is the
user's own (0700) and this checkout's: its name carries the user id and a hash of the checkout's
path, so two users or two checkouts on one machine never share (or read) each other's sandbox.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import tempfile
import textwrap
from pathlib import Path
from types import TracebackType
from typing import Any, Dict, List, Optional, TextIO, Type

from ..columns import wrap
from ..config import PROJECT_DIR, Settings
from ..engine import Summary
from ..errors import ConfigError
from ..hubspot_schema import (
    CLICK_RATE_PROPERTY,
    CLICKS_PROPERTY,
    OPEN_RATE_PROPERTY,
    OPENS_PROPERTY,
    SENT_PROPERTY,
)
from ..progress import cut, terminal_columns
from ..tunables import DEFAULTS
from . import snapshot
from .fakes.hubspot import SCHEMA_WRITE_SCOPE, WRITE_SCOPE, FakeHubSpot
from .fakes.mailerlite import FakeMailerLite
from .sample import (
    BOUNCED_IN_MAILERLITE,
    INVALID_ADDRESS,
    OPTED_OUT_EVERY,
    UNSUBSCRIBED_IN_MAILERLITE,
    WITHOUT_EMAIL,
    history,
    seed,
    touch,
)

HS_TOKEN = "sandbox-hubspot-token"
ML_TOKEN = "sandbox-mailerlite-token"
MINUTE_SECONDS = 1.5  # a MailerLite rate-limit "minute" lasts this long in the sandbox


def _sandbox_dir() -> Path:
    """Per user and per checkout, in the temporary folder (never the checkout: nothing to ignore there)."""
    user = str(os.getuid()) if hasattr(os, "getuid") else (os.environ.get("USERNAME") or "user")
    checkout = hashlib.sha256(str(PROJECT_DIR).encode("utf-8", "surrogateescape")).hexdigest()[:10]
    return Path(tempfile.gettempdir()) / f"hubspot-mailerlite-sync-sandbox-{user}-{checkout}"


SANDBOX_DIR = _sandbox_dir()
EXAMPLE_MAPPING = PROJECT_DIR / "mapping.example.toml"
COMMAND = "python main.py --sandbox"
SHOWN = 6
FIELD_LINES = 2  # lines of fields shown per subscriber


def sandbox_state(folder: Path = SANDBOX_DIR) -> Path:
    """The sandbox's own state file, in the system's temporary folder: never the real one. `folder`
    is the sandbox's folder (SANDBOX_DIR; the tests pass their own)."""
    return folder / "sync_state.db"


def _fakes_file(folder: Path) -> Path:
    return folder / "fakes.json"


def reset(folder: Path = SANDBOX_DIR) -> None:
    """Forget the sandbox: the next run starts from the sample data again."""
    if folder.exists():
        _check_private(folder)  # never remove what someone else put at this name
        shutil.rmtree(folder)


def _make_private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True)
    path.chmod(0o700)  # whatever the umask


def _check_private(path: Path) -> None:
    """The sandbox folder must be this user's and closed to others (its name is guessable in /tmp)."""
    if os.name != "posix":
        return
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise ConfigError(f"the sandbox folder {path} is not a folder of yours; remove it (or set TMPDIR to a "
                          f"folder of your own) and run again")
    if st.st_mode & 0o077:
        path.chmod(0o700)


# The example's commented company and deal lines, which the sandbox's sample mapping turns on.
# (Its fields; the deal-stage group line stays off, so --check's groups line keeps within 80 columns.)
_ASSOCIATED_LINE = re.compile(r'^# ("(?:company|deal|deals)\.[a-z0-9_]+" = (?!"Deal: ).*)$', re.MULTILINE)


def _mapping_name(mapping: Optional[Path]) -> str:
    if mapping is None:
        return "the built-in default"
    if mapping.name == SAMPLE_MAPPING:  # default_mapping's copy: named by what it is, not its long path
        return f"{EXAMPLE_MAPPING.name}, with its company and deal lines on"
    return str(mapping)


SAMPLE_MAPPING = "sample-mapping.toml"


def default_mapping(folder: Path = SANDBOX_DIR) -> Optional[Path]:
    """mapping.example.toml with its company and deal lines on (the sandbox has companies and deals),
    written beside the sandbox's state."""
    if not EXAMPLE_MAPPING.exists():
        return None
    if not folder.exists():
        return EXAMPLE_MAPPING
    sample = folder / SAMPLE_MAPPING
    sample.write_text(_ASSOCIATED_LINE.sub(r"\1", EXAMPLE_MAPPING.read_text(encoding="utf-8")), encoding="utf-8")
    return sample


class Sandbox:
    """The two fakes, running for the length of a `with` block, restored from and saved to `folder`."""

    def __init__(self, touch_count: int = 0, folder: Path = SANDBOX_DIR) -> None:
        self.touch_count = touch_count
        self.folder = folder
        self.hubspot = FakeHubSpot(time_scale=MINUTE_SECONDS / 60)
        self.mailerlite = FakeMailerLite(time_scale=MINUTE_SECONDS / 60)
        self.fresh = False  # the sample data was seeded in this run
        self.touched: List[str] = []

    def __enter__(self) -> Sandbox:
        self.hubspot.start()
        self.mailerlite.start()
        self.hubspot.tokens[HS_TOKEN] = set(self.hubspot.tokens.pop("hs-test-token")) | {WRITE_SCOPE,
                                                                                         SCHEMA_WRITE_SCOPE}
        self.mailerlite.tokens = {ML_TOKEN}
        self.mailerlite.history_for_new = history  # subscribers arrive with campaign figures to show
        if self.folder.exists():
            _check_private(self.folder)
        kept = (sandbox_state(self.folder).exists()
                and snapshot.load(self.hubspot, self.mailerlite, _fakes_file(self.folder)))
        if not kept:  # first run, after --reset, or a snapshot from another version: start over
            reset(self.folder)
            _make_private_dir(self.folder)
            seed(self.hubspot, self.mailerlite)
            self.fresh = True
        if self.touch_count:
            self.touched = touch(self.hubspot, self.touch_count)
        return self

    def __exit__(self, kind: Optional[Type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        try:
            if self.folder.exists():
                snapshot.save(self.hubspot, self.mailerlite, _fakes_file(self.folder))
        finally:
            self.hubspot.stop()
            self.mailerlite.stop()

    @property
    def settings(self) -> Settings:
        return Settings(hubspot_token=HS_TOKEN, mailerlite_token=ML_TOKEN, hubspot_base_url=self.hubspot.url,
                        mailerlite_base_url=self.mailerlite.base_url, state_db=sandbox_state(self.folder),
                        http_timeout=30.0)

    def introduce(self, mapping: Optional[Path], out: TextIO, checking: bool = False) -> None:
        """What the sandbox is and holds; the mapping file too, unless --check, which shows it."""
        width = terminal_columns(out) - 1
        if self.fresh:
            contacts = len(self.hubspot.contacts)
            where = (f"fresh sample data: {contacts} made-up HubSpot contacts (names with accents, "
                     f"{len(WITHOUT_EMAIL)} without an email address, one with an invalid one, one in "
                     f"{OPTED_OUT_EVERY} opted out of email) and {len(self.mailerlite.subscribers)} MailerLite "
                     f"subscribers who unsubscribed or bounced earlier")
        else:
            where = f"kept from the last sandbox run in {self.folder} (start over: {COMMAND} --reset)"
        lines = [f"Sandbox: fake HubSpot and MailerLite on 127.0.0.1, {where}."]
        if not checking:
            lines.append(f"Mapping: {_mapping_name(mapping)}.")
        if self.touched:
            lines.append(f"Edited {len(self.touched)} sample contacts in the fake HubSpot (job title, phone): "
                         f"only they should go.")
        for line in lines:
            print(wrap(line, width), file=out)

    def tell(self, summary: Summary, out: TextIO, engagement: bool = False) -> None:
        """What MailerLite now holds, what the run showed, and what to try next."""
        counts = summary.counts
        width = terminal_columns(out) - 1

        def say(text: str) -> None:
            print(wrap(text, width), file=out)

        show(self.mailerlite, out, first=self.touched)
        if engagement:
            show_engagement(self.hubspot, out)
        say("")  # a blank line
        if counts["rejected"] and not summary.dry_run:
            say(f"The sample holds one invalid address on purpose ({INVALID_ADDRESS!r}): the sync rejects it "
                f"with the reason, keeps going, and exits 1 with a WARNING so that someone looks.")
            print(f"See it:\n  {COMMAND} --rejected", file=out)
        kept = len(UNSUBSCRIBED_IN_MAILERLITE) + len(BOUNCED_IN_MAILERLITE)
        if self.fresh and not summary.dry_run:
            say(f"The {kept} subscribers who had unsubscribed or bounced in MailerLite kept their status.")
        sent = counts["created"] + counts["updated"]
        if summary.dry_run:
            say("A dry run sends nothing and records nothing; with --verbose it lists each planned action. The "
                "real thing: " + COMMAND)
        elif self.touched:
            say(f"Read {counts['read']}, sent {sent}: only what changed in HubSpot goes.")
        elif sent == 0 and summary.exit_code in (0, 1):
            say("Nothing changed in HubSpot, nothing sent: that is what most hourly runs do.")
            if counts["read"]:
                say(f"Read {counts['read']} all the same: each run reads the last "
                    f"{DEFAULTS.search_lag_ms // 60_000} minutes of HubSpot changes again, as HubSpot's search "
                    f"can lag behind them{' (the engagement figures just written count)' if engagement else ''}; "
                    f"contacts whose data is unchanged cost no write.")
        print("Try next:", file=out)
        for flags, what in (("--touch 5", "edit 5 sample contacts; only they go"), ("--history", "the runs so far"),
                            ("--reset", "start over")):
            print(f"  {COMMAND} {flags:<10} {what}", file=out)
        if not engagement:
            say("Engagement (MailerLite's sent, opens and clicks onto HubSpot contacts) is off, as by default: "
                "to see it, uncomment engagement = true in a copy of mapping.example.toml and add --mapping "
                "COPY (docs/engagement.md).")
        say("For real: copy .env.example to .env and put in your two tokens (README, Setup), then:")
        print("  python main.py --check", file=out)

FIRST_SHOWN = ("name", "last_name")
DEFAULT_KEYS = ("name", "last_name", "company", "country", "city", "phone", "state", "z_i_p")


def _fields(sub: Dict[str, Any]) -> str:
    # Names first, then the custom fields a mapping adds (the interesting part), then the rest.
    values = {k: v for k, v in sub["fields"].items() if v not in (None, "")}
    # The sample mapping's company and deal fields after the contact's own.
    custom = sorted((k.startswith(("company_", "deal")), k) for k in values if k not in DEFAULT_KEYS)
    order = [k for k in FIRST_SHOWN if k in values] + [k for _, k in custom]
    order += [k for k in values if k not in order]
    return ", ".join(f"{k}={values[k]}" for k in order)


def show(mailerlite: FakeMailerLite, out: TextIO, first: Optional[List[str]] = None) -> None:
    """A short view of MailerLite, two lines per subscriber, cut to the terminal's width."""
    width = terminal_columns(out) - 1
    groups = {gid: g["name"] for gid, g in mailerlite.groups.items()}
    subs = list(mailerlite.subscribers.values())
    wanted = [s for s in (mailerlite.subscriber(e) for e in first or []) if s]
    if not wanted:
        special = [s for s in subs if s["status"] != "active"][:3]
        wanted = [s for s in subs if s["status"] == "active"][:SHOWN - len(special)] + special
    print(f"\nMailerLite (sandbox) now holds {len(subs)} subscribers in {len(groups)} groups. "
          f"{'Those just edited' if first else 'A few of them'}:", file=out)
    for sub in wanted[:SHOWN]:
        names = ", ".join(sorted(groups.get(g, g) for g in sub["groups"])) or "no group"
        print(cut(f"  {sub['email']}  {sub['status']}  [{names}]", width), file=out)
        lines = textwrap.wrap(_fields(sub), width - 6, break_on_hyphens=False) or [""]
        for number, line in enumerate(lines[:FIELD_LINES]):
            last = number == FIELD_LINES - 1 and len(lines) > FIELD_LINES
            print("      " + (cut(line + " ...", width - 6) if last else line), file=out)


ENGAGEMENT_SHOWN = 4
ENGAGEMENT_COLUMNS = ((SENT_PROPERTY, "sent", ""), (OPENS_PROPERTY, "opens", ""), (CLICKS_PROPERTY, "clicks", ""),
                      (OPEN_RATE_PROPERTY, "open rate", "%"), (CLICK_RATE_PROPERTY, "click rate", "%"))


def show_engagement(hubspot: FakeHubSpot, out: TextIO) -> None:
    """A few contacts' MailerLite figures, as the engagement properties hold them in HubSpot."""
    width = terminal_columns(out) - 1
    with hubspot.lock:
        having = [record["properties"] for _, record in sorted(hubspot.contacts.items())
                  if record["properties"].get(SENT_PROPERTY) not in (None, "")]
    if not having:
        return
    # The most opens first: who a HubSpot list of "engaged in MailerLite" contacts would hold.
    having.sort(key=lambda props: -float(props.get(OPENS_PROPERTY) or 0))
    heading = (f"HubSpot (sandbox): {len(having)} contacts carry their MailerLite engagement (property group "
               f"MailerLite). The most opens:")
    print("\n" + wrap(heading, width), file=out)
    for props in having[:ENGAGEMENT_SHOWN]:
        print(cut(f"  {props.get('email')}", width), file=out)
        figures = ", ".join(f"{label} {props.get(name) or 0}{unit}" for name, label, unit in ENGAGEMENT_COLUMNS)
        print(cut(f"      {figures}", width), file=out)
