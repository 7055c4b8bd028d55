"""The world of the model-based consent test (tests/test_consent_model.py): the fakes, the runs, the truth.

`World` holds one fresh pair of fake servers' data (HubSpot and MailerLite, swapped in behind two
servers that stay up for the whole test, so an example costs no server start), a state file of its
own, and `Truth`: what people did in HubSpot and MailerLite, and when, as a small model. It never
reads the program's state file: every invariant is checked on the fakes' stored data against the
truth.

The invariants (issue 28), checked after every run:
  I1  an address HubSpot holds as opted out is not active in MailerLite after the first clean run
      in which it was due: any run, for an address a live in-scope contact holds (its contact is read);
      a sweep (`--full`, or the daily sweep due), for an address the sync wrote and let go of. A run
      with an injected fault defers it by the documented back-off (consent actions: the next run,
      then an hour doubling up to a day; a 403 naming the scope: the next sweep a day later).
  I2  the sync never makes active an address MailerLite held as unsubscribed, bounced or junk (only
      the person, through a MailerLite form, does).
  I3  nobody is unsubscribed or taken out of a group without an opt-out, on_leave, or a real
      departure (no live in-scope contact holds the address, or for a list's group, none in that list).
  I4  after a clean run every live in-scope contact with a valid address and mappable data that
      opted out of nothing is in MailerLite with its mapped fields and groups (an address MailerLite
      held as inactive and then deleted excepted: I2 says it must not be created again).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Set, Tuple

from werkzeug.serving import make_server

from sync import cli
from sync.errors import Interrupted
from sync.retrying import RetryPolicy
from sync.sandbox.fakes.base import FakeAPI, _QuietHandler
from sync.sandbox.fakes.hubspot import ALL, FakeHubSpot
from sync.sandbox.fakes.mailerlite import INACTIVE, FakeMailerLite
from tests.conftest import FAST, HS_TOKEN, ML_TOKEN, TIME_SCALE

ADDRESSES = ("ann@example.com", "bob@example.com")
STAGES = ("lead", "customer", "subscriber")  # [scope.where] takes the first two
IN_SCOPE_STAGES = ("lead", "customer")
SCOPE_LIST, WEBINAR_LIST = "100", "200"
ALL_GROUP, WEBINAR_GROUP = "From HubSpot", "Webinar"
BAD_NUMBER = "many"  # numemployees mapped to a number field: the contact's data is refused
HOUR_S = 3600.0
SWEEP_HOURS = 24.0
EXIT_TERMINATED = 143


def mapping_text(scoped: bool, on_leave: str) -> str:
    text = f'''on_leave = "{on_leave}"
create_missing_fields = true

[fields]
numemployees = {{ field = "employees", type = "number" }}

[groups]
all = ["{ALL_GROUP}"]

[groups.lists]
"{WEBINAR_LIST}" = "{WEBINAR_GROUP}"
'''
    if scoped:
        text += f'''
[scope]
lists = ["{SCOPE_LIST}"]

[scope.where]
lifecyclestage = {json.dumps(list(IN_SCOPE_STAGES))}
'''
    return text


class Swappable:
    """A fake API's server whose data can be swapped for a fresh fake's: reset in-process, no restart."""

    def __init__(self) -> None:
        self.fake: Optional[FakeAPI] = None
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True, request_handler=_QuietHandler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        threading.Thread(target=lambda: self._server.serve_forever(poll_interval=0.05), daemon=True).start()

    def _app(self, environ: Dict[str, Any], start_response: Callable) -> Any:
        assert self.fake is not None
        return self.fake.wsgi_app(environ, start_response)

    def serve(self, fake: FakeAPI) -> None:
        fake.url = self.url
        self.fake = fake

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class Servers:
    hubspot: Swappable
    mailerlite: Swappable

    def env(self, state_db: Path, mapping: Path) -> Dict[str, str]:
        return {"HUBSPOT_ACCESS_TOKEN": HS_TOKEN, "MAILERLITE_API_KEY": ML_TOKEN,
                "HUBSPOT_BASE_URL": self.hubspot.url, "MAILERLITE_BASE_URL": self.mailerlite.url + "/api",
                "SYNC_STATE_DB": str(state_db), "SYNC_HTTP_TIMEOUT": "2", "SYNC_MAPPING_FILE": str(mapping),
                "SYNC_CONSENT_SWEEP_HOURS": str(SWEEP_HOURS)}


@contextlib.contextmanager
def servers() -> Iterator[Servers]:
    both = Servers(Swappable(), Swappable())
    try:
        yield both
    finally:
        both.hubspot.stop()
        both.mailerlite.stop()


@contextlib.contextmanager
def sigterm_after(requests: int) -> Iterator[None]:
    """A kill mid-run: SIGTERM arrives before the run's `requests`-th HTTP call (every call of either
    client goes through RetryPolicy.call); cli turns SIGTERM into Interrupted the same way."""
    real = RetryPolicy.call
    count = {"n": 0}

    def call(self: RetryPolicy, func: Callable[[], Any], what: str, *args: Any, **kwargs: Any) -> Any:
        count["n"] += 1
        if count["n"] >= requests:
            raise Interrupted("stopped by SIGTERM; what was synced so far is kept", EXIT_TERMINATED)
        return real(self, func, what, *args, **kwargs)

    RetryPolicy.call = call  # type: ignore[method-assign]
    try:
        yield
    finally:
        RetryPolicy.call = real  # type: ignore[method-assign]


@contextlib.contextmanager
def environment(env: Dict[str, str]) -> Iterator[None]:
    """The run's environment: these settings and no other of the program's."""
    saved = dict(os.environ)
    for key in list(os.environ):
        if key.startswith(("HUBSPOT_", "MAILERLITE_", "SYNC_", "HEALTHCHECK_")):
            del os.environ[key]
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@dataclass
class Truth:
    """What people did, and when (`step` counts every action and run of the example)."""

    step: int = 0
    optout_step: Dict[str, int] = field(default_factory=dict)  # address -> its latest opt-out given in HubSpot
    form_step: Dict[str, int] = field(default_factory=dict)  # address -> its latest MailerLite form sign-up
    # Addresses MailerLite showed the sync as unsubscribed, bounced or junk since their last form sign-up: in a
    # listing (a clean first or --full run), in an upsert's answer, a refused reactivation, or its own unsubscribe.
    # (Inactive and deleted before any run showed it, an address is as new to the sync as to anyone.)
    inactive_seen: Set[str] = field(default_factory=set)
    # Inactive as far as the sync can know: MailerLite showed it so, and has not shown it active since (a
    # form sign-up the sync never saw, the subscriber deleted before a listing, leaves it so). An address
    # deleted in MailerLite while so is not created again (the rule), whatever the person did there.
    known_inactive: Set[str] = field(default_factory=set)
    last_emails: Dict[str, str] = field(default_factory=dict)  # contact id -> its address when the last run began
    synced: Set[str] = field(default_factory=set)  # seen in MailerLite while a live in-scope contact held them
    # Addresses a person deleted or changed in MailerLite since the last clean --full run (only a full pass
    # reads MailerLite's listing and repairs what was changed there)
    changed_in_mailerlite: Set[str] = field(default_factory=set)
    # Consent actions' back-off as documented, for I1's deferral: faulty runs since the last clean one...
    faulty_runs: int = 0
    last_fault_clock: float = 0.0
    scope_refused_clock: Optional[float] = None  # ...and a 403 naming the consent scope (the sweep waits a day)


@dataclass
class RunOutcome:
    kind: str
    code: int
    clean: bool
    summary: Optional[Dict[str, Any]]
    err: str


class World:
    """One example: fresh fakes behind the shared servers, a state file, the truth, the clock."""

    def __init__(self, both: Servers, capsys: Any, scoped: bool, on_leave: str) -> None:
        self.scoped, self.on_leave = scoped, on_leave
        self.hs = FakeHubSpot(time_scale=TIME_SCALE)
        self.ml = FakeMailerLite(time_scale=TIME_SCALE)
        self.ml.limits_enabled = False  # rate limits have their own tests; here they only cost time
        self.hs.lists = {SCOPE_LIST: [], WEBINAR_LIST: []}
        both.hubspot.serve(self.hs)
        both.mailerlite.serve(self.ml)
        self.folder = Path(tempfile.mkdtemp(prefix="consent-model-"))
        self.mapping = self.folder / "mapping.toml"
        self.mapping.write_text(mapping_text(scoped, on_leave))
        self.env_file = self.folder / "empty.env"
        self.env_file.write_text("")
        self.env_file.chmod(0o600)
        self.env = both.env(self.folder / "state" / "sync_state.db", self.mapping)
        self.capsys = capsys
        self.truth = Truth()
        self.clock_s = 0.0  # how far the program's clock is ahead of the real one
        self.runs: List[RunOutcome] = []
        self._log_from = 0
        self.faults: List[str] = []  # injected for the coming run
        self.kill_at: Optional[int] = None

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    # -- HubSpot's truth -----------------------------------------------------------------------
    def live(self) -> Dict[str, Dict[str, Any]]:
        return {str(cid): rec["properties"] for cid, rec in self.hs.contacts.items() if not rec["archived"]}

    def archived(self) -> List[str]:
        return [str(cid) for cid, rec in self.hs.contacts.items() if rec["archived"]]

    def in_scope(self, cid: str, props: Dict[str, Any]) -> bool:
        if not props.get("email"):
            return False
        if not self.scoped:
            return True
        return int(cid) in self.hs.lists[SCOPE_LIST] and props.get("lifecyclestage") in IN_SCOPE_STAGES

    def holders(self, address: str) -> List[Tuple[str, Dict[str, Any]]]:
        """Live in-scope contacts holding the address as their email."""
        return [(cid, p) for cid, p in self.live().items()
                if str(p.get("email") or "").lower() == address and self.in_scope(cid, p)]

    def opted_out(self, address: str) -> bool:
        return self.hs.address_consent.get(address, {}).get(ALL) == "UNSUBSCRIBED"

    # -- what people do -------------------------------------------------------------------------
    def act(self, change: Callable[[], Any]) -> Any:
        """One person's action."""
        self.truth.step += 1
        return change()

    def note_optout(self, address: Optional[str]) -> None:
        if address:
            self.truth.optout_step[address.lower()] = self.truth.step

    def note_form(self, address: str) -> None:
        self.truth.form_step[address] = self.truth.step
        self.truth.changed_in_mailerlite.add(address)
        self.truth.inactive_seen.discard(address)

    def observe_mailerlite(self, before: Dict[str, Tuple[str, Set[str]]], log_from: int, listed: bool) -> None:
        """What MailerLite showed the sync in the run just done (its requests in the fake's log)."""
        written = set()
        for entry in self.ml.log[log_from:]:
            bodies = [entry.body] if entry.path == "/api/subscribers" and entry.method == "POST" else []
            if entry.path == "/api/batch" and isinstance(entry.body, dict):
                bodies = [i.get("body") for i in entry.body.get("requests") or [] if isinstance(i, dict)]
            written |= {str(b.get("email", "")).strip().lower() for b in bodies if isinstance(b, dict)}
        refused = {a["email"] for a in self.ml.reactivation_attempts}
        for address, (status, _) in before.items():
            if status in INACTIVE and (listed or address in written or address in refused):
                self.truth.inactive_seen.add(address)
                self.truth.known_inactive.add(address)
            elif status == "active" and (listed or address in written):
                self.truth.known_inactive.discard(address)  # shown active: the person signed up again
        for sub in self.ml.subscribers.values():
            if sub["status"] in INACTIVE and before.get(sub["email"], ("",))[0] not in INACTIVE:
                self.truth.inactive_seen.add(sub["email"])  # the sync's own unsubscribe
                self.truth.known_inactive.add(sub["email"])

    # -- runs ------------------------------------------------------------------------------------
    def run(self, kind: str) -> RunOutcome:
        """One run of main.py --json (kind: hourly, full, sweep): the clock moves on an hour, a sweep's a day."""
        self.truth.step += 1
        self.clock_s += SWEEP_HOURS * HOUR_S + HOUR_S if kind == "sweep" else HOUR_S
        offset = self.clock_s
        tunables = dataclasses.replace(FAST, wall_clock=lambda: time.time() + offset)
        args = ["--json", "--env-file", str(self.env_file)] + (["--full"] if kind == "full" else [])
        self._log_from = len(self.ml.log)
        faults, self.faults = self.faults, []
        kill_at, self.kill_at = self.kill_at, None
        clean = not faults
        self.capsys.readouterr()
        with contextlib.ExitStack() as stack:
            stack.enter_context(environment(self.env))
            if kill_at is not None:
                stack.enter_context(sigterm_after(kill_at))
            code = cli.main(args, tunables)
        out, err = self.capsys.readouterr()
        self._clear_faults()
        lines = [line for line in out.splitlines() if line.strip()]
        try:
            summary = json.loads(lines[-1]) if lines else None
        except ValueError:
            summary = None
        outcome = RunOutcome(kind, code, clean, summary, err)
        self.runs.append(outcome)
        if not clean:
            self.truth.faulty_runs += 1
            self.truth.last_fault_clock = self.clock_s
            if "consent 403 naming the scope" in faults:
                self.truth.scope_refused_clock = self.clock_s
        return outcome

    def _clear_faults(self) -> None:
        """Faults are for one run: what it did not use is dropped."""
        self.hs.faults.script.clear()
        self.ml.faults.script.clear()
        self.hs.consent_refusals.clear()
        self.hs.short_membership_reads.clear()
        self.hs.membership_page_max = 250

    # -- the invariants ---------------------------------------------------------------------------
    def snapshot(self) -> Dict[str, Tuple[str, Set[str]]]:
        """MailerLite as stored: address -> (status, group names)."""
        names = {gid: g["name"] for gid, g in self.ml.groups.items()}
        return {s["email"]: (s["status"], {names.get(g, g) for g in s["groups"]}) for s in self.ml.subscribers.values()}

    def _backoff_over(self) -> bool:
        """The documented retry rule of a consent action that failed in the faulty runs since the last clean
        one: the next run, then an hour, doubling up to a day (a 403 naming the scope: the sweep a day on)."""
        truth = self.truth
        if truth.faulty_runs <= 1:
            wait_h = 0.0
        else:
            wait_h = min(SWEEP_HOURS, 2.0 ** (truth.faulty_runs - 2))
        over = self.clock_s >= truth.last_fault_clock + wait_h * HOUR_S
        if truth.scope_refused_clock is not None:
            over = over and self.clock_s >= truth.scope_refused_clock + SWEEP_HOURS * HOUR_S
        return over

    def check(self, outcome: RunOutcome, before: Dict[str, Tuple[str, Set[str]]],
              held_before: Dict[str, bool], due_before: Dict[str, bool]) -> List[str]:
        """Every invariant after one run; returns what broke (empty: all held)."""
        problems: List[str] = []
        after = self.snapshot()
        truth = self.truth
        # I2: an address MailerLite held inactive is not active now, unless the person signed up again.
        for address in sorted(truth.inactive_seen):
            status = after.get(address, ("", set()))[0]
            if status == "active":
                problems.append(f"I2: {address} was {'/'.join(INACTIVE)} in MailerLite and the sync made it active")
        # I3: nothing taken away without an opt-out, on_leave, or a real departure.
        for address, (status, groups) in before.items():
            now_status, now_groups = after.get(address, (status, groups))
            holders = self.holders(address)
            departed = not holders
            opted = self.opted_out(address) or any(
                str(rec["properties"].get("email") or "").lower() == address
                and rec["properties"].get("hs_email_optout") == "true" for rec in self.hs.contacts.values())
            if status == "active" and now_status == "unsubscribed" and not opted and not (
                    departed and self.on_leave == "unsubscribe") and not self._left_opted_out(address):
                problems.append(f"I3: {address} unsubscribed with no opt-out"
                                + ("" if departed else f", held by live in-scope contact(s) {[c for c, _ in holders]}"))
            for group in sorted(groups - now_groups):
                # (of duplicates one is synced: a list's group may go when any holder is out of the list)
                all_in_list = all(int(c) in self.hs.lists[WEBINAR_LIST] for c, _ in holders)
                justified = opted or (departed and self.on_leave != "leave") or (
                    group == WEBINAR_GROUP and not departed and not all_in_list)
                if not justified:
                    problems.append(f"I3: {address} taken out of group {group!r} with no opt-out or departure "
                                    f"(live in-scope holders {[c for c, _ in holders]}, on_leave {self.on_leave})")
        if outcome.clean and outcome.code not in (0, 1):
            problems.append(f"a clean run ended with exit {outcome.code}: {outcome.err.strip()[-300:]}")
        if outcome.clean:
            problems += self._i1(after, held_before, due_before)
            problems += self._i4(after)
        return problems

    def _left_opted_out(self, address: str) -> bool:
        """The documented rule (docs/consent.md): an opt-out made together with a new address, or a merge into an
        opted-out record, also unsubscribes the address being left. A contact that held the address at the last
        run now shows an opt-out, itself or the record it was merged into."""
        for cid, email in self.truth.last_emails.items():
            if email != address:
                continue
            records = [self.hs.contacts[int(cid)]["properties"]] + [
                rec["properties"] for rec in self.hs.contacts.values()
                if cid in str(rec["properties"].get("hs_merged_object_ids") or "").split(";")]
            if any(p.get("hs_email_optout") == "true" for p in records):
                return True
        return False

    def _i1(self, after: Dict[str, Tuple[str, Set[str]]], held_before: Dict[str, bool],
            due_before: Dict[str, bool]) -> List[str]:
        problems = []
        if not self._backoff_over():
            return problems
        sweep = self.runs[-1].kind in ("full", "sweep")
        for address, (status, _) in sorted(after.items()):
            if status != "active" or not self.opted_out(address):
                continue
            since = self.truth.optout_step.get(address, -1)
            if self.truth.form_step.get(address, -2) > since:
                continue  # the person signed up in MailerLite after opting out in HubSpot: theirs to say
            if held_before.get(address):
                problems.append(f"I1: {address} opted out in HubSpot (a live in-scope contact holds it) and still "
                                f"active in MailerLite after a clean {self.runs[-1].kind} run")
            elif sweep and address in self.truth.synced and due_before.get(address):
                problems.append(f"I1: {address} opted out in HubSpot, let go of by the sync, still active in "
                                f"MailerLite after a clean {self.runs[-1].kind} run (the sweep was due)")
        return problems

    def _i4(self, after: Dict[str, Tuple[str, Set[str]]]) -> List[str]:
        problems = []
        for address in ADDRESSES:
            holders = self.holders(address)
            if not holders or self.opted_out(address):
                continue
            if any(p.get("hs_email_optout") == "true" or p.get("numemployees") == BAD_NUMBER for _, p in holders):
                continue  # refused data, or an opt-out: I1 and I3 cover those
            if address not in after:
                if address in self.truth.inactive_seen or address in self.truth.known_inactive:
                    continue  # MailerLite held it inactive, then it was deleted there: I2 says not created again
                if address in self.truth.changed_in_mailerlite and self.runs[-1].kind != "full":
                    continue  # only a --full pass reads MailerLite's listing and finds what was deleted there
                problems.append(f"I4: {address} (contact(s) {[c for c, _ in holders]}) is not in MailerLite "
                                f"after a clean run")
                continue
            status, groups = after[address]
            # Of several contacts holding one address, one is synced (which one is the sync's to say), the
            # others reported as duplicates: only the groups every one of them would be in are required.
            want = {ALL_GROUP} | ({WEBINAR_GROUP} if all(int(c) in self.hs.lists[WEBINAR_LIST]
                                                            for c, _ in holders) else set())
            if status == "active" and not want <= groups:
                problems.append(f"I4: {address} is in groups {sorted(groups)}, wants {sorted(want)}")
            if len(holders) == 1 and status == "active" and (
                    address not in self.truth.changed_in_mailerlite or self.runs[-1].kind == "full"):
                props = holders[0][1]
                sub = self.ml.subscriber(address) or {}
                fields = sub.get("fields", {})
                for prop, key in (("firstname", "name"), ("lastname", "last_name")):
                    if (fields.get(key) or None) != (props.get(prop) or None):
                        problems.append(f"I4: {address} field {key} is {fields.get(key)!r}, HubSpot has "
                                        f"{props.get(prop)!r}")
        return problems

    def before_run(self) -> Tuple[Dict[str, Tuple[str, Set[str]]], Dict[str, bool], Dict[str, bool]]:
        """What the invariants compare with: MailerLite before the run, and which opted-out addresses
        were due: held by a live in-scope contact (read by any run), or let go of before it (the sweep)."""
        held = {a: bool(self.holders(a)) for a in ADDRESSES}
        due = {a: not held[a] for a in ADDRESSES}
        return self.snapshot(), held, due

    def after_run(self, before: Dict[str, Tuple[str, Set[str]]]) -> None:
        outcome = self.runs[-1]
        self.observe_mailerlite(before, self._log_from, listed=outcome.clean and (
            outcome.kind == "full" or len(self.runs) == 1))
        self.truth.last_emails = {cid: str(p.get("email") or "").lower() for cid, p in self.live().items()}
        subscribers = self.snapshot()
        for address in ADDRESSES:
            if address in subscribers and self.holders(address):
                self.truth.synced.add(address)
        if self.runs[-1].clean and self.runs[-1].kind == "full":
            self.truth.changed_in_mailerlite.clear()
        if self.runs[-1].clean and self._backoff_over():
            self.truth.faulty_runs = 0
            if self.runs[-1].kind in ("full", "sweep"):
                self.truth.scope_refused_clock = None
