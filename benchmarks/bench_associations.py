"""Benchmark: what companies and deals in the mapping cost (issue 30), in requests, memory and time.

    python benchmarks/bench_associations.py            # 10,000 and 100,000 contacts (about 20 minutes)
    python benchmarks/bench_associations.py --smoke    # 500 and 2,000: proves it runs

Each contact has 2 companies (one with the Primary label; each company is shared by 10 contacts)
and 3 deals (one shared with the next contact): n/5 companies and 2n deals. For each size, as
`python main.py --json` in its own process against the fake HubSpot and MailerLite on 127.0.0.1
(limits off: requests are counted, not paced; HubSpot's search keeps its spacing):
- the first sync with company and deal fields mapped (and a deal-stage group);
- an unchanged hourly run, with them mapped and (the same state size, on its own) without:
  the difference is what the mapping costs an idle hour;
- an hourly run after 100 companies and 100 deals changed.
Peak memory is the process's own VmHWM. Figures are printed, never asserted; run times are
noisy on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_sync import fakes, peak_until_exit, sync_env  # noqa: E402  (one way to read peak memory, the fakes)

from sync.sandbox.fakes.hubspot import FakeHubSpot  # noqa: E402

MAPPING = '''
create_missing_fields = true
[fields]
"company.industry" = { field = "company_industry", transform = "label" }
"company.numberofemployees" = "company_size"
"deal.dealstage" = { field = "deal_stage", transform = "label" }
"deal.amount" = "deal_amount"
"deals.count" = "deals"
"deals.won_count" = "deals_won"
"deals.won_amount" = "deals_won_amount"
[groups.property]
"deal.dealstage" = "Deal: {label}"
'''
STAGES = ("appointmentscheduled", "contractsent", "closedwon", "closedlost")
HOUR_MS = 3_600_000


def seed(hs: FakeHubSpot, n: int) -> None:
    base = int(time.time() * 1000) - 2 * HOUR_MS
    industries = ("COMPUTER_SOFTWARE", "RETAIL", "BANKING")
    companies = [hs.add_company({"name": f"Company {c}", "industry": industries[c % 3],
                                 "numberofemployees": str(10 + c % 500)}) for c in range(max(1, n // 5))]
    deals = [hs.add_deal({"dealname": f"Deal {d}", "dealstage": STAGES[d % 4], "amount": str(100 + d % 900)},
                         created_ms=base + d) for d in range(2 * n)]
    for i in range(n):
        cid = hs.add_contact({"email": f"person{i}@example.com", "firstname": f"First{i}", "hs_email_optout": "false"},
                             modified_ms=base + i)
        hs.associate_company(cid, companies[(i // 10) % len(companies)], primary=True)
        hs.associate_company(cid, companies[(i * 7 + 3) % len(companies)])
        for d in (2 * i, 2 * i + 1, (2 * i + 2) % (2 * n)):
            hs.associate_deal(cid, deals[d])
    hs.backdate(HOUR_MS)  # older than the sync's search margin


def run_sync(env: Dict[str, str], *flags: str) -> Tuple[Dict[str, object], float, float]:
    """`python main.py --json` (and `flags`): (summary, peak RSS MB, seconds)."""
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "--json", "--quiet", *flags], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    peak = peak_until_exit(proc)
    out = proc.stdout.read() if proc.stdout else ""
    if proc.returncode not in (0, 1):
        raise SystemExit(f"sync process failed with {proc.returncode}: {out[-300:]}")
    return json.loads(out.strip().splitlines()[-1]), peak / 1024, time.monotonic() - started


Row = Tuple[str, int, int, int, int, int, int, float, float]


def _split(hs: FakeHubSpot, mark: int) -> Tuple[int, int]:
    """(association batch reads, company and deal batch reads) logged since `mark`."""
    with hs.lock:
        paths = [r.path for r in hs.log[mark:]]
    return (sum("/crm/associations/" in p for p in paths),
            sum(p.endswith(("/companies/batch/read", "/deals/batch/read")) for p in paths))


def _row(hs: FakeHubSpot, label: str, env: Dict[str, str]) -> Row:
    mark = len(hs.log)
    summary, rss, seconds = run_sync(env)
    associations, objects = _split(hs, mark)
    return (label, int(str(summary["read"])), int(str(summary["created"])) + int(str(summary["updated"])),
            int(str(summary["hubspot_requests"])), associations, objects, int(str(summary["mailerlite_requests"])),
            rss, seconds)


def bench(n: int) -> List[Row]:
    rows: List[Row] = []
    with fakes(60.0, limits=False) as (hs, ml), tempfile.TemporaryDirectory() as tmp:
        seed(hs, n)
        mapping = Path(tmp) / "mapping.toml"
        mapping.write_text(MAPPING)
        env = dict(sync_env(hs, ml, Path(tmp)), SYNC_MAPPING_FILE=str(mapping))
        rows.append(_row(hs, "first sync", env))
        rows.append(_row(hs, "unchanged hour", env))
        for c in range(100):
            hs.update_object("companies", str(50_001 + c), {"industry": "BANKING" if c % 2 else "RETAIL"})
        for d in range(100):
            oid = str(50_001 + max(1, n // 5) + d * (2 * n // 100))
            hs.update_object("deals", oid, {"dealstage": "closedwon"})
        rows.append(_row(hs, "100+100 changed", env))
    with fakes(60.0, limits=False) as (hs, ml), tempfile.TemporaryDirectory() as tmp:
        seed(hs, n)  # the same data, the default mapping: today's idle hour
        env = sync_env(hs, ml, Path(tmp))
        run_sync(env)
        rows.append(_row(hs, "unchanged, no mapping", env))
    return rows


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="small sizes: check that everything runs")
    parser.add_argument("--sizes", help="comma-separated contact counts (default 10000,100000)")
    args = parser.parse_args(argv)
    sizes = [500, 2_000] if args.smoke else [int(s) for s in (args.sizes or "10000,100000").split(",")]
    print(f"Machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print("Companies and deals mapped; 2 companies and 3 deals per contact (n/5 companies, 2n deals).")
    print("HubSpot req: the run's total, of which assoc. (associations batch reads) and objects (company")
    print("and deal batch reads).")
    print(f"   {'contacts':>9}  {'run':<22}{'read':>7}{'sent':>7}{'HubSpot req':>12}{'assoc.':>7}{'objects':>8}"
          f"{'ML req':>7}{'peak MB':>8}{'seconds':>8}")
    for n in sizes:
        for label, read, sent, hs_req, assoc, objects, ml_req, rss, seconds in bench(n):
            print(f"   {n:>9}  {label:<22}{read:>7}{sent:>7}{hs_req:>12}{assoc:>7}{objects:>8}{ml_req:>7}"
                  f"{rss:>8.1f}{seconds:>8.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
