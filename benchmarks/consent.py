"""Consent figures for the README's Reliability table: a truncated listing and merges.

    python benchmarks/consent.py

Runs `main.py`'s code (cli.main, in-process) against the fake APIs with on_leave = "unsubscribe":
1. 300 synced contacts; a --full pass whose first listing page comes back without `paging`
   (the listing looks complete after 100); then a normal run.
2. A list of 1,100 synced members (mass_leave_percent as default, 10); a run whose membership
   listing stops after four pages of 250 (no `paging`), three times in a row; then a normal run.
3. 100 synced contacts; 10 merges (each keeps the primary's address, the secondary's leaves),
   in both HubSpot behaviours (new record id; survivor keeps its id); then a --full pass.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from werkzeug.wrappers import Request, Response  # noqa: E402

from sync import cli  # noqa: E402
from sync.sandbox.fakes.hubspot import FakeHubSpot  # noqa: E402
from sync.sandbox.fakes.mailerlite import FakeMailerLite  # noqa: E402
from sync.tunables import Tunables  # noqa: E402

Runner = Callable[..., Tuple[int, Dict[str, Any]]]
FAST = Tunables(backoff_s=0.02, max_backoff_s=0.2)  # client-side waits the server does not tell, shrunk


def world(n: int, tmp: str, scope: str = "") -> Tuple[FakeHubSpot, FakeMailerLite, List[str], Runner]:
    hs = FakeHubSpot(time_scale=0.01).start()
    ml = FakeMailerLite(time_scale=0.01).start()
    base = int(time.time() * 1000) - 3_600_000
    ids = [hs.add_contact({"email": f"p{i}@example.com", "firstname": f"F{i}"}, modified_ms=base + i)
           for i in range(n)]
    mapping = Path(tmp) / "mapping.toml"
    mapping.write_text('on_leave = "unsubscribe"\n[groups]\nall = ["Synced"]\n' + scope)
    env = Path(tmp) / "empty.env"
    env.write_text("")
    env.chmod(0o600)
    os.environ.update(HUBSPOT_ACCESS_TOKEN="hs-test-token", MAILERLITE_API_KEY="ml-test-token",
                      HUBSPOT_BASE_URL=hs.url, MAILERLITE_BASE_URL=ml.base_url, SYNC_STATE_DB=str(Path(tmp) / "s.db"))

    def run(*args: str) -> Tuple[int, Dict[str, Any]]:
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            code = cli.main(["--json", "--quiet", "--env-file", str(env), "--mapping", str(mapping), *args], FAST)
        return code, json.loads(out.getvalue().strip().splitlines()[-1])

    return hs, ml, ids, run


def show(label: str, code: int, summary: Dict[str, Any], ml: FakeMailerLite) -> None:
    unsubscribed = sum(1 for s in ml.subscribers.values() if s["status"] == "unsubscribed")
    print(f"{label}: exit {code}; read {summary.get('read')}, left {summary.get('left_scope')}, held back "
          f"{summary.get('mass_leave_held')}, rejected {summary.get('rejected')}, created {summary.get('created')}; "
          f"MailerLite: {len(ml.subscribers)} subscribers, {unsubscribed} unsubscribed")
    if summary.get("message"):
        print(f"    {summary['message']}")


def truncated_listing() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        hs, ml, _, run = world(300, tmp)
        show("300 contacts, first run", *run(), ml)
        done = {"yes": False}

        def no_paging_once(request: Request) -> Any:
            listing = (request.method == "GET" and "/objects/" in request.path and request.path.endswith("/contacts")
                       and request.args.get("archived") != "true")
            if done["yes"] or not listing:
                return None
            done["yes"] = True
            answer = hs._dispatch(request)
            body = json.loads(answer.get_data())
            body.pop("paging", None)
            return Response(json.dumps(body), status=200, content_type="application/json")

        hs.faults.only_paths = ("/crm/",)
        hs.faults.script.extend([no_paging_once] * 100)
        show("--full, first listing page without paging", *run("--full"), ml)
        hs.faults.script.clear()
        show("next run", *run(), ml)
        hs.stop()
        ml.stop()


def truncated_membership() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        hs, ml, ids, run = world(1100, tmp, '[scope]\nlists = ["55"]\n')
        hs.lists["55"] = [int(i) for i in ids]
        show("1,100 list members, first run", *run(), ml)
        hs.short_read_pages, hs.short_membership_reads["55"] = 4, 3  # 1,000 of 1,100 listed, three reads
        show("membership listing without paging after 4 pages", *run(), ml)
        show("next run", *run(), ml)
        hs.stop()
        ml.stop()


def merges(new_id: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        hs, ml, ids, run = world(100, tmp)
        run()
        before = {k: ml.subscriber(f"p{k}@example.com")["id"] for k in range(10)}
        for k in range(10):  # p50 merged into p0, p51 into p1, ...
            hs.merge_contacts(ids[k], ids[50 + k], new_id=new_id)
        label = "new record id" if new_id else "survivor keeps its id"
        show(f"10 merges ({label}), next run", *run(), ml)
        kept = sum(1 for k in range(10) if ml.subscriber(f"p{k}@example.com")["id"] == before[k]
                   and ml.subscriber(f"p{k}@example.com")["status"] == "active")
        print(f"    merged records keeping their subscriber, active: {kept}/10")
        show(f"10 merges ({label}), --full after", *run("--full"), ml)
        hs.stop()
        ml.stop()


def main() -> int:
    truncated_listing()
    truncated_membership()
    merges(new_id=True)
    merges(new_id=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
