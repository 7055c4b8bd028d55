"""Benchmark (issue 24): adopting an account that already matches, and --full with 1% drift,
beside today's full re-send (--full --force), at 10,000 and 100,000 contacts.

    python benchmarks/bench_adopt.py                  # 10,000 and 100,000 contacts (100k: ~10 minutes)
    python benchmarks/bench_adopt.py --sizes 10000    # just one size
    python benchmarks/bench_adopt.py --smoke          # tiny sizes: proves it runs, measures nothing

Against the project's fakes on 127.0.0.1 with MailerLite's documented limits (120 requests a
minute, 5 imports a minute), time-scaled so a MailerLite "minute" lasts --minute seconds; the
listing answers up to --page subscribers a page (1000, or 100 as third-party copies say). Figures
are printed, never asserted. "at real limits" converts the run's MailerLite reads and upserts into
minutes at MailerLite's ceiling (reads at 120 a minute, then upserts at 365 a minute).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_sync import fakes, run_engine, run_process, seed, sync_env  # noqa: E402
from sync.sandbox.fakes.hubspot import FakeHubSpot  # noqa: E402
from sync.sandbox.fakes.mailerlite import FakeMailerLite  # noqa: E402

UPSERTS_PER_MINUTE = 365  # MailerLite's ceiling for upserts (5 imports x 50 + 115 singles), bench_sync's figure
REQUESTS_PER_MINUTE = 120

Row = Tuple[str, int, int, int, float, float]  # scenario, contacts, ML requests, upserts, wall s, real minutes


def fill_matching(hs: FakeHubSpot, ml: FakeMailerLite) -> None:
    """MailerLite already holds every contact, as the default mapping maps it (an earlier integration)."""
    for contact in hs.contacts.values():
        p = contact["properties"]
        ml.add_subscriber(p["email"], fields={"name": p["firstname"], "last_name": p["lastname"],
                                              "company": p["company"], "city": p["city"], "z_i_p": p["zip"],
                                              "country": p["country"], "phone": p["phone"]})


def measure(name: str, n: int, hs: FakeHubSpot, ml: FakeMailerLite, state: Path, **options: bool) -> Row:
    before, mark = ml.upsert_count, len(ml.log)
    started = time.monotonic()
    engine = run_engine(hs, ml, state, **options)
    wall = time.monotonic() - started
    sent = ml.upsert_count - before
    requests = engine.mailerlite.requests
    reads = sum(1 for r in ml.log[mark:] if r.method == "GET")  # the listing, fields, groups
    real = reads / REQUESTS_PER_MINUTE + sent / UPSERTS_PER_MINUTE
    return name, n, requests, sent, wall, real


def bench(n: int, minute: float, page: int) -> List[Row]:
    rows: List[Row] = []
    with fakes(minute) as (hs, ml), tempfile.TemporaryDirectory() as tmp:
        ml.subscriber_list_max = page
        seed(hs, n)
        fill_matching(hs, ml)
        state = Path(tmp) / "state.db"
        rows.append(measure("adopt an account that already matches", n, hs, ml, state))
        drifted = list(ml.subscribers.values())[:: 100]  # 1%: edited in MailerLite's app
        for sub in drifted:
            sub["fields"]["city"] = "Edited in MailerLite"
        rows.append(measure("--full with 1% drift", n, hs, ml, state, full=True))
        assert all(s["fields"]["city"] == "Ljubljana" for s in drifted), "the drift was repaired"
        rows.append(measure("today: full re-send (--full --force)", n, hs, ml, state, full=True, force=True))
    return rows


def print_rows(rows: List[Row], minute: float, page: int) -> None:
    print(f"\nAdoption and drift repair (a MailerLite minute = {minute:g} s here; listing pages of up to {page})")
    print(f"   {'scenario':<40}{'contacts':>9}{'ML requests':>13}{'upserts':>9}{'wall s':>9}{'at real limits':>16}")
    for name, n, requests, sent, wall, real in rows:
        print(f"   {name:<40}{n:>9,}{requests:>13,}{sent:>9,}{wall:>9.1f}{real:>12.1f} min")


def bench_memory(n: int) -> float:
    """Peak RSS (MB) of `python main.py` adopting n matching contacts, limits off: the listing goes
    to a temporary table, so this should stay flat as n grows."""
    with fakes(60.0, limits=False) as (hs, ml), tempfile.TemporaryDirectory() as tmp:
        seed(hs, n)
        fill_matching(hs, ml)
        code, rss_kib = run_process(sync_env(hs, ml, Path(tmp)))
        if code != 0 or ml.upsert_count:
            raise SystemExit(f"the adopting run failed ({code}) or wrote ({ml.upsert_count} upserts)")
        return rss_kib / 1024


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated contact counts")
    parser.add_argument("--minute", type=float, default=0.6, help="real seconds per MailerLite minute")
    parser.add_argument("--page", type=int, default=1000, help="the listing's largest page (1000 or 100)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: check that everything runs")
    args = parser.parse_args(argv)
    sizes = [300] if args.smoke else [int(s) for s in args.sizes.split(",") if s.strip()]
    for n in sizes:
        print_rows(bench(n, 0.05 if args.smoke else args.minute, args.page), args.minute, args.page)
    print("\nPeak RSS of the sync process adopting an account that already matches (limits off)")
    for n in sizes:
        print(f"   {n:>10,} contacts: {bench_memory(n):.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
