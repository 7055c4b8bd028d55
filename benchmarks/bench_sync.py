"""Benchmark: how close the sync gets to MailerLite's rate-limit ceiling, against naive scripts,
plus incremental costs, raw throughput with limits off, and memory.

    python benchmarks/bench_sync.py            # default sizes, a couple of minutes
    python benchmarks/bench_sync.py --large    # adds 100,000-contact reruns and a 1,000,000-contact memory run
    python benchmarks/bench_sync.py --smoke    # tiny sizes, for CI: proves it runs, measures nothing

Everything runs against the project's fake HubSpot and MailerLite on 127.0.0.1 with the
documented limits, time-scaled so a MailerLite "minute" lasts --minute seconds. Figures are
printed, never asserted: these machines are noisy.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import platform
import pstats
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

def bench_throughput(n: int, profile: bool) -> Tuple[float, str]:
    with fakes(60.0, limits=False) as (hs, ml), tempfile.TemporaryDirectory() as tmp:
        seed(hs, n)
        env = sync_env(hs, ml, Path(tmp))
        started = time.monotonic()
        code, _ = run_process(env)
        elapsed = time.monotonic() - started
        if code != 0:
            raise SystemExit(f"sync process failed with {code}")
        rate = n / elapsed
        report = ""
        if profile:
            profiler = cProfile.Profile()
            profiler.enable()
            run_engine(hs, ml, Path(tmp) / "profile.db", full=True, force=True)
            profiler.disable()
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(12)
            report = out.getvalue()
        return rate, report


def print_throughput(n: int, rate: float, report: str) -> None:
    print(f"\n3. Limits off, end to end on loopback (sync in its own process): {n} contacts at {rate:,.0f} contacts/s")
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


def run_process(env: Dict[str, str]) -> Tuple[int, int]:
    """Run `python main.py` and return (exit code, peak RSS in KiB).

    The peak is the process's own VmHWM, read until it exits: wait4's ru_maxrss would also
    count the pages of this (large) benchmark process that the child shared before its exec.
    """
    proc = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "--quiet"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _high_water_kib(proc.pid) or 0)
        time.sleep(0.02)
    return proc.returncode, peak


def bench_memory(sizes: List[int]) -> List[Tuple[int, float, float, float]]:
    rows = []
    for n in sizes:
        with fakes(60.0, limits=False) as (hs, ml), tempfile.TemporaryDirectory() as tmp:
            seed(hs, n)
            started = time.monotonic()
            code, rss_kib = run_process(sync_env(hs, ml, Path(tmp)))
            if code != 0:
                raise SystemExit(f"sync process failed with {code}")
            db = Path(tmp) / "state.db"
            size = sum(p.stat().st_size for p in Path(tmp).glob("state.db*"))
            rows.append((n, rss_kib / 1024, size / n if db.exists() else 0.0, time.monotonic() - started))
    return rows


def print_memory(rows) -> None:
    print("\n4. Memory of a full pass (peak RSS of the sync process) and state size")
    print(f"   {'contacts':>10}{'peak RSS MB':>13}{'state bytes/contact':>21}{'seconds':>9}")
    for n, rss, per_contact, seconds in rows:
        print(f"   {n:>10}{rss:>13.1f}{per_contact:>21.0f}{seconds:>9.1f}")


# -- main ------------------------------------------------------------------------------------------------------

def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=5000, help="contacts for the rate-limited full sync")
    parser.add_argument("--baseline-contacts", type=int, default=1000,
                        help="contacts for each baseline (they are slow; their rate is steady)")
    parser.add_argument("--minute", type=float, default=1.0, help="real seconds per MailerLite minute")
    parser.add_argument("--large", action="store_true", help="100,000-contact reruns, 1,000,000-contact memory")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: check that everything runs")
    parser.add_argument("--skip", default="", help="comma-separated sections to skip: ceiling,incremental,"
                                                  "throughput,memory")
    args = parser.parse_args(argv)
    skip = set(args.skip.split(","))
    if args.smoke:
        args.contacts, args.baseline_contacts, args.minute = 300, 60, 0.3
    print(f"Machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}")
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
        rate, report = bench_throughput(n, profile=not args.smoke)
        print_throughput(n, rate, report)
    if "memory" not in skip:
        mem_sizes = [1_000, 5_000] if args.smoke else ([100_000, 1_000_000] if args.large else [10_000, 100_000])
        print_memory(bench_memory(mem_sizes))
    if args.smoke:  # CI's one benchmark run: the consent sweep's script at its tiny size too
        from bench_consent_sweep import main as bench_consent_sweep
        bench_consent_sweep(["--smoke"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
