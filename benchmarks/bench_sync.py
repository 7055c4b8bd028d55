"""Benchmark: how close the sync gets to MailerLite's rate-limit ceiling, against naive scripts,
plus incremental costs, raw throughput with limits off, and memory.

    python benchmarks/bench_sync.py            # default sizes, a couple of minutes
    python benchmarks/bench_sync.py --large    # adds 100,000-contact reruns and a 1,000,000-contact memory run
    python benchmarks/bench_sync.py --smoke    # tiny sizes, for CI: proves it runs, then the memory guard
    python benchmarks/bench_sync.py --guard    # only the memory guard: peak RSS growth per contact, 10k -> 50k

The memory guard is the one thing judged: a full pass and a dry full pass at 10,000 and 50,000
contacts, and the exit is 1 (one line) when peak RSS grows by more than 100 bytes per contact.

Everything runs against the project's fake HubSpot and MailerLite on 127.0.0.1 with the
documented limits, time-scaled so a MailerLite "minute" lasts --minute seconds. Time figures are
printed, never asserted: these machines are noisy.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import platform
import pstats
import resource
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sync.engine import Engine, RunOptions  # noqa: E402
from sync.hubspot import HubSpotReader  # noqa: E402
from sync.mailerlite import MailerLiteClient  # noqa: E402
from sync.mapping import Mapping  # noqa: E402
from sync.retrying import parse_retry_after  # noqa: E402
from sync.sandbox.fakes.hubspot import FakeHubSpot  # noqa: E402
from sync.sandbox.fakes.mailerlite import FakeMailerLite  # noqa: E402
from sync.state import State  # noqa: E402
from sync.tunables import Tunables  # noqa: E402

HS_TOKEN, ML_TOKEN = "hs-test-token", "ml-test-token"
PER_MINUTE, IMPORTS_PER_MINUTE, BATCH = 120, 5, 50


# -- set-up ------------------------------------------------------------------------------------------

def seed(hs: FakeHubSpot, n: int, start: int = 0) -> None:
    base = int(time.time() * 1000) - 3_600_000  # an hour ago: older than the search-lag margin
    for i in range(start, start + n):
        hs.add_contact({"email": f"person{i}@example.com", "firstname": f"First{i}", "lastname": f"Last{i}",
                        "company": f"Company {i % 97}", "city": "Ljubljana", "zip": str(1000 + i % 500),
                        "country": "Slovenia", "phone": f"+386 1 {i:07d}", "hs_email_optout": "false"},
                       modified_ms=base + i)


@contextmanager
def fakes(minute: float, per_item: bool = False, limits: bool = True) -> Iterator[Tuple[FakeHubSpot, FakeMailerLite]]:
    scale = minute / 60
    hs = FakeHubSpot(time_scale=scale).start()
    ml = FakeMailerLite(time_scale=scale, batch_counts_as_items=per_item).start()
    if not limits:
        ml.limits_enabled = False
        hs.general_limit.limit = 10**9
        hs.search_limit.limit = 10**9
    try:
        yield hs, ml
    finally:
        hs.stop()
        ml.stop()


# The fake's search limit is scaled; the client's spacing is not, so it is taken out.
BENCH = Tunables(search_interval_s=0.0)


def run_engine(hs: FakeHubSpot, ml: FakeMailerLite, state_path: Path, **options) -> Engine:
    reader = HubSpotReader(HS_TOKEN, hs.url, timeout=(5, 30), tunables=BENCH)
    client = MailerLiteClient(ML_TOKEN, ml.base_url, timeout=(5, 30), tunables=BENCH)
    state = State(state_path)
    engine = Engine(reader, client, state, Mapping.default(), RunOptions(**options), tunables=BENCH)
    summary = engine.run()
    state.close()
    if summary.exit_code not in (0, 1):
        raise SystemExit(f"sync failed: {summary.message}")
    return engine


def upserts(ml: FakeMailerLite) -> int:
    return ml.upsert_count


# -- baselines: what a first script would do -----------------------------------------------------------

class Paced:
    """One request at a time, honouring Retry-After: the fair version of a naive script."""

    def __init__(self, ml: FakeMailerLite) -> None:
        self.session = requests.Session()
        self.session.headers.update({"Authorization": f"Bearer {ML_TOKEN}", "Accept": "application/json"})
        self.base = ml.base_url
        self.requests = 0

    def __call__(self, method: str, path: str, body: Optional[dict] = None) -> requests.Response:
        while True:
            self.requests += 1
            resp = self.session.request(method, f"{self.base}/{path}", json=body, timeout=30)
            if resp.status_code != 429:
                return resp
            time.sleep(parse_retry_after(resp.headers.get("Retry-After")) or 1.0)


def naive_lookup_then_write(ml: FakeMailerLite, contacts: List[dict]) -> int:
    call = Paced(ml)
    for c in contacts:
        found = call("GET", f"subscribers/{c['email']}")
        body = {"email": c["email"], "fields": c["fields"]}
        if found.status_code == 404:
            call("POST", "subscribers", body)
        else:
            call("PUT", f"subscribers/{found.json()['data']['id']}", body)
    return call.requests


def plain_upserts(ml: FakeMailerLite, contacts: List[dict]) -> int:
    call = Paced(ml)
    for c in contacts:
        call("POST", "subscribers", {"email": c["email"], "fields": c["fields"]})
    return call.requests


def contacts_as_subscribers(hs: FakeHubSpot, limit: int) -> List[dict]:
    out = []
    for cid in list(hs.contacts)[:limit]:
        p = hs.contacts[cid]["properties"]
        out.append({"email": p["email"], "fields": {"name": p["firstname"], "last_name": p["lastname"],
                                                    "company": p["company"], "city": p["city"]}})
    return out


# -- 1. the ceiling ------------------------------------------------------------------------------------

@dataclass
class Rate:
    name: str
    contacts: int
    seconds: float  # from the first MailerLite request to the end of the last rate-limit window used
    requests: int
    minute: float

    @property
    def per_minute(self) -> float:
        return self.contacts / (self.seconds / self.minute)


def budget_seconds(ml: FakeMailerLite) -> float:
    """Time charged to a run: from its first MailerLite request to the end of the last window it
    opened. Wall time alone would flatter short runs: a window's whole budget is there at once."""
    first = ml.log[0].time
    return ml.global_limit._start + ml.real_seconds(ml.global_limit.window) - first


def ceiling(per_item: bool) -> Tuple[float, str]:
    if per_item:
        return PER_MINUTE, (f"a batch costs one request per item: {PER_MINUTE} requests/min carry at most "
                            f"{PER_MINUTE} upserts/min, whatever the mix")
    value = IMPORTS_PER_MINUTE * BATCH + (PER_MINUTE - IMPORTS_PER_MINUTE)
    return value, (f"a batch costs one request: {IMPORTS_PER_MINUTE} imports x {BATCH} + "
                   f"({PER_MINUTE} - {IMPORTS_PER_MINUTE}) single upserts = {value:.0f} upserts/min")


def bench_ceiling(n: int, baseline_n: int, minute: float, per_item: bool) -> List[Rate]:
    rates = []
    with fakes(minute, per_item) as (hs, ml), tempfile.TemporaryDirectory() as tmp:
        seed(hs, n)
        engine = run_engine(hs, ml, Path(tmp) / "state.db")
        rates.append(Rate("this program (full sync)", upserts(ml), budget_seconds(ml), engine.mailerlite.requests,
                          minute))
    sample = None
    for name, fn in (("naive: look up, then create/update", naive_lookup_then_write),
                     ("one plain upsert per contact", plain_upserts)):
        with fakes(minute, per_item) as (hs, ml):
            seed(hs, baseline_n)
            sample = contacts_as_subscribers(hs, baseline_n)
            count = fn(ml, sample)
            rates.append(Rate(name, len(sample), budget_seconds(ml), count, minute))
    return rates


def print_ceiling(results: Dict[bool, List[Rate]]) -> None:
    print("\n1. Full initial sync against MailerLite's limits (120 requests/min, 5 imports/min)")
    for per_item, rates in results.items():
        value, why = ceiling(per_item)
        print(f"\n   Reading: {'a batch counts as its items' if per_item else 'a batch counts as one request'}")
        print(f"   Ceiling: {why}")
        print(f"   {'approach':<38}{'contacts':>9}{'upserts/min':>13}{'requests/contact':>18}{'of ceiling':>12}"
              f"{'this / it':>11}")
        ours = rates[0].per_minute
        for r in rates:
            print(f"   {r.name:<38}{r.contacts:>9}{r.per_minute:>13.0f}{r.requests / r.contacts:>18.3f}"
                  f"{r.per_minute / value:>11.0%}{ours / r.per_minute:>10.1f}x")


# -- 2. incremental reruns ------------------------------------------------------------------------------

def bench_incremental(sizes: List[int], changed: int) -> List[Tuple[int, int, int, int, int, int]]:
    rows = []
    for n in sizes:
        with fakes(60.0, limits=False) as (hs, ml), tempfile.TemporaryDirectory() as tmp:
            seed(hs, n)
            state = Path(tmp) / "state.db"
            run_engine(hs, ml, state)
            hs_mark, ml_mark = len(hs.log), len(ml.log)
            run_engine(hs, ml, state)
            unchanged = (len(hs.log) - hs_mark, len(ml.log) - ml_mark)
            for cid in list(hs.contacts)[:changed]:
                hs.update_contact(str(cid), {"city": "Maribor"})
            hs_mark, ml_mark, up_mark = len(hs.log), len(ml.log), ml.upsert_count
            run_engine(hs, ml, state)
            rows.append((n, *unchanged, len(hs.log) - hs_mark, len(ml.log) - ml_mark, ml.upsert_count - up_mark))
    return rows


def print_incremental(rows, changed: int) -> None:
    print(f"\n2. Incremental reruns (nothing changed; then {changed} contacts changed)")
    print(f"   {'contacts':>9}{'unchanged: HubSpot req':>24}{'MailerLite req':>16}"
          f"{'changed: HubSpot req':>22}{'MailerLite req':>16}{'upserts':>9}")
    for n, hs_u, ml_u, hs_c, ml_c, up in rows:
        print(f"   {n:>9}{hs_u:>24}{ml_u:>16}{hs_c:>22}{ml_c:>16}{up:>9}")


# -- 3. throughput with limits off, and where the time goes --------------------------------------------------

def bench_throughput(n: int, profile: bool) -> Tuple[float, float, str]:
    with fakes(60.0, limits=False) as (hs, ml), tempfile.TemporaryDirectory() as tmp:
        seed(hs, n)
        run = measure_process(FULL, n, sync_env(hs, ml, Path(tmp)))
        rate = n / run.seconds
        cpu_rate = n / run.cpu_seconds
        report = ""
        if profile:
            profiler = cProfile.Profile()
            profiler.enable()
            run_engine(hs, ml, Path(tmp) / "profile.db", full=True, force=True)
            profiler.disable()
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(12)
            report = out.getvalue()
        return rate, cpu_rate, report


def print_throughput(n: int, rate: float, cpu_rate: float, report: str) -> None:
    print(f"\n3. Limits off, end to end on loopback (sync in its own process): {n} contacts at {rate:,.0f} contacts/s "
          f"({cpu_rate:,.0f} per CPU second of the sync process; load average {os.getloadavg()[0]:.1f})")
    if report:
        print("   Profile of an in-process full --force pass (the fake servers share this process), by own time:")
        lines = [line for line in report.splitlines() if line.strip()]
        start = next(i for i, line in enumerate(lines) if "ncalls" in line)
        for line in lines[start:start + 13]:
            print("   " + line[:150])


# -- 4. memory ------------------------------------------------------------------------------------------------

def sync_env(hs: FakeHubSpot, ml: FakeMailerLite, folder: Path) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HUBSPOT_", "MAILERLITE_", "SYNC_"))}
    env.update(HUBSPOT_ACCESS_TOKEN=HS_TOKEN, MAILERLITE_API_KEY=ML_TOKEN, HUBSPOT_BASE_URL=hs.url,
               MAILERLITE_BASE_URL=ml.base_url, SYNC_STATE_DB=str(folder / "state.db"))
    return env


def _high_water_kib(pid: int) -> Optional[int]:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def run_process(env: Dict[str, str], *args: str) -> Tuple[int, int]:
    """Run `python main.py` and return (exit code, peak RSS in KiB).

    The peak is the process's own VmHWM, read until it exits: wait4's ru_maxrss would also
    count the pages of this (large) benchmark process that the child shared before its exec.
    """
    proc = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "--quiet", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = peak_until_exit(proc)  # before the exit code: it is set when the process ends
    return proc.returncode, peak


def peak_until_exit(proc: subprocess.Popen) -> int:
    """The process's peak RSS in KiB (its VmHWM), read every 20 ms until it exits."""
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _high_water_kib(proc.pid) or 0)
        time.sleep(0.02)
    return peak


@dataclass
class Measured:
    """One `python main.py` run: its peak RSS, wall and CPU seconds (user + system of the child)."""

    scenario: str
    contacts: int
    peak_mb: float
    seconds: float
    cpu_seconds: float


def measure_process(scenario: str, n: int, env: Dict[str, str], *args: str) -> Measured:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    code, rss_kib = run_process(env, *args)
    seconds = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if code not in (0, 1):
        raise SystemExit(f"sync process failed with {code} ({scenario}, {n} contacts)")
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return Measured(scenario, n, rss_kib / 1024, seconds, cpu)


FULL, INCREMENTAL, DRY_RUN, ADOPTION = "full pass", "incremental", "--dry-run --full", "adoption"
SCENARIOS = (FULL, INCREMENTAL, DRY_RUN, ADOPTION)
INCREMENTAL_CHANGED = 10_000  # the fake's search filters every contact per request: a million changed would take hours


def bench_memory(sizes: List[int], scenarios: Tuple[str, ...] = SCENARIOS,
                 show: bool = True) -> Tuple[List[Measured], Dict[int, float]]:
    """Each size: a full pass into a new state; an incremental run after INCREMENTAL_CHANGED contacts
    changed; a dry full pass over that state (it reads MailerLite's listing and compares every
    contact, streaming what it read against the state); a first run into a new state adopting what
    MailerLite holds (a listing of n). Returns the runs and the state's bytes per contact; `show`
    prints each run as it ends (a million-contact set takes the best part of an hour)."""
    rows = _Rows(show)
    state_bytes: Dict[int, float] = {}
    for n in sizes:
        with fakes(60.0, limits=False) as (hs, ml), tempfile.TemporaryDirectory() as tmp:
            seed(hs, n)
            env = sync_env(hs, ml, Path(tmp))
            rows.append(measure_process(FULL, n, env))
            state_bytes[n] = sum(p.stat().st_size for p in Path(tmp).glob("state.db*")) / n
            if INCREMENTAL in scenarios:
                for cid in list(hs.contacts)[:: max(1, n // INCREMENTAL_CHANGED)][:INCREMENTAL_CHANGED]:
                    hs.update_contact(str(cid), {"city": "Maribor"})
                rows.append(measure_process(INCREMENTAL, n, env))
            if DRY_RUN in scenarios:
                rows.append(measure_process(DRY_RUN, n, env, "--dry-run", "--full"))
            if ADOPTION in scenarios:
                adopting = Path(tmp) / "adopting"
                adopting.mkdir()
                before = ml.upsert_count
                rows.append(measure_process(ADOPTION, n, sync_env(hs, ml, adopting)))
                if ml.upsert_count != before:
                    raise SystemExit(f"the adopting run wrote {ml.upsert_count - before} upserts")
    return list(rows), state_bytes


class _Rows(List[Measured]):
    def __init__(self, show: bool) -> None:
        super().__init__()
        self.show = show
        if show:
            print("\n4. Memory of each kind of run (peak RSS of the sync process, limits off), and the state's size")
            print(f"   incremental: {INCREMENTAL_CHANGED:,} contacts changed; adoption: a new state, MailerLite "
                  f"holding them all")
            print(f"   {'scenario':<18}{'contacts':>10}{'peak RSS MB':>13}{'seconds':>9}{'CPU s':>8}"
                  f"{'contacts/CPU s':>16}{'load':>6}")

    def append(self, r: Measured) -> None:
        super().append(r)
        if self.show:
            read = min(r.contacts, INCREMENTAL_CHANGED) if r.scenario == INCREMENTAL else r.contacts
            print(f"   {r.scenario:<18}{r.contacts:>10,}{r.peak_mb:>13.1f}{r.seconds:>9.1f}{r.cpu_seconds:>8.1f}"
                  f"{read / r.cpu_seconds:>16,.0f}{os.getloadavg()[0]:>6.1f}", flush=True)


def print_memory(state_bytes: Dict[int, float]) -> None:
    for n, per_contact in state_bytes.items():
        print(f"   state file after the full pass of {n:,}: {per_contact:.0f} bytes per contact")


def growth_per_contact(rows: List[Measured]) -> Dict[str, float]:
    """Bytes of peak RSS per contact between the smallest and the largest size, by scenario."""
    out: Dict[str, float] = {}
    for scenario in SCENARIOS:
        runs = sorted((r for r in rows if r.scenario == scenario), key=lambda r: r.contacts)
        if len(runs) >= 2 and runs[-1].contacts > runs[0].contacts:
            out[scenario] = (runs[-1].peak_mb - runs[0].peak_mb) * 1024 * 1024 / (runs[-1].contacts - runs[0].contacts)
    return out


GUARD_SIZES = [10_000, 50_000]
GUARD_SCENARIOS = (FULL, DRY_RUN)
GUARD_BYTES = 100  # per contact: a set or dict of every id or address costs 100-200


def memory_guard() -> int:
    """CI's regression guard: peak RSS growth per contact between two sizes, for a full pass and a dry
    full pass (the two that read every contact). Memory is steady enough on any machine to judge."""
    rows, _ = bench_memory(GUARD_SIZES, GUARD_SCENARIOS, show=False)
    growth = growth_per_contact(rows)
    print(f"\nMemory guard: peak RSS growth between {GUARD_SIZES[0]:,} and {GUARD_SIZES[1]:,} contacts")
    for r in rows:
        print(f"   {r.scenario:<18}{r.contacts:>10,}{r.peak_mb:>8.1f} MB{r.seconds:>8.1f} s")
    over = [f"{scenario} {per:.0f}" for scenario, per in growth.items() if per > GUARD_BYTES]
    print("   " + ", ".join(f"{scenario}: {per:.0f} bytes/contact" for scenario, per in growth.items()))
    if over:
        print(f"memory guard failed: peak RSS grows by more than {GUARD_BYTES} bytes per contact ({', '.join(over)}); "
              f"something keeps every contact in memory (python benchmarks/bench_sync.py --guard)")
        return 1
    return 0


# -- main ------------------------------------------------------------------------------------------------------

def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=5000, help="contacts for the rate-limited full sync")
    parser.add_argument("--baseline-contacts", type=int, default=1000,
                        help="contacts for each baseline (they are slow; their rate is steady)")
    parser.add_argument("--minute", type=float, default=1.0, help="real seconds per MailerLite minute")
    parser.add_argument("--large", action="store_true", help="100,000-contact reruns, 1,000,000-contact memory")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: check that everything runs, then the "
                                                             "memory guard (fails above 100 bytes per contact)")
    parser.add_argument("--memory-sizes", default="", help="comma-separated contact counts for section 4 (default "
                                                           "10,000 and 100,000; with --large 100,000 and 1,000,000)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS),
                        help=f"comma-separated runs of section 4 (default all: {', '.join(SCENARIOS)}); "
                             f"'full pass' alone times a first full pass at each size")
    parser.add_argument("--guard", action="store_true", help="only the memory guard (what --smoke ends with)")
    parser.add_argument("--skip", default="", help="comma-separated sections to skip: ceiling,incremental,"
                                                  "throughput,memory")
    args = parser.parse_args(argv)
    skip = set(args.skip.split(","))
    if args.guard:
        skip |= {"ceiling", "incremental", "throughput", "memory"}
    if args.smoke:
        args.contacts, args.baseline_contacts, args.minute = 300, 60, 0.3
    print(f"Machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.1f} (time figures are noisy on a shared machine; CPU seconds less so)")
    print(f"A MailerLite minute lasts {args.minute} s here; rates are scaled back to real minutes.")
    if "ceiling" not in skip:
        results = {per_item: bench_ceiling(args.contacts, args.baseline_contacts, args.minute, per_item)
                   for per_item in (False, True)}
        print_ceiling(results)
    sizes = [200, 1000] if args.smoke else [1_000, 10_000] + ([100_000] if args.large else [])
    changed = 20 if args.smoke else 100
    if "incremental" not in skip:
        print_incremental(bench_incremental(sizes, changed), changed)
    if "throughput" not in skip:
        n = 1000 if args.smoke else 20_000
        rate, cpu_rate, report = bench_throughput(n, profile=not args.smoke)
        print_throughput(n, rate, cpu_rate, report)
    if "memory" not in skip:
        mem_sizes = [1_000, 5_000] if args.smoke else ([100_000, 1_000_000] if args.large else [10_000, 100_000])
        if args.memory_sizes:
            mem_sizes = [int(size) for size in args.memory_sizes.split(",") if size.strip()]
        scenarios = tuple(name for name in SCENARIOS if name in {n.strip() for n in args.scenarios.split(",")})
        rows, state_bytes = bench_memory(mem_sizes, scenarios)
        print_memory(state_bytes)
        for scenario, per in growth_per_contact(rows).items():
            print(f"   {scenario}: peak RSS grows {per:.0f} bytes per contact")
    if args.smoke:  # CI's one benchmark run: the consent sweep's script at its tiny size too
        from bench_consent_sweep import main as bench_consent_sweep
        bench_consent_sweep(["--smoke"])
    if args.smoke or args.guard:
        return memory_guard()
    return 0


if __name__ == "__main__":
    sys.exit(main())
