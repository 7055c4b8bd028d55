"""Benchmark: the HubSpot requests of a --full pass in a portal with many archived (deleted) contacts.

    python benchmarks/bench_archived_full.py           # 1,000 to 100,000 archived; 3 and 300 gone (about a minute)
    python benchmarks/bench_archived_full.py --smoke   # 1,000 archived, 3 gone: proves it runs

A portal holds LIVE synced contacts, plus N archived contacts the sync never had (deleted in the
last 90 days). K of the synced contacts are then deleted too (one in three opted out first), and
`python main.py --full --allow-mass-leave --json` runs in its own process against the fake APIs (limits off). Printed:
the run's HubSpot requests (summary hubspot_requests), and of them the archived listing's pages
(GET .../contacts?archived=true) and the archived batch reads by id (POST .../batch/read?archived=true),
counted from the fake's request log; and the gone contacts' opt-outs that reached MailerLite.
Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_engagement import run_sync  # noqa: E402  (main.py in its own process: summary, peak RSS, time)
from bench_sync import fakes, seed, sync_env  # noqa: E402  (the benchmarks share their fakes and settings)

from sync.sandbox.fakes.hubspot import FakeHubSpot  # noqa: E402

LIVE = 200
CONTACTS = "/crm/objects/2026-09/contacts"
BATCH_READ = CONTACTS + "/batch/read"


def archived_requests(hs: FakeHubSpot, since: int) -> Tuple[int, int]:
    """(archived listing pages, archived batch reads) the fake served from log entry `since` on."""
    log = hs.log[since:]
    archived = [r for r in log if r.query.get("archived") == ["true"]]
    return (sum(1 for r in archived if r.method == "GET" and r.path == CONTACTS),
            sum(1 for r in archived if r.method == "POST" and r.path == BATCH_READ))


def bench(n: int, k: int) -> Tuple[int, int, int, int, int, int]:
    with fakes(60.0, limits=False) as (hs, ml), tempfile.TemporaryDirectory() as tmp:
        env = sync_env(hs, ml, Path(tmp))
        seed(hs, LIVE + k)
        run_sync(env)  # the first run: everything synced, the daily archived check done
        seed(hs, n, start=LIVE + k)  # never synced, then deleted: the portal's archived contacts
        for cid in sorted(hs.contacts)[LIVE + k:]:
            hs.archive_contact(str(cid))
        gone = sorted(hs.contacts)[LIVE:LIVE + k]
        for i, cid in enumerate(gone):
            if i % 3 == 0:
                hs.update_contact(str(cid), {"hs_email_optout": "true"})
            hs.archive_contact(str(cid))
        before = len(hs.log)
        summary, _, _ = run_sync(env, "--full", "--allow-mass-leave")  # K may pass the guard
        listing, by_id = archived_requests(hs, before)
        unsubscribed = sum(1 for i in range(0, k, 3)
                           if ml.subscriber(f"person{LIVE + i}@example.com")["status"] == "unsubscribed")
        return n, k, int(str(summary["hubspot_requests"])), listing, by_id, unsubscribed


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="a tiny size: check that everything runs")
    args = parser.parse_args(argv)
    sizes = [(1_000, 3)] if args.smoke else [(1_000, 3), (10_000, 3), (10_000, 300), (100_000, 3)]
    print(f"Machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"--full with {LIVE} live synced contacts, N archived contacts in the portal, K synced contacts gone "
          f"(one in three opted out first).")
    print(f"   {'archived N':>10}{'gone K':>8}{'HS requests':>13}{'archived listing':>18}{'archived by id':>16}"
          f"{'opt-outs sent':>15}")
    started = time.monotonic()
    for n, k in sizes:
        n, k, total, listing, by_id, unsubscribed = bench(n, k)
        print(f"   {n:>10}{k:>8}{total:>13}{listing:>18}{by_id:>16}{unsubscribed:>9} of {len(range(0, k, 3))}")
    print(f"({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
