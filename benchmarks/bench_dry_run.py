"""Benchmark: what a dry run's listing (--verbose, --output) costs, against the same dry run without.

    python benchmarks/bench_dry_run.py              # 20,000 contacts
    python benchmarks/bench_dry_run.py --contacts 2000

A dry full pass over N new contacts (every one a planned `create`) against the fake HubSpot and
MailerLite on 127.0.0.1, run as `python main.py` in a process of its own, three ways. Prints the
wall time and the process's peak memory; figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sync.sandbox.fakes.hubspot import FakeHubSpot  # noqa: E402
from sync.sandbox.fakes.mailerlite import FakeMailerLite  # noqa: E402

MAIN = Path(__file__).resolve().parents[1] / "main.py"
PEAK = ("import resource, runpy, sys; sys.argv = sys.argv[1:]; code = 0\n"
        "try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\n"
        "except SystemExit as stop:\n    code = stop.code or 0\n"
        "print('peak_kb', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); sys.exit(code)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--contacts", type=int, default=20_000)
    args = parser.parse_args()
    hubspot, mailerlite = FakeHubSpot(time_scale=0.001).start(), FakeMailerLite(time_scale=0.001).start()
    base = int(time.time() * 1000) - 3_600_000
    for i in range(args.contacts):
        hubspot.add_contact({"email": f"person{i}@example.com", "firstname": f"First{i}", "lastname": f"Last{i}",
                             "company": f"Company {i % 7}", "city": "Ljubljana"}, modified_ms=base + i)
    with tempfile.TemporaryDirectory() as folder:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HUBSPOT_", "MAILERLITE_", "SYNC_"))}
        env.update(HUBSPOT_ACCESS_TOKEN="hs-test-token", MAILERLITE_API_KEY="ml-test-token",
                   HUBSPOT_BASE_URL=hubspot.url, MAILERLITE_BASE_URL=mailerlite.base_url,
                   SYNC_STATE_DB=str(Path(folder) / "state.db"), PYTHONPATH=str(MAIN.parent))
        print(f"dry full pass over {args.contacts:,} new contacts (python main.py --dry-run --full ...)")
        for label, extra in (("no listing", []), ("--output plan.csv", ["--output", str(Path(folder) / "plan.csv")]),
                             ("--verbose", ["--verbose"])):
            started = time.monotonic()
            done = subprocess.run([sys.executable, "-c", PEAK, str(MAIN), "--dry-run", "--full", *extra], env=env,
                                  cwd=folder, capture_output=True, text=True, timeout=1800)
            seconds = time.monotonic() - started
            if done.returncode != 0 or "peak_kb" not in done.stderr:
                sys.exit(done.stderr)
            peak = next(int(line.split()[1]) for line in done.stderr.splitlines() if line.startswith("peak_kb"))
            listed = sum(1 for line in done.stderr.splitlines() if "dry run: would" in line)
            if extra and extra[0] == "--output":
                listed = len(Path(extra[1]).read_text(encoding="utf-8").splitlines()) - 1
            print(f"  {label:<18} exit {done.returncode}  {seconds:6.1f} s  peak {peak / 1024:5.0f} MB  "
                  f"listed {listed:,}")
    hubspot.stop()
    mailerlite.stop()


if __name__ == "__main__":
    main()
