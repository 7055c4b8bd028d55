"""Benchmark: the consent sweep at 10,000 and 1,000,000 tombstones.

    python benchmarks/bench_consent_sweep.py           # 10,000 and 1,000,000 tombstones (about a minute)
    python benchmarks/bench_consent_sweep.py --smoke   # 1,000: proves it runs, measures nothing

The state file is seeded directly with N addresses the sync let go of (a tombstone each; one in a
thousand of them opted out in the fake HubSpot since), and due times that leave only the sweep to do.
Then `python main.py --json` runs as cron would, against the fake APIs with their rate limits off:
its HubSpot requests (one per 100 tombstones, plus the run's one incremental search), MailerLite
requests (one unsubscribe per opted-out address), wall time and the process's peak RSS. The
tombstones are streamed from SQLite a hundred at a time, so memory stays flat. Printed, never
asserted: these machines are noisy.
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
from bench_sync import fakes, sync_env  # noqa: E402  (the benchmarks share their fakes and settings)

from sync.consent import ARCHIVED_KEY  # noqa: E402
from sync.consent.sweep import SWEEP_DUE_KEY  # noqa: E402
from sync.state import State  # noqa: E402

OPTED_OUT_EVERY = 1000
CONSENT_PATH = "/communication-preferences/"


def seed_state(path: Path, n: int) -> None:
    """N tombstones, and a state where only the sweep is due (bookmark set, archived check done)."""
    state = State(path)
    now_ms = int(time.time() * 1000)
    with state.transaction():
        state.conn.executemany("INSERT INTO tombstones(email, hubspot_id, since) VALUES (?,?,?)",
                               ((f"gone{i:07d}@example.com", 1000 + i, now_ms // 1000) for i in range(n)))
    state.advance_bookmark(now_ms - 3_600_000)
    state.set_json(ARCHIVED_KEY, now_ms)
    state.set_json(SWEEP_DUE_KEY, 0)
    state.close()


def bench(n: int) -> Tuple[int, int, int, int, int, float, float]:
    with fakes(60.0, limits=False) as (hs, ml), tempfile.TemporaryDirectory() as tmp:
        for i in range(0, n, OPTED_OUT_EVERY):
            hs.address_consent[f"gone{i:07d}@example.com"] = {"all": "UNSUBSCRIBED"}
        env = sync_env(hs, ml, Path(tmp))
        seed_state(Path(env["SYNC_STATE_DB"]), n)
        summary, peak_kib, seconds = run_sync(env)
        consent = sum(1 for r in hs.log if r.path.startswith(CONSENT_PATH))
        return (n, int(str(summary["consent_checked"])), consent, int(str(summary["hubspot_requests"])),
                int(str(summary["mailerlite_requests"])), peak_kib / 1024, seconds)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="a tiny size: check that everything runs")
    args = parser.parse_args(argv)
    sizes = [1_000] if args.smoke else [10_000, 1_000_000]
    print(f"Machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"Consent sweep: one in {OPTED_OUT_EVERY} tombstones opted out since; the run's HubSpot requests include")
    print("its one incremental search; MailerLite requests are the unsubscribes; peak RSS of the sync process.")
    print(f"   {'tombstones':>10}{'checked':>10}{'consent req':>12}{'run: HS req':>12}{'ML req':>8}"
          f"{'peak MB':>9}{'seconds':>9}")
    for n in sizes:
        n, checked, consent, run_hs, run_ml, rss, seconds = bench(n)
        print(f"   {n:>10}{checked:>10}{consent:>12}{run_hs:>12}{run_ml:>8}{rss:>9.1f}{seconds:>9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
