"""Companies and deals in the sync (issue 30): the one owner of the contact's associated values.

The engine calls it at four points:
- `prepare` at the start of a run, before anything is written: the scopes proven (a missing
  crm.objects.companies.read or crm.objects.deals.read stops the run, exit 2); on an incremental
  run the companies and deals changed since their own bookmarks found by their search (one request
  each when nothing changed) and their contacts, by association, noted to be read; when due
  (SYNC_ASSOCIATIONS_HOURS, default 24) the synced contacts' associations read again and those
  whose associations alone changed noted too (HubSpot moves no timestamp for that).
- `infos` with the contact property definitions: the company and deal schemas (types, labels,
  deal stage labels), every mapped name checked ("did you mean ...?", exit 2, nothing written).
- `enriched` around the contacts a run reads: 1,000 contacts at a time, their associations read
  and their primary company and deals read (each company and deal once per run, kept in a
  private temporary database, never in a Python collection the size of HubSpot), the values set
  on the contact under the mapping's names (`company.industry`, `deals.count`, ...), so the pure
  mapping and the fingerprint treat them as any other property.
- `advance` with the contact bookmark: the companies' and deals' bookmarks move on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
from itertools import islice
from typing import Any, Dict, Iterable, Iterator, List, Optional, Set, Tuple

from . import hubspot_associations as read
from . import hubspot_schema as hs
from .advisories import Advisories
from .associated_values import (
    AGGREGATES,
    DEAL_BASICS,
    Link,
    contact_values,
    infos,
    primary_company,
    split_names,
)
from .casting import PropertyInfo, property_infos
from .errors import AuthError, ConfigError
from .hubspot import Contact, HubSpotReader, MissingScopes
from .mapping import Mapping
from .state import State
from .suggest import unknown_names_message

log = logging.getLogger(__name__)

BOOKMARKS_KEY = "associated_bookmarks"  # state meta: {"companies": ms, "deals": ms}
DUE_KEY = "associations_due_ms"  # state meta: when the next daily association pass is due
ENRICHED = "associated"  # set on a contact dict whose associated values are filled in
CHUNK = hs.ASSOCIATIONS_BATCH_SIZE  # contacts whose associations are read together
SCHEMA_ADVICE = "associated_schema_scope"
_KINDS = {"companies": "company", "deals": "deal"}


def _signature(company: Optional[int], deals: Iterable[int]) -> str:
    text = f"{company or ''}|{','.join(str(d) for d in sorted(deals))}"
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class Associations:
    """One run's associated values; does nothing (no request) when the mapping names none."""

    def __init__(self, hubspot: HubSpotReader, state: Optional[State], mapping: Mapping, *, dry_run: bool = False,
                 hours: float = 24.0, lag_ms: int = 10 * 60_000) -> None:
        self.hubspot = hubspot
        self.state = state
        self.dry_run = dry_run
        self.interval_ms = int(hours * 3_600_000)
        self.lag_ms = lag_ms
        self.names = mapping.associated_names()
        self.company_props, deal_props = split_names(self.names)
        self.wants_deals = any(n.startswith(("deal.", "deals.")) for n in self.names)
        self.deal_props = sorted(set(deal_props) | (set(DEAL_BASICS) if self.wants_deals else set()))
        self.kinds = [k for k, wanted in (("companies", bool(self.company_props)), ("deals", self.wants_deals))
                      if wanted]
        self._db: Optional[sqlite3.Connection] = None
        self._touched = 0  # contacts noted to be read because of their companies, deals or associations
        self._bookmarks: Dict[str, int] = {}
        self.unverified: List[str] = []  # schema scopes the token lacks (names unchecked, values sent as text)
        self._next_pass: Optional[int] = None  # when the next association pass is due, once this run completes

    @property
    def enabled(self) -> bool:
        return bool(self.names)

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            # "" is SQLite's private temporary database: on disk, deleted on close, never the state file.
            self._db = sqlite3.connect("")
            self._db.execute("CREATE TABLE objects (kind TEXT NOT NULL, id INTEGER NOT NULL, props TEXT, "
                             "PRIMARY KEY (kind, id))")
            self._db.execute("CREATE TABLE touched (id INTEGER PRIMARY KEY)")
            self._db.execute("CREATE TABLE read (id INTEGER PRIMARY KEY)")
            # Signatures of the contacts read, stored in the state only once the pass is complete
            # (`advance`): a run stopped before sending them must not hide their change from the next pass.
            self._db.execute("CREATE TABLE signatures (id INTEGER PRIMARY KEY, signature TEXT NOT NULL)")
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    # -- scopes and the start of a run ----------------------------------------------------------
    def check_scopes(self) -> List[str]:
        """--check: the problem line for each object scope the token lacks (one search each)."""
        problems = []
        for kind in self.kinds:
            try:
                read.probe(self.hubspot, kind)
            except MissingScopes as exc:
                problems.append(str(self._scope_stop(kind, exc)))
        return problems

    def _scope_stop(self, kind: str, exc: MissingScopes) -> AuthError:
        scope = hs.OBJECT_READ_SCOPES[kind]
        names = ", ".join(n for n in self.names if n.startswith(_KINDS[kind]))
        return AuthError(f"HubSpot rejected the access token: missing scope {scope}, needed by {names} in the "
                         f"mapping; add the scope to the service key or private app (python main.py --check)")

    def prepare(self, full: bool, start_ms: int) -> None:
        """Before anything is written: the scopes proven; on an incremental run, the contacts whose
        companies or deals changed (or, when due, whose associations did) noted to be read."""
        if not self.enabled or self.state is None:
            return
        stored = self.state.get_json(BOOKMARKS_KEY)
        bookmarks = ({str(k): int(v) for k, v in stored.items() if isinstance(v, int)}
                     if isinstance(stored, dict) else {})
        for kind in self.kinds:
            try:
                if full or kind not in bookmarks:
                    read.probe(self.hubspot, kind)  # the scope, proven (a full pass reads every contact anyway)
                else:
                    self._changed(kind, bookmarks[kind])
            except MissingScopes as exc:
                raise self._scope_stop(kind, exc) from None
        if not full and self.state.is_due(DUE_KEY, start_ms):
            self._association_pass(start_ms)
        elif full:
            self._next_pass = start_ms + self.interval_ms  # a full pass reads every association
        # The searches' ceiling, as the contacts': never past the run's start (by the earlier of our
        # clock and HubSpot's) minus the index lag, so the next run's search re-reads that margin.
        server_ms = int(self.hubspot.server_time * 1000) if self.hubspot.server_time else start_ms
        ceiling = max(min(start_ms, server_ms) - self.lag_ms, 0)
        self._bookmarks = {kind: ceiling for kind in self.kinds}

    def _changed(self, kind: str, since_ms: int) -> None:
        """The contacts of the records of `kind` changed since `since_ms`, noted (one search request
        when nothing changed)."""
        changed = (oid for oid, _ in read.changed_since(self.hubspot, kind, since_ms))
        found = 0
        while True:
            batch = list(islice(changed, CHUNK))
            if not batch:
                break
            found += len(batch)
            self._note((contact for _, contact, _ in read.associations(self.hubspot, kind, "contacts", batch)))
        if found:
            log.info("%d %s changed since the last run: their contacts are read again", found, kind)

    def _note(self, contact_ids: Iterable[int]) -> None:
        before = self.db.total_changes
        self.db.executemany("INSERT OR IGNORE INTO touched(id) VALUES (?)", ((i,) for i in contact_ids))
        self._touched += self.db.total_changes - before

    def _association_pass(self, start_ms: int) -> None:
        """Every synced contact's associations read (2 requests per 1,000 contacts); those whose primary
        company or deals differ from what was last sent are noted to be read and sent."""
        assert self.state is not None  # prepare runs with the state (--check, without one, never calls it)
        after, differing = -1, 0
        while True:
            ids = self.state.synced_ids(after, CHUNK)
            if not ids:
                break
            after = ids[-1]
            links = self._links(ids)
            stored = self.state.association_signatures(ids)
            changed = [cid for cid in ids if stored.get(cid) != _signature(*links.get(cid, (None, ())))]
            differing += len(changed)
            self._note(changed)
        self._next_pass = start_ms + self.interval_ms
        log.info("association pass: %d synced contacts' companies or deals changed", differing)

    # -- the contacts to read -------------------------------------------------------------------
    def touched(self, properties: List[str]) -> Iterator[Contact]:
        """The noted contacts this run has not read yet, read by id (those answered as themselves)."""
        if not self._touched:
            return
        after = -1
        while True:
            ids = [int(r[0]) for r in self.db.execute(
                "SELECT id FROM touched WHERE id > ? AND id NOT IN (SELECT id FROM read) ORDER BY id LIMIT ?",
                (after, CHUNK))]
            if not ids:
                return
            after = ids[-1]
            wanted = {str(i) for i in ids}
            for contact in self.hubspot.read_by_ids([str(i) for i in ids], properties):
                if contact["id"] in wanted:  # a merged-away id answered with its merged record is not it
                    wanted.discard(contact["id"])
                    yield contact

    # -- definitions ------------------------------------------------------------------------------
    def infos(self) -> Dict[str, PropertyInfo]:
        """PropertyInfo by mapped name; a name HubSpot does not define stops the run (exit 2)."""
        if not self.enabled:
            return {}
        schemas: Dict[str, Dict[str, PropertyInfo]] = {"companies": {}, "deals": {}}
        unverified: List[str] = []
        mapped_deal_props = split_names(self.names)[1]
        for kind, props, wanted in (("companies", self.company_props, self.company_props),
                                    ("deals", mapped_deal_props, self.deal_props)):
            if not wanted:
                continue
            try:
                defs = read.definitions(self.hubspot, kind)
            except AuthError:
                unverified.append(hs.OBJECT_SCHEMA_SCOPES[kind])
                continue
            missing = [f"{_KINDS[kind]}.{p}" for p in props if p not in defs]
            if missing:
                raise ConfigError(unknown_names_message(
                    f"HubSpot has no {_KINDS[kind]} property", missing, [f"{_KINDS[kind]}.{n}" for n in defs],
                    "fix the mapping file; nothing was written"))
            schemas[kind] = property_infos(defs)
        self.unverified = unverified
        if self.state is not None:
            advisories = Advisories(self.state, record=not self.dry_run)
            if unverified:
                advisories.once(SCHEMA_ADVICE, self.schema_advice())
            else:
                advisories.gone(SCHEMA_ADVICE)
        labels = read.stage_labels(self.hubspot) if "deal.dealstage" in self.names else {}
        return infos(self.names, schemas["companies"], schemas["deals"], labels)

    def schema_advice(self) -> str:
        return (f"the HubSpot token lacks {' and '.join(self.unverified)} (recommended): company and deal property "
                f"names cannot be checked and their values are sent as text; add the scopes to the service key "
                f"or private app")

    # -- values ----------------------------------------------------------------------------------
    def enriched(self, contacts: Iterator[Contact]) -> Iterator[Contact]:
        """The contacts with their associated values set, read 1,000 at a time."""
        if not self.enabled:
            yield from contacts
            return
        chunk: List[Contact] = []
        for contact in contacts:
            if self._touched and str(contact["id"]).isdigit():
                # Noted as it is read, so a contact the search returned is not read again by id.
                self.db.execute("INSERT OR IGNORE INTO read(id) VALUES (?)", (int(contact["id"]),))
            chunk.append(contact)
            if len(chunk) == CHUNK:
                self.enrich(chunk)
                yield from chunk
                chunk = []
        if chunk:
            self.enrich(chunk)
            yield from chunk

    def enrich(self, chunk: List[Contact]) -> None:
        """Sets the associated values on these contacts (those not set yet)."""
        chunk = [c for c in chunk if not c.get(ENRICHED)]
        ids = [int(c["id"]) for c in chunk if str(c["id"]).isdigit()]
        if not ids:
            return
        if self._touched:
            self.db.executemany("INSERT OR IGNORE INTO read(id) VALUES (?)", ((i,) for i in ids))
        links = self._links(ids)
        companies = self._objects("companies", {c for c, _ in links.values() if c is not None},
                                  self.company_props) if self.company_props else {}
        deals = self._objects("deals", {d for _, ds in links.values() for d in ds},
                              self.deal_props) if self.wants_deals else {}
        signatures = []
        for contact in chunk:
            cid = int(contact["id"]) if str(contact["id"]).isdigit() else -1
            company, deal_ids = links.get(cid, (None, ()))
            live = {d: deals[d] for d in deal_ids if d in deals}
            values = contact_values(self.names, companies.get(company) if company is not None else None, live)
            props = contact.get("properties")
            if isinstance(props, dict):
                props.update(values)
            contact[ENRICHED] = True
            if cid >= 0:
                signatures.append((cid, _signature(company, deal_ids)))
        self.db.executemany("INSERT OR REPLACE INTO signatures(id, signature) VALUES (?, ?)", signatures)

    def _links(self, ids: List[int]) -> Dict[int, Tuple[Optional[int], Tuple[int, ...]]]:
        """contact id -> (its primary company, its deals), as associated now."""
        by_contact: Dict[int, List[Link]] = {}
        deals: Dict[int, Set[int]] = {}
        if self.company_props:
            try:
                for contact, company, primary in read.associations(self.hubspot, "contacts", "companies", ids):
                    by_contact.setdefault(contact, []).append((company, primary))
            except MissingScopes as exc:
                raise self._scope_stop("companies", exc) from None
        if self.wants_deals:
            try:
                for contact, deal, _ in read.associations(self.hubspot, "contacts", "deals", ids):
                    deals.setdefault(contact, set()).add(deal)
            except MissingScopes as exc:
                raise self._scope_stop("deals", exc) from None
        return {cid: (primary_company(by_contact.get(cid, [])), tuple(sorted(deals.get(cid, ()))))
                for cid in ids}

    def _objects(self, kind: str, ids: Set[int], properties: List[str]) -> Dict[int, Dict[str, Any]]:
        """These records' properties: each read from HubSpot once per run, then from the temporary
        database; an id HubSpot does not answer (archived, deleted) is remembered as absent."""
        found: Dict[int, Dict[str, Any]] = {}
        wanted = sorted(ids)
        known: Set[int] = set()
        for start in range(0, len(wanted), 500):
            part = wanted[start:start + 500]
            for oid, raw in self.db.execute(
                    f"SELECT id, props FROM objects WHERE kind=? AND id IN ({','.join('?' * len(part))})",
                    [kind, *part]):
                known.add(oid)
                if raw is not None:
                    found[oid] = json.loads(raw)
        unread = [i for i in wanted if i not in known]
        if unread:
            try:
                answered = dict(read.objects(self.hubspot, kind, unread, properties))
            except MissingScopes as exc:
                raise self._scope_stop(kind, exc) from None
            self.db.executemany("INSERT OR REPLACE INTO objects(kind, id, props) VALUES (?, ?, ?)",
                                ((kind, i, json.dumps(answered[i]) if i in answered else None) for i in unread))
            found.update(answered)
        return found

    # -- the end of a run --------------------------------------------------------------------------
    def advance(self) -> None:
        """The companies' and deals' bookmarks moved on (after a complete pass, as the contacts' one)."""
        if not self.enabled or self.dry_run or self.state is None:
            return
        if self._db is not None:
            after = -1
            while True:
                rows = [(int(r[0]), str(r[1])) for r in self.db.execute(
                    "SELECT id, signature FROM signatures WHERE id > ? ORDER BY id LIMIT ?", (after, CHUNK))]
                if not rows:
                    break
                after = rows[-1][0]
                self.state.save_association_signatures(rows)
        if self._next_pass is not None:
            self.state.drop_unsynced_signatures()
            self.state.set_json(DUE_KEY, self._next_pass)
        if self._bookmarks:
            stored = self.state.get_json(BOOKMARKS_KEY)
            merged = dict(stored) if isinstance(stored, dict) else {}
            merged.update(self._bookmarks)
            self.state.set_json(BOOKMARKS_KEY, merged)

    def mapped(self) -> List[str]:
        """The mapped names, for --check."""
        return list(self.names)


__all__ = ["Associations", "AGGREGATES", "ENRICHED"]
