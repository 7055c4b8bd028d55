"""Reliability figures for the README: each fault, how many trials, how many ended exactly right.

    python benchmarks/reliability.py                 # 10 trials per fault, one 50-kill loop (~5 minutes)
    python benchmarks/reliability.py --trials 3 --kill-loops 0

A trial seeds 1,000 contacts (opt-outs, invalid addresses, a duplicate address, subscribers
already unsubscribed, bounced or junk), runs the real sync against the faulty fake APIs until a
run exits 0 (at most 15 runs), and compares every MailerLite subscriber with what HubSpot says
it should be: fields, status, groups, no duplicates, no reactivation attempt.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.reliability import FAULTS, kill_loop, trial  # noqa: E402


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=10, help="trials per fault")
    parser.add_argument("--kill-loops", type=int, default=1, help="loops of 50 SIGKILLs each")
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)  # the sync's own warnings about the faults are expected here
    print(f"{'fault':<48}{'trials':>7}{'exact':>7}{'runs needed (max)':>19}{'seconds':>9}")
    all_exact = True
    for fault in FAULTS:
        started = time.monotonic()
        results = [trial(fault, seed) for seed in range(args.trials)]
        exact = sum(r.exact for r in results)
        all_exact &= exact == len(results)
        print(f"{fault:<48}{len(results):>7}{exact:>7}{max(r.runs for r in results):>19}"
              f"{time.monotonic() - started:>9.1f}", flush=True)
        for r in results:
            if not r.exact:
                print(f"    not exact: exit codes {r.codes}; {r.problems[:3]}")
    for loop in range(args.kill_loops):
        started = time.monotonic()
        with tempfile.TemporaryDirectory() as tmp:
            result = kill_loop(kills=50, seed=2026 + loop, minute_seconds=15, folder=Path(tmp))
        all_exact &= result.exact
        print(f"{'SIGKILL at random moments, 50 times, then one run':<48}{1:>7}{int(result.exact):>7}"
              f"{'-':>19}{time.monotonic() - started:>9.1f}")
        print(f"    killed mid-run {result.killed} times; {result.upserts} upserts for 1,500 contacts"
              + (f"; {result.problems[:3]}" if result.problems else ""))
    return 0 if all_exact else 1


if __name__ == "__main__":
    sys.exit(main())
