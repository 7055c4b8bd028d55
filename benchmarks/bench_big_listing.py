"""Benchmark (issue 29): adopting big MailerLite accounts, and listings that loop or fail on one page.

    python benchmarks/bench_big_listing.py                       # 100,000 and 1,000,000 subscribers (~30 min)
    python benchmarks/bench_big_listing.py --sizes 100000        # one size
    python benchmarks/bench_big_listing.py --pass-sizes 100000   # which sizes also get the whole-run part (b)
    python benchmarks/bench_big_listing.py --smoke               # tiny sizes: proves it runs, measures nothing

Two parts, against the project's fakes on 127.0.0.1, listing pages of 100 (--page):

(a) The listing across runs, at MailerLite's limit: the run's clock is scaled to MailerLite's minute,
    counted as 120 requests (the most the account allows; the fake answers as fast as it can, so the
    figures do not depend on this machine's speed). Each run is given what the engine gives it: 60% of
    the default SYNC_MAX_RUNTIME (3000 s), through the same code (adoption_listing.Listing on a
    MailerLiteClient, each run a new Listing on the kept progress); runs are counted until the listing
    is settled (complete, or incomplete for a loop or a failing page). The pass that compares needs
    the rest of the run that settles it (HubSpot reads 1,000,000 contacts in about 17 minutes at 100
    requests per 10 s, within the 40% left).
(b) The whole run, `python main.py` in its own process, limits off (so the listing is read in one run):
    MailerLite requests, upserts, peak RSS and the state file's size per subscriber (the listing is
    kept in it while read, then emptied; SQLite keeps the pages for reuse, so the size is the peak).

Figures are printed, never asserted; wall times on a shared machine are noisy, request counts are not.
"""

from __future__ import annotations

import argparse
import logging
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_adopt import fill_matching  # noqa: E402
from benchmarks.bench_sync import ML_TOKEN, fakes, peak_until_exit, run_process, seed, sync_env  # noqa: E402
from sync.adoption_listing import Listing, temporary_store, time_for_listing  # noqa: E402
from sync.config import DEFAULT_MAX_RUNTIME  # noqa: E402
from sync.mailerlite import MailerLiteClient  # noqa: E402
from sync.sandbox.fakes.mailerlite import FakeMailerLite  # noqa: E402
from sync.state import State  # noqa: E402
from sync.tunables import DEFAULTS, Tunables  # noqa: E402

REQUESTS_PER_MINUTE = 120  # MailerLite's documented limit
FAULTS = ("matching account", "one page failing for ever", "a looping cursor")


def apply_fault(ml: FakeMailerLite, fault: str, n: int, page: int) -> None:
    if fault == FAULTS[1]:
        ml.failing_listing_page = (n // page) // 2  # in the middle: half the listing is behind it
    elif fault == FAULTS[2]:
        ml.listing_loops = True


def fill_subscribers(ml: FakeMailerLite, n: int) -> None:
    """n subscribers as the default mapping maps bench_sync's contacts (no HubSpot side: part (a))."""
    for i in range(n):
        ml.add_subscriber(f"person{i}@example.com", fields={"name": f"First{i}", "last_name": f"Last{i}"})


def listing_runs(n: int, page: int, fault: str) -> Tuple[int, int, str, float]:
    """(runs until settled, MailerLite requests, how it ended, wall seconds) for part (a)."""
    tunables = Tunables(backoff_s=0.001, max_backoff_s=0.01)  # retry waits are < 1% of a run: left out
    with fakes(60.0, limits=False) as (_, ml):
        ml.subscriber_list_max = page
        fill_subscribers(ml, n)
        apply_fault(ml, fault, n, page)
        client = MailerLiteClient(ML_TOKEN, ml.base_url, timeout=(5, 30), tunables=tunables)

        def clock() -> float:  # MailerLite's minute: 120 requests, the most the account allows
            return client.requests * 60.0 / REQUESTS_PER_MINUTE

        conn, transaction = temporary_store()
        started_all = time.monotonic()
        runs = 0
        while True:
            runs += 1
            listing = Listing(conn, transaction)  # a new run, on the kept progress
            started = clock()
            listing.begin(client, int(time.time() * 1000))
            listing.read(client, time_for_listing(started, started + DEFAULT_MAX_RUNTIME, DEFAULTS.listing_share,
                                                  clock))
            if listing.settled or runs >= 50:
                ended = listing.status + (f" ({listing.progress.reason})" if listing.progress and
                                          listing.progress.reason else "")
                conn.close()
                return runs, client.requests, ended, time.monotonic() - started_all


def full_pass_pending(state_db: Path) -> bool:
    with sqlite3.connect(str(state_db)) as db:
        return db.execute("SELECT 1 FROM meta WHERE key='full_pass_pending'").fetchone() is not None


def whole_run(n: int, page: int, fault: str) -> Tuple[int, int, int, float, float]:
    """(runs, MailerLite requests, upserts, peak RSS MB, state bytes per subscriber) for part (b): runs of
    `python main.py` until the first sync is done (no full pass pending: nothing waits any more)."""
    with fakes(60.0, limits=False) as (hs, ml), tempfile.TemporaryDirectory() as tmp:
        ml.subscriber_list_max = page
        seed(hs, n)
        fill_matching(hs, ml)
        apply_fault(ml, fault, n, page)
        runs, peak = 0, 0
        while runs == 0 or (full_pass_pending(Path(tmp) / "state.db") and runs < 5):
            runs += 1
            code, rss_kib = run_process(sync_env(hs, ml, Path(tmp)))
            if code != 0:
                raise SystemExit(f"the sync process failed with {code}")
            peak = max(peak, rss_kib)
        size = sum(p.stat().st_size for p in Path(tmp).glob("state.db*"))
        return runs, len(ml.log), ml.upsert_count, peak / 1024, size / n


def read_into_state(base_url: str, state_path: str) -> None:
    """(c)'s child: the whole listing read into a state file, as a run keeps it."""
    state = State(Path(state_path))
    listing = Listing(state.conn, state.transaction)
    client = MailerLiteClient(ML_TOKEN, base_url, timeout=(5, 60))
    listing.begin(client, int(time.time() * 1000))
    listing.read(client, lambda: True)
    state.close()


def listing_alone(n: int, page: int) -> Tuple[float, float]:
    """(peak RSS MB, state bytes per subscriber) of a process that only reads the listing into a state."""
    with fakes(60.0, limits=False) as (_, ml), tempfile.TemporaryDirectory() as tmp:
        ml.subscriber_list_max = page
        fill_subscribers(ml, n)
        proc = subprocess.Popen([sys.executable, __file__, "--child-listing", ml.base_url, f"{tmp}/state.db"])
        peak = peak_until_exit(proc)
        size = sum(p.stat().st_size for p in Path(tmp).glob("state.db*"))
        return peak / 1024, size / n


def main(argv: Optional[List[str]] = None) -> int:
    if argv is None and sys.argv[1:2] == ["--child-listing"]:
        read_into_state(sys.argv[2], sys.argv[3])
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000", help="comma-separated subscriber counts for (a)")
    parser.add_argument("--pass-sizes", default="100000,1000000", help="sizes also run whole, in (b)")
    parser.add_argument("--pass-faults", default="0,1,2", help="which listings (b) runs: 0 matching, 1 failing, 2 loop")
    parser.add_argument("--skip-a", action="store_true", help="no part (a)")
    parser.add_argument("--alone-sizes", default="", help="sizes for (c): the listing alone, in its own process")
    parser.add_argument("--page", type=int, default=100, help="the listing's largest page")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: check that everything runs")
    args = parser.parse_args(argv)
    logging.getLogger("sync").setLevel(logging.ERROR)  # the listing's own lines: the table says it
    sizes = [3000] if args.smoke else [int(s) for s in args.sizes.split(",") if s.strip()]
    pass_sizes = [3000] if args.smoke else [int(s) for s in args.pass_sizes.split(",") if s.strip()]
    print(f"(a) The listing across runs, a MailerLite minute counted as 120 requests, {args.page} a page, "
          f"each run reading for {DEFAULTS.listing_share:.0%} of SYNC_MAX_RUNTIME={DEFAULT_MAX_RUNTIME:.0f} s")
    print(f"   {'subscribers':>12}  {'listing':<27}{'runs':>5}{'ML requests':>13}  {'ended':<48}{'wall s':>8}")
    for n in [] if args.skip_a else sizes:
        for fault in FAULTS:
            runs, requests, ended, wall = listing_runs(n, args.page, fault)
            print(f"   {n:>12,}  {fault:<27}{runs:>5}{requests:>13,}  {ended[:48]:<48}{wall:>8.1f}", flush=True)
    print("\n(b) The whole first sync (python main.py runs until none is pending; limits off; HubSpot holding "
          "the same contacts)")
    print(f"   {'subscribers':>12}  {'listing':<27}{'runs':>5}{'ML requests':>13}{'upserts':>9}{'peak RSS MB':>13}"
          f"{'state bytes/sub':>17}")
    for n in pass_sizes:
        for fault in [FAULTS[int(i)] for i in args.pass_faults.split(",")]:
            runs, requests, upserts, rss, per_sub = whole_run(n, args.page, fault)
            print(f"   {n:>12,}  {fault:<27}{runs:>5}{requests:>13,}{upserts:>9,}{rss:>13.1f}{per_sub:>17.0f}",
                  flush=True)
    alone = [3000] if args.smoke else [int(s) for s in args.alone_sizes.split(",") if s.strip()]
    if alone:
        print("\n(c) Only the listing, read into a state file by a process of its own (limits off)")
        print(f"   {'subscribers':>12}{'peak RSS MB':>13}{'state bytes/sub':>17}")
    for n in alone:
        rss, per_sub = listing_alone(n, args.page)
        print(f"   {n:>12,}{rss:>13.1f}{per_sub:>17.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
