"""Benchmark: what the engagement pass (SYNC_ENGAGEMENT) costs in requests and memory.

    python benchmarks/bench_engagement.py            # 10,000 and 100,000 subscribers, about 15 minutes
    python benchmarks/bench_engagement.py --smoke    # 1,000 and 5,000: proves it runs

For each size: a first pass (every contact's figures written), the next hourly run (no pass
due: its forward sync reads again, once, the contacts the first pass wrote, and sends nothing),
and a pass where 1% of the subscribers' figures changed, each as `python main.py --json` in its
own process against the fake HubSpot and MailerLite on 127.0.0.1 (limits off: requests are
counted, not paced; HubSpot's search keeps its 5 a second, most of the "next run" time).
Both readings of MailerLite's largest listing page are measured: 1000 accepted, or only 100
(the client learns it from the 422 and asks again). Peak memory is the process's own VmHWM.
Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_sync import HS_TOKEN, fakes, peak_until_exit, sync_env  # noqa: E402  (one way to read peak memory, the fakes, the settings)

from sync.engagement import DUE_KEY  # noqa: E402
from sync.sandbox.fakes.hubspot import SCHEMA_WRITE_SCOPE, WRITE_SCOPE, FakeHubSpot  # noqa: E402
from sync.sandbox.fakes.mailerlite import FakeMailerLite  # noqa: E402

UPDATE_PATH = "/crm/objects/2026-09/contacts/batch/update"


def seed(n: int, hs: FakeHubSpot) -> None:
    base = int(time.time() * 1000) - 3_600_000  # an hour ago: older than the search-lag margin
    for i in range(n):
        hs.add_contact({"email": f"person{i}@example.com", "firstname": f"First{i}", "hs_email_optout": "false"},
                       modified_ms=base + i)


def campaigns(ml: FakeMailerLite, n: int, every: int = 1, sent: int = 0) -> None:
    """Figures on every `every`-th subscriber, as campaigns would leave them."""
    for i in range(0, n, every):
        s = sent or i % 30
        ml.set_engagement(f"person{i}@example.com", sent=s, opens=s // 2, clicks=s // 5)


def run_sync(env: Dict[str, str], *flags: str) -> Tuple[Dict[str, object], int, float]:
    """`python main.py --json` (and `flags`): (summary, peak RSS KiB, seconds)."""
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "--json", "--quiet", *flags], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    peak = peak_until_exit(proc)
    out = proc.stdout.read() if proc.stdout else ""
    if proc.returncode != 0:
        raise SystemExit(f"sync process failed with {proc.returncode}")
    return json.loads(out.strip().splitlines()[-1]), peak, time.monotonic() - started


def bench(n: int, page_max: int) -> List[Tuple[str, int, int, int, int, int, int, float, float]]:
    rows = []
    with fakes(60.0, limits=False) as (hs, ml), tempfile.TemporaryDirectory() as tmp:
        hs.tokens[HS_TOKEN] |= {WRITE_SCOPE, SCHEMA_WRITE_SCOPE}
        if page_max < 1000:
            ml.subscriber_list_max, ml.limit_too_big = page_max, "422"
        env = sync_env(hs, ml, Path(tmp))
        state_path = Path(env["SYNC_STATE_DB"])
        seed(n, hs)
        run_sync(env)  # the forward sync creates the subscribers; engagement off
        campaigns(ml, n)
        env["SYNC_ENGAGEMENT"] = "true"
        # The run after a first pass is not due: its forward sync reads again the contacts the
        # pass wrote (their modification date moved) and sends nothing; then a pass where 1% changed.
        for label in ("first pass", "next run", "1% changed"):
            if label == "1% changed":
                campaigns(ml, n, every=100, sent=40)
                db = sqlite3.connect(state_path)
                db.execute("UPDATE meta SET value='0' WHERE key=?", (DUE_KEY,))  # the interval has passed
                db.commit()
                db.close()
            ml_mark = len(ml.requests_to("GET", "/api/subscribers"))
            update_mark = len(hs.requests_to("POST", UPDATE_PATH))
            summary, peak_kib, seconds = run_sync(env)
            pages = len(ml.requests_to("GET", "/api/subscribers")) - ml_mark
            updates = len(hs.requests_to("POST", UPDATE_PATH)) - update_mark
            total = int(str(summary["engagement_requests"]))
            rows.append((label, pages, total - pages, updates, int(str(summary["engagement_updated"])),
                         int(str(summary["hubspot_requests"])), int(str(summary["mailerlite_requests"])),
                         peak_kib / 1024, seconds))
    return rows


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="small sizes: check that everything runs")
    args = parser.parse_args(argv)
    sizes = [1_000, 5_000] if args.smoke else [10_000, 100_000]
    print(f"Machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print("Engagement pass: its requests (engagement_requests, split by the fakes' logs), the whole run's")
    print("requests (the forward sync reads again the contacts the previous pass wrote, and sends nothing),")
    print("peak RSS of the sync process.")
    print(f"   {'subscribers':>11}{'page max':>9}  {'pass':<11}{'ML req':>7}{'HubSpot req':>12}{'(updates)':>10}"
          f"{'written':>8}{'run: HS req':>12}{'ML req':>7}{'peak MB':>8}{'seconds':>8}")
    for n in sizes:
        for page_max in (1000, 100):
            for label, pages, hs_req, updates, written, run_hs, run_ml, rss, seconds in bench(n, page_max):
                print(f"   {n:>11}{page_max:>9}  {label:<11}{pages:>7}{hs_req:>12}{updates:>10}{written:>8}"
                      f"{run_hs:>12}{run_ml:>7}{rss:>8.1f}{seconds:>8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
