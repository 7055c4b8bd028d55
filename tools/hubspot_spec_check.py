#!/usr/bin/env python3
"""Check every request the sync sends to HubSpot against HubSpot's published OpenAPI specs.

HubSpot publishes its API specs in the public repository HubSpot/HubSpot-public-api-spec-collection.
Their licence does not allow redistribution, so this project never ships them: clone the repository
yourself and point this script at it.

    git clone --depth 1 https://github.com/HubSpot/HubSpot-public-api-spec-collection /tmp/hubspot-specs
    npm install -g @stoplight/prism-cli
    python tools/hubspot_spec_check.py --specs /tmp/hubspot-specs

It starts the built-in fake HubSpot and MailerLite APIs, puts one Stoplight Prism validating proxy per
spec (Contacts, Properties, Lists, Communication Preferences, Associations, Companies, Deals, Pipelines)
in front of the fake HubSpot, routes the
sync's HubSpot traffic through them, and runs the sync as a user would (`python main.py ...`): a first
run, an unchanged run, an incremental run, `--full`, `--check`, write-back, departures (the gone contacts'
archived records read by id with `batch/read?archived=true`, one of them purged so HubSpot cannot answer
it, and their addresses read by address), the consent sweep, a list-scoped mapping and a member leaving
its list, and a mapping of companies and deals (--check, a first run, an hourly run after edits, the
daily association pass). Prism marks every request
(and answer) that breaks the spec; the script prints them and exits 1 when any REQUEST breaks the spec.
Answers that break it are the fake's drift from the spec and are listed apart (HubSpot's own answers
break it too: it sends null for empty properties where the spec says string).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import requests
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from sync.sandbox.fakes.hubspot import SCHEMA_WRITE_SCOPE, WRITE_SCOPE, FakeHubSpot  # noqa: E402
from sync.sandbox.fakes.mailerlite import FakeMailerLite  # noqa: E402

HS_TOKEN = "spec-check-hubspot-token"
ML_TOKEN = "spec-check-mailerlite-token"
SPECS = {"contacts.json": "objects", "properties.json": "properties", "lists.json": "lists",
         "subscriptions.json": "communication-preferences", "companies.json": "objects", "deals.json": "objects",
         "associations.json": "associations", "pipelines.json": "pipelines"}  # file -> API
# Specs of one object type under the shared /crm/objects/{v}/{objectType} paths: routed by that type.
OBJECT_TYPES = {"companies.json": "companies", "deals.json": "deals"}
FOLDERS = {"subscriptions.json": "/Communication Preferences/"}  # where a spec lives (CRM when absent)
# Path endings kept from a spec (every path when absent): the memberships listing, the list itself
# (its size) and the records' memberships batch read (departures need evidence).
KEEP = {"lists.json": ("/memberships", "/{listId}", "/memberships/batch/read")}
DEFAULT_VERSION = "2026-09"
PRISM_START_S = 300.0
LIST_ID = "7"
# Hop-by-hop headers a proxy must not pass on.
HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding", "host"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def api_prefix(name: str, version: str) -> str:
    """The path prefix a spec's API has: /crm/objects/2026-09/ for date versions, /crm/v3/objects/ for v3."""
    api = SPECS[name]
    if name in FOLDERS:  # not a CRM API: /communication-preferences/2026-09/ (v3 before that)
        return f"/{api}/{version}/"
    return f"/crm/{version}/{api}/" if version.startswith("v") else f"/crm/{api}/{version}/"


def prefix(name: str, version: str) -> str:
    """The requests a spec's proxy is sent: its API's, or one object type's (/crm/objects/2026-09/deals/)."""
    return api_prefix(name, version) + (f"{OBJECT_TYPES[name]}/" if name in OBJECT_TYPES else "")


def find_specs(root: Path, version: str) -> Dict[str, Path]:
    """spec name -> file for this version (beta rollouts ignored)."""
    found: Dict[str, Path] = {}
    for name in SPECS:
        wanted = api_prefix(name, version).rstrip("/")
        for path in sorted(root.rglob(name)):
            if path.parent.name != version or FOLDERS.get(name, "/CRM/") not in str(path):
                continue
            try:
                paths = json.loads(path.read_text(encoding="utf-8")).get("paths", {})
            except (OSError, ValueError):
                continue
            if any(p.startswith(wanted) for p in paths):
                found[name] = path
                break
    missing = sorted(set(SPECS) - set(found))
    if missing:
        sys.exit(f"no {version} spec for {', '.join(missing)} under {root}; clone "
                 f"HubSpot/HubSpot-public-api-spec-collection and pass its folder with --specs")
    return found


@dataclass
class Seen:
    method: str
    path: str
    via_spec: bool
    violations: List[Dict[str, object]] = field(default_factory=list)


_ONE = re.compile(r'\{"location":\[[^\]]*\],"severity":"[^"]*","code":"[^"]*","message":"(?:[^"\\]|\\.)*"\}')


def parse_violations(raw: str) -> List[Dict[str, object]]:
    """Prism's `sl-violations` header; a long list comes cut short ("Too many violations! [..."): keep
    every whole entry of it."""
    try:
        return list(json.loads(raw))
    except ValueError:
        return [json.loads(m.group(0)) for m in _ONE.finditer(raw)] or [{"location": [], "message": raw[:200]}]


class _Quiet(WSGIRequestHandler):
    def log_request(self, *args: object, **kwargs: object) -> None:
        pass


class Router:
    """Sends each HubSpot request to the Prism proxy whose spec covers its path, and records what Prism
    found wrong with it (the `sl-violations` header). Paths no spec covers go straight to the fake."""

    def __init__(self, fake_url: str, prisms: List[Tuple[str, str]]) -> None:
        self.fake_url = fake_url
        self.prisms = prisms  # (path prefix, prism url)
        self.seen: List[Seen] = []
        self.lock = threading.Lock()
        self.session = requests.Session()
        self.session.trust_env = False
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True, request_handler=_Quiet)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def app(self, environ: dict, start_response: object) -> object:
        request = Request(environ)
        # The longest prefix first: /crm/objects/2026-09/deals/ goes to the Deals spec, not the Contacts one.
        target = next((url for prefix, url in sorted(self.prisms, key=lambda p: -len(p[0]))
                       if request.path.startswith(prefix)), None)
        base = target or self.fake_url
        upstream = self.session.request(
            request.method, base + request.full_path.rstrip("?"), data=request.get_data(),
            headers={k: v for k, v in request.headers.items() if k.lower() not in HOP}, timeout=60)
        seen = Seen(request.method, request.path, target is not None)
        raw = upstream.headers.get("sl-violations")
        if raw:
            seen.violations = parse_violations(raw)
        with self.lock:
            self.seen.append(seen)
        headers = [(k, v) for k, v in upstream.headers.items() if k.lower() not in HOP | {"sl-violations"}]
        return Response(upstream.content, status=upstream.status_code, headers=headers)(environ, start_response)

    def stop(self) -> None:
        self.server.shutdown()


def pruned(spec: Path, out: Path, keep: Tuple[str, ...]) -> Path:
    """The spec cut down to the paths the sync can use and the schemas they reach: Prism takes many
    minutes to start on the whole Lists spec (its filter schemas nest deeply), seconds on this."""
    doc = json.loads(spec.read_text(encoding="utf-8"))
    doc["paths"] = {p: v for p, v in doc["paths"].items() if not keep or p.endswith(keep)}
    components = doc.get("components", {})
    reached: set = set()
    todo = [doc["paths"]]
    while todo:
        node = todo.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/components/") and ref not in reached:
                reached.add(ref)
                _, _, section, name = ref.split("/", 3)
                todo.append(components.get(section, {}).get(name))
            todo.extend(node.values())
        elif isinstance(node, list):
            todo.extend(node)
    for section, items in components.items():
        if section != "securitySchemes":
            components[section] = {k: v for k, v in items.items() if f"#/components/{section}/{k}" in reached}
    out.write_text(json.dumps(doc), encoding="utf-8")
    return out


def start_prism(spec: Path, upstream: str, log: Path) -> Tuple[subprocess.Popen, str]:
    port = free_port()
    handle = open(log, "w", encoding="utf-8")  # noqa: SIM115 - lives as long as the process
    proc = subprocess.Popen(["prism", "proxy", str(spec), upstream, "--host", "127.0.0.1", "--port", str(port)],
                            stdout=handle, stderr=subprocess.STDOUT)
    return proc, f"http://127.0.0.1:{port}"


def wait_for(proc: subprocess.Popen, url: str, log: Path) -> None:
    """Prism parses the whole spec before it listens: a large one takes a while on a small machine."""
    port = int(url.rsplit(":", 1)[1])
    deadline = time.monotonic() + PRISM_START_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"prism stopped at start: {log.read_text(encoding='utf-8')[-500:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"prism did not start within {PRISM_START_S:.0f} s")


def seed(hubspot: FakeHubSpot, mailerlite: FakeMailerLite) -> None:
    base = int(time.time() * 1000) - 3_600_000
    ids = []
    for i in range(250):
        props = {"email": f"spec{i}@example.com", "firstname": f"First{i}", "lastname": f"Last{i}",
                 "company": "Acme", "city": "Ljubljana", "numemployees": str(10 + i),
                 "lifecyclestage": "lead", "hs_email_optout": "true" if i % 50 == 3 else "false"}
        ids.append(hubspot.add_contact(props, modified_ms=base + i))
    hubspot.lists[LIST_ID] = [int(i) for i in ids[:120]]
    # Companies and deals (a mapping that reads them): two companies on some contacts, one Primary,
    # deals shared by two contacts, one archived; each contact's associations paged (3 a page).
    companies = [hubspot.add_company({"name": f"Company {c}", "industry": "RETAIL", "numberofemployees": "12"})
                 for c in range(20)]
    deals = [hubspot.add_deal({"dealname": f"Deal {d}", "dealstage": "contractsent", "amount": "100"})
             for d in range(60)]
    for i, cid in enumerate(ids[:200]):
        hubspot.associate_company(cid, companies[i % 20], primary=i % 3 != 0)
        if i % 4 == 0:
            hubspot.associate_company(cid, companies[(i + 7) % 20])
        for d in range(i % 5):
            hubspot.associate_deal(cid, deals[(i + d) % 60])
    hubspot.archive_object("deals", deals[5])
    hubspot.association_page_size = 3
    hubspot.backdate(3_600_000)
    for i in (5, 6):  # unsubscribed in MailerLite: write-back tells HubSpot
        mailerlite.add_subscriber(f"spec{i}@example.com", status="unsubscribed")


def run_main(args: List[str], env: Dict[str, str]) -> Tuple[int, str]:
    proc = subprocess.run([sys.executable, str(PROJECT / "main.py"), *args], env=env, capture_output=True,
                          text=True, timeout=600, cwd=str(PROJECT))
    return proc.returncode, (proc.stderr.strip().splitlines() or [""])[-1]


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--specs", type=Path, required=True,
                        help="a checkout of HubSpot/HubSpot-public-api-spec-collection")
    parser.add_argument("--version", default=DEFAULT_VERSION, help=f"HubSpot API version (default {DEFAULT_VERSION})")
    args = parser.parse_args(argv)
    if shutil.which("prism") is None:
        sys.exit("prism is not installed: npm install -g @stoplight/prism-cli")
    specs = find_specs(args.specs, args.version)
    work = Path(tempfile.mkdtemp(prefix="hubspot-spec-check-"))
    hubspot = FakeHubSpot(time_scale=0.05).start()
    mailerlite = FakeMailerLite(time_scale=0.01).start()
    hubspot.tokens = {HS_TOKEN: set(hubspot.tokens.pop("hs-test-token")) | {WRITE_SCOPE, SCHEMA_WRITE_SCOPE}}
    mailerlite.tokens = {ML_TOKEN}
    seed(hubspot, mailerlite)
    prisms = []
    router: Optional[Router] = None
    try:
        for name, spec in specs.items():
            small = pruned(spec, work / name, KEEP.get(name, ()))
            proc, url = start_prism(small, hubspot.url, work / f"prism-{name}.log")
            prisms.append((proc, prefix(name, args.version), url))
        for (proc, _, url), name in zip(prisms, specs):
            wait_for(proc, url, work / f"prism-{name}.log")
        router = Router(hubspot.url, [(prefix, url) for _, prefix, url in prisms])
        (work / "empty.env").write_text("")
        mapping = work / "lists.toml"
        mapping.write_text("create_missing_fields = true\n"
                           f'[scope]\nlists = ["{LIST_ID}"]\n[groups.lists]\n"{LIST_ID}" = "Spec list"\n'
                           '[fields]\nnumemployees = { field = "employees", type = "number" }\n'
                           'lifecyclestage = { field = "stage", transform = "label" }\n', encoding="utf-8")
        associated = work / "associated.toml"
        associated.write_text("create_missing_fields = true\n[fields]\n"
                              '"company.industry" = { field = "company_industry", transform = "label" }\n'
                              '"company.numberofemployees" = "company_size"\n'
                              '"deal.dealstage" = { field = "deal_stage", transform = "label" }\n'
                              '"deals.count" = "deals"\n"deals.won_amount" = "deals_won_amount"\n'
                              '[groups.property]\n"deal.dealstage" = "Deal: {label}"\n', encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HUBSPOT_", "MAILERLITE_", "SYNC_"))}
        env.update(HUBSPOT_ACCESS_TOKEN=HS_TOKEN, MAILERLITE_API_KEY=ML_TOKEN, HUBSPOT_BASE_URL=router.url,
                   MAILERLITE_BASE_URL=mailerlite.base_url, SYNC_STATE_DB=str(work / "state.db"),
                   HUBSPOT_API_VERSION=args.version)
        common = ["--env-file", str(work / "empty.env")]
        scenarios = [
            ("first run", common, {}),
            ("unchanged run", common, {}),
            ("incremental run", common, {"edit": "1"}),
            ("--full", common + ["--full"], {}),
            ("--check", common + ["--check"], {}),
            ("write-back", common + ["--full"], {"SYNC_WRITE_BACK": "true"}),
            ("departures by id and address", common + ["--full"], {"archive": "1"}),
            ("consent sweep", common + ["--full"], {}),
            ("list-scoped mapping --check", common + ["--mapping", str(mapping), "--check"], {}),
            ("list-scoped mapping", common + ["--mapping", str(mapping), "--full"],
             {"SYNC_STATE_DB": str(work / "lists.db")}),
            ("list member left", common + ["--mapping", str(mapping)],
             {"SYNC_STATE_DB": str(work / "lists.db"), "leave": "1"}),
            ("companies and deals --check", common + ["--mapping", str(associated), "--check"], {}),
            ("companies and deals, first", common + ["--mapping", str(associated)],
             {"SYNC_STATE_DB": str(work / "associated.db")}),
            ("companies and deals, hourly", common + ["--mapping", str(associated)],
             {"SYNC_STATE_DB": str(work / "associated.db"), "edit_objects": "1"}),
            ("association pass", common + ["--mapping", str(associated)],
             {"SYNC_STATE_DB": str(work / "associated.db"), "pass_due": "1"}),
        ]
        used = ", ".join(str(p.relative_to(args.specs)) for p in specs.values())
        print(f"HubSpot API {args.version}; specs: {used}")
        print(f"{'scenario':<30} {'exit':>4} {'requests':>8} {'checked':>8} {'violations':>10}")
        for title, cli_args, extra in scenarios:
            if extra.pop("leave", None):  # its memberships are read by id before it may leave
                hubspot.lists[LIST_ID] = hubspot.lists[LIST_ID][1:]
            if extra.pop("pass_due", None):  # the daily association pass, due now
                db = sqlite3.connect(str(work / "associated.db"))
                db.execute("UPDATE meta SET value='0' WHERE key='associations_due_ms'")
                db.commit()
                db.close()
            if extra.pop("edit_objects", None):  # found by the company and deal searches
                hubspot.update_object("companies", str(min(hubspot.objects["companies"])), {"industry": "BANKING"})
                hubspot.update_object("deals", str(min(hubspot.objects["deals"])), {"dealstage": "closedwon"})
            if extra.pop("edit", None):
                for cid in list(hubspot.contacts)[:3]:
                    hubspot.update_contact(str(cid), {"jobtitle": "Edited"})
            if extra.pop("archive", None):  # archived records read by id, addresses by address, then swept
                for cid in list(hubspot.contacts)[-3:]:
                    hubspot.archive_contact(str(cid))
                hubspot.purge_contact(str(list(hubspot.contacts)[-1]))  # gone for good: not answered by id
            before = len(router.seen)
            code, last = run_main(cli_args, dict(env, **extra))
            batch = router.seen[before:]
            bad = sum(1 for s in batch if s.violations)
            print(f"{title:<30} {code:>4} {len(batch):>8} {sum(s.via_spec for s in batch):>8} {bad:>10}"
                  + (f"   {last[:80]}" if code not in (0, 1) else ""))
        return report(router.seen)
    finally:
        if router is not None:
            router.stop()
        for proc, _, _ in prisms:
            proc.terminate()
        hubspot.stop()
        mailerlite.stop()
        shutil.rmtree(work, ignore_errors=True)


def _general(text: str) -> str:
    """One line per kind of violation: item numbers and record ids folded away."""
    return re.sub(r"\.\d+(?=\.|\b)", ".N", re.sub(r"/\d+(?=/|$)", "/{id}", text))


def report(seen: List[Seen]) -> int:
    requests_bad: Counter = Counter()
    answers_bad: Counter = Counter()
    for s in seen:
        for v in s.violations:
            location = [str(part) for part in v.get("location", [])]  # type: ignore[union-attr]
            message = str(v.get("message"))
            # Prism shortens a long list to "Too many violations! [...": still say which side it was about.
            side = location[:1] or (["request"] if '"location":["request"' in message else ["response"])
            key = (s.method, _general(s.path), _general(message)[:160])
            (requests_bad if side == ["request"] else answers_bad)[key] += 1
    uncovered = sorted({f"{s.method} {_general(s.path)}" for s in seen if not s.via_spec})
    print(f"\n{len(seen)} HubSpot requests, {sum(s.via_spec for s in seen)} checked against the specs.")
    if uncovered:
        print("Not covered by the CRM specs (sent straight to the fake): " + ", ".join(uncovered))
    print(f"Request violations: {sum(requests_bad.values())}")
    for (method, path, message), n in sorted(requests_bad.items()):
        print(f"  {n:>4} x {method} {path}: {message}")
    print(f"Answer violations (the fake's drift from the spec; informational): {sum(answers_bad.values())}")
    for (method, path, message), n in sorted(answers_bad.items()):
        print(f"  {n:>4} x {method} {path}: {message}")
    return 1 if requests_bad else 0


if __name__ == "__main__":
    sys.exit(main())
