"""Fault trials: run the real sync against faulty fake APIs until it completes, then check that
MailerLite holds exactly what HubSpot says it should. Plain Python (no pytest) so that both the
test suite and `benchmarks/reliability.py` (the README's figures) use it.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from sync.engine import Engine, RunOptions
from sync.errors import EXIT_ABORTED, EXIT_OK, EXIT_PARTIAL
from sync.hubspot import HubSpotReader
from sync.mailerlite import MailerLiteClient
from sync.mapping import Mapping, Planned, map_contact
from sync.sandbox.fakes.hubspot import FakeHubSpot
from sync.sandbox.fakes.mailerlite import INACTIVE, FakeMailerLite
from sync.state import State
from sync.tunables import Tunables

HS_TOKEN, ML_TOKEN = "hs-test-token", "ml-test-token"
GROUP = "Synced"
MAX_RUNS = 15
TIMEOUT = (0.5, 0.5)  # shorter than the "slow" fault's answer, so slowness means a client timeout


# Client-side waits not told by the server, shrunk as the test suite does; passed to each run.
# The runs follow each other in seconds, not hours: a consent action's back-off (an hour, doubling)
# is shrunk to "the next run" alike, or one unlucky action would outlast the trial's runs.
FAST = Tunables(backoff_s=0.01, max_backoff_s=0.1, default_rate_wait_s=0.05, search_interval_s=0.0,
                import_wait_first_s=0.1, import_wait_max_s=0.6, consent_retry_first_ms=0, consent_retry_max_ms=0)


def seed_world(hs: FakeHubSpot, ml: FakeMailerLite, n: int, rng: random.Random) -> None:
    """Contacts with opt-outs, bad addresses, a duplicate, and subscribers already inactive."""
    base = int(time.time() * 1000) - 3_600_000
    for i in range(n):
        props = {"email": f"p{i}@example.com", "firstname": f"F{i}", "lastname": rng.choice(["A", "B", ""]),
                 "city": rng.choice(["Bled", "Kranj", "", "Piran"]),
                 "hs_email_optout": "true" if rng.random() < 0.05 else "false"}
        if rng.random() < 0.02:
            props["email"] = f"broken{i}@"  # rejected locally
        hs.add_contact(props, modified_ms=base + i)
    hs.add_contact({"email": "p1@example.com", "firstname": "Duplicate"}, modified_ms=base + n)
    for i in range(0, n, 37):
        ml.add_subscriber(f"p{i}@example.com", status=rng.choice(list(INACTIVE)))


MAPPING = Mapping.default(static_groups=(GROUP,))


def run_once(hs: FakeHubSpot, ml: FakeMailerLite, state_path: Path) -> Tuple[int, str]:
    reader = HubSpotReader(HS_TOKEN, hs.url, timeout=TIMEOUT, tunables=FAST)
    client = MailerLiteClient(ML_TOKEN, ml.base_url, timeout=TIMEOUT, tunables=FAST)
    state = State(state_path)
    try:
        summary = Engine(reader, client, state, MAPPING, RunOptions(), tunables=FAST).run()
    finally:
        state.close()
    return summary.exit_code, summary.message


def exact_problems(hs: FakeHubSpot, ml: FakeMailerLite, inactive_before: Dict[str, str],
                   mapping: Mapping = MAPPING) -> List[str]:
    """Every difference between MailerLite and what HubSpot says it should hold."""
    problems: List[str] = []
    expected: Dict[str, Planned] = {}
    for cid in sorted(hs.contacts):
        record = hs.contacts[cid]
        if record["archived"]:
            continue
        out = map_contact({"id": str(cid), "properties": record["properties"]}, mapping)
        if isinstance(out, Planned) and out.email not in expected:  # the first contact owns an address
            expected[out.email] = out
    group_ids = {g["name"]: gid for gid, g in ml.groups.items()}
    for email, planned in expected.items():
        sub = ml.subscriber(email)
        if sub is None:
            problems.append(f"{email} missing")
            continue
        for key in mapping.managed_fields:
            if sub["fields"].get(key) != planned.fields.get(key):
                problems.append(f"{email} field {key}: {sub['fields'].get(key)!r} != {planned.fields.get(key)!r}")
        want_status = inactive_before.get(email) or planned.status or "active"
        if sub["status"] != want_status:
            problems.append(f"{email} status {sub['status']} != {want_status}")
        wanted_groups = {group_ids.get(name) for name in mapping.static_groups}
        if not wanted_groups <= set(sub["groups"]) and sub["status"] not in INACTIVE:
            problems.append(f"{email} not in groups {mapping.static_groups}")
    extra = set(ml.by_email) - set(expected) - set(inactive_before)
    if extra:
        problems.append(f"{len(extra)} unexpected subscribers, e.g. {sorted(extra)[0]}")
    if len(ml.by_email) != len(ml.subscribers):
        problems.append("duplicate subscribers")
    if ml.reactivation_attempts:
        problems.append(f"{len(ml.reactivation_attempts)} reactivation attempts")
    for name in mapping.static_groups:
        if sum(1 for g in ml.groups.values() if g["name"] == name) != 1:
            problems.append(f"group {name} exists {sum(1 for g in ml.groups.values() if g['name'] == name)} times")
    return problems


# -- the faults -------------------------------------------------------------------------------------

def _rate(side: str, rate: float, kinds: tuple) -> Callable[[FakeHubSpot, FakeMailerLite], None]:
    def apply(hs: FakeHubSpot, ml: FakeMailerLite) -> None:
        for fake in ((hs,) if side == "hubspot" else (ml,) if side == "mailerlite" else (hs, ml)):
            fake.faults.rate, fake.faults.kinds, fake.faults.slow_seconds = rate, kinds, 0.8
    return apply


def _storm(kind: str) -> Callable[[FakeHubSpot, FakeMailerLite], None]:
    def apply(hs: FakeHubSpot, ml: FakeMailerLite) -> None:
        ml.faults.script.extend([kind] * 25)
        hs.faults.script.extend([kind] * 10)
    return apply


def _daily(hs: FakeHubSpot, ml: FakeMailerLite) -> None:
    hs.daily_limit = 2  # the first run stops after two HubSpot requests; "midnight" comes after it


def _reading(**switches: object) -> Callable[[FakeHubSpot, FakeMailerLite], None]:
    """The other reading of something mailerlite.md leaves unconfirmed, for the whole trial."""
    def apply(hs: FakeHubSpot, ml: FakeMailerLite) -> None:
        for name, value in switches.items():
            setattr(ml, name, value)
    return apply


FAULTS: Dict[str, Callable[[FakeHubSpot, FakeMailerLite], None]] = {
    "HubSpot 5xx at 5%": _rate("hubspot", 0.05, ("500", "502", "503")),
    "HubSpot 5xx at 20%": _rate("hubspot", 0.20, ("500", "502", "503")),
    "HubSpot 5xx at 50%": _rate("hubspot", 0.50, ("500", "502", "503")),
    "MailerLite 5xx at 5%": _rate("mailerlite", 0.05, ("500", "502", "503")),
    "MailerLite 5xx at 20%": _rate("mailerlite", 0.20, ("500", "502", "503")),
    "MailerLite 5xx at 50%": _rate("mailerlite", 0.50, ("500", "502", "503")),
    "dropped connections at 20% (both)": _rate("both", 0.20, ("drop",)),
    "answers slower than the timeout at 10% (both)": _rate("both", 0.10, ("slow",)),
    "HTML error page with status 200 at 10% (both)": _rate("both", 0.10, ("html",)),
    "truncated JSON with status 200 at 10% (both)": _rate("both", 0.10, ("truncated",)),
    "429 storm with Retry-After": _storm("429"),
    "429 storm without Retry-After": _storm("429-bare"),
    "HubSpot daily limit mid-run": _daily,
    "MailerLite batch items answered import-style (no subscriber)": _reading(batch_item_shape="import"),
    "MailerLite batch answered with counts only": _reading(batch_item_shape="summary"),
}


@dataclass
class Trial:
    fault: str
    runs: int
    codes: List[int] = field(default_factory=list)
    problems: List[str] = field(default_factory=list)
    messages: List[str] = field(default_factory=list)

    @property
    def exact(self) -> bool:
        codes_ok = all(c in (EXIT_OK, EXIT_PARTIAL, EXIT_ABORTED) for c in self.codes) and self.codes[-1] in (
            EXIT_OK, EXIT_PARTIAL)
        one_line = all("\n" not in m for m in self.messages)
        return not self.problems and codes_ok and one_line


def trial(fault: str, seed: int, contacts: int = 1000, folder: Optional[Path] = None,
          time_scale: float = 0.005) -> Trial:
    """One trial; `time_scale` is the fakes' (0.005: MailerLite's minute lasts 0.3 s, which a storm
    of 25 429s, each naming the window's end, waits 25 times)."""
    rng = random.Random(seed)
    hs = FakeHubSpot(time_scale=time_scale).start()
    ml = FakeMailerLite(time_scale=time_scale).start()
    try:
        seed_world(hs, ml, contacts, rng)
        inactive_before = {s["email"]: s["status"] for s in ml.subscribers.values()}
        hs.faults.seed = ml.faults.seed = seed
        hs.faults.__post_init__()
        ml.faults.__post_init__()
        FAULTS[fault](hs, ml)
        result = Trial(fault, 0)
        with tempfile.TemporaryDirectory() as tmp:
            state_path = Path(folder or tmp) / f"state-{seed}.db"
            while result.runs < MAX_RUNS:
                code, message = run_once(hs, ml, state_path)
                result.runs += 1
                result.codes.append(code)
                if message:
                    result.messages.append(message)
                if fault == "HubSpot daily limit mid-run":
                    hs.daily_limit = 10**9  # midnight
                if code == EXIT_OK:
                    break
        hs.faults.rate = ml.faults.rate = 0.0
        result.problems = exact_problems(hs, ml, inactive_before)
        return result
    finally:
        hs.stop()
        ml.stop()


# -- the kill loop ------------------------------------------------------------------------------------

MAIN = Path(__file__).resolve().parents[1] / "main.py"
KILL_CONTACTS = 1500
BATCH = 50


@dataclass
class KillLoop:
    kills: int
    killed: int
    upserts: int
    final_code: int
    problems: List[str]

    @property
    def exact(self) -> bool:
        return self.final_code == EXIT_OK and not self.problems


def _start(env: Dict[str, str], cwd: Path) -> subprocess.Popen:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("HUBSPOT_", "MAILERLITE_", "SYNC_"))}
    full_env.update(env)
    return subprocess.Popen([sys.executable, str(MAIN), "--quiet"], env=full_env, cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def kill_loop(kills: int, seed: int, minute_seconds: float, folder: Path) -> KillLoop:
    """SIGKILL `python main.py` at random moments, `kills` times, then let one run finish."""
    rng = random.Random(seed)
    hs = FakeHubSpot(time_scale=0.01).start()
    ml = FakeMailerLite(time_scale=minute_seconds / 60).start()  # slow enough that kills land mid-run
    try:
        base = int(time.time() * 1000) - 3_600_000
        for i in range(KILL_CONTACTS):
            hs.add_contact({"email": f"person{i}@example.com", "firstname": f"First{i}", "city": "Bled",
                            "hs_email_optout": "true" if i % 10 == 0 else "false"}, modified_ms=base + i)
        for i in range(0, KILL_CONTACTS, 97):
            ml.add_subscriber(f"person{i}@example.com", status="unsubscribed")
        inactive_before = {s["email"]: s["status"] for s in ml.subscribers.values()}
        env = {"HUBSPOT_ACCESS_TOKEN": HS_TOKEN, "MAILERLITE_API_KEY": ML_TOKEN, "HUBSPOT_BASE_URL": hs.url,
               "MAILERLITE_BASE_URL": ml.base_url, "SYNC_STATE_DB": str(folder / "state.db")}
        killed = 0
        for _ in range(kills):
            proc = _start(env, folder)
            time.sleep(rng.uniform(0.3, 2.5))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                killed += 1
            proc.communicate(timeout=60)
            # Between kills, HubSpot keeps changing.
            hs.update_contact(str(1001 + rng.randrange(KILL_CONTACTS)), {"city": f"Moved{rng.randrange(1000)}"})
        final = _start(env, folder)
        _, err = final.communicate(timeout=600)
        problems = exact_problems(hs, ml, inactive_before, Mapping.default())
        if b"Traceback" in err:
            problems.append("a traceback reached the user")
        # Bounded work: each kill can cost at most the request in flight, never a full re-send.
        if ml.upsert_count > KILL_CONTACTS + kills + killed * BATCH:
            problems.append(f"{ml.upsert_count} upserts for {KILL_CONTACTS} contacts after {killed} kills")
        return KillLoop(kills, killed, ml.upsert_count, final.returncode, problems)
    finally:
        hs.stop()
        ml.stop()
