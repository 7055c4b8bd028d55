"""Reading companies, deals and contact associations from HubSpot (issue 30), on the HubSpot
reader's one request path (its pacing, retries, classifier and total timeout).

Associations: `POST /crm/associations/{v}/{from}/{to}/batch/read`, 1,000 ids a request; an id whose
list goes on carries `paging.next.after`, asked again with `after` on that input (only when present).
An id without associations may be answered with an empty list or left out and named in a 207's
`NO_ASSOCIATIONS_FOUND` error (unconfirmed): either way it has none. Companies and deals by
`POST /crm/objects/{v}/{kind}/batch/read`, 100 ids, only the properties wanted; archived ones are not
answered (simply absent). Changed ones by their search on `hs_lastmodifieddate`, the contact search's
keyset walk (past 10,000 results).
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Iterable, Iterator, List, Optional, Set, Tuple

from . import hubspot_schema as hs
from .hubspot import HubSpotReader, _batches
from .hubspot_paging import is_record_id, next_cursor, results_of
from .retrying import Transient

log = logging.getLogger(__name__)

__all__ = ["associations", "objects", "changed_since", "definitions", "stage_labels", "probe"]

NO_ASSOCIATIONS = "NO_ASSOCIATIONS_FOUND"  # an id without any: none, not an error
# One association as read: (from id, to id, carries the Primary label?)
Association = Tuple[int, int, bool]


def _path(reader: HubSpotReader, template: str, **parts: str) -> str:
    return reader._path(template, **parts)


def associations(reader: HubSpotReader, from_type: str, to_type: str,
                 ids: Iterable[int]) -> Iterator[Association]:
    """Every association of these records to `to_type`, each id's list followed to its end."""
    from .associated_values import is_primary
    path = _path(reader, hs.ASSOCIATIONS_READ_PATH, from_type=from_type, to_type=to_type)
    what = f"{from_type} to {to_type} associations batch read"
    for batch in _batches((str(i) for i in ids), hs.ASSOCIATIONS_BATCH_SIZE):
        wanted = set(batch)
        inputs: List[Dict[str, str]] = [{"id": i} for i in batch]
        seen: Dict[str, Set[str]] = {}  # id -> cursors already followed (a repeated one is a loop)
        while inputs:

            def check(page: Dict[str, Any], wanted: Set[str] = wanted,
                      seen: Dict[str, Set[str]] = seen) -> List[Tuple[str, List[Any], Optional[str]]]:
                out = []
                errors = page.get("errors")
                for error in errors if isinstance(errors, list) else []:
                    category = str(error.get("category") or "").upper() if isinstance(error, dict) else ""
                    if category != NO_ASSOCIATIONS:
                        # Not "none": an id whose associations HubSpot could not read is never taken
                        # for one without any (its company could leave it out of scope). Asked again.
                        raise Transient(f"HubSpot could not read some associations ({category or 'no reason'})")
                for result in results_of(page):
                    source = result.get("from") if isinstance(result, dict) else None
                    oid = str(source.get("id")) if isinstance(source, dict) else ""
                    if oid not in wanted:
                        continue
                    targets = result.get("to")
                    out.append((oid, targets if isinstance(targets, list) else [],
                                next_cursor(result, seen.get(oid, set()))))
                return out

            answered = reader._call(what, "POST", path, body={"inputs": inputs}, check=check)
            inputs = []
            for oid, targets, after in answered:
                for target in targets:
                    to_id = target.get("toObjectId") if isinstance(target, dict) else None
                    if is_record_id(to_id):
                        yield int(oid), int(str(to_id)), is_primary(target.get("associationTypes"))
                if after is not None:
                    seen.setdefault(oid, set()).add(after)
                    inputs.append({"id": oid, "after": after})


def objects(reader: HubSpotReader, kind: str, ids: Iterable[int],
            properties: List[str]) -> Iterator[Tuple[int, Dict[str, Any]]]:
    """(id, properties) of the live records among these ids, 100 a request; others are absent."""
    path = _path(reader, hs.OBJECT_BATCH_READ_PATH, kind=kind)
    for batch in _batches((str(i) for i in ids), hs.BATCH_READ_SIZE):
        body = {"inputs": [{"id": i} for i in batch], "properties": properties, "propertiesWithHistory": []}
        wanted = set(batch)
        for raw in reader._call(f"{kind} batch read", "POST", path, body=body, check=results_of):
            if isinstance(raw, dict) and str(raw.get("id")) in wanted and raw.get("archived") is not True:
                props = raw.get("properties")
                yield int(str(raw["id"])), props if isinstance(props, dict) else {}


def changed_since(reader: HubSpotReader, kind: str, since_ms: int) -> Iterator[Tuple[int, Optional[int]]]:
    """(id, hs_lastmodifieddate ms) of the records changed at since_ms or later, oldest first
    (the keyset walk, so more than 10,000 changes are all found)."""
    from .casting import to_epoch_ms
    newest: Optional[int] = None
    at_newest: Set[int] = set()  # ids at the newest instant: a keyset page asks that instant again
    path = hs.OBJECT_SEARCH_PATH.replace("{kind}", kind)
    for results in reader._search_pages(f"{kind} search", [], [hs.OBJECT_STAMP], ("GTE", since_ms, 0),
                                        path=path, stamp=hs.OBJECT_STAMP):
        for raw in results:
            if not (isinstance(raw, dict) and is_record_id(raw.get("id"))):
                continue
            props = raw.get("properties")
            ms = to_epoch_ms(props.get(hs.OBJECT_STAMP)) if isinstance(props, dict) else None
            oid = int(str(raw["id"]))
            if ms is not None and (newest is None or ms > newest):
                newest, at_newest = ms, set()
            if oid not in at_newest:
                at_newest.add(oid)
                yield oid, ms


def probe(reader: HubSpotReader, kind: str) -> None:
    """One search of one record: proves the token may read `kind` (MissingScopes otherwise)."""
    body = {"filterGroups": [], "sorts": [], "properties": [hs.OBJECT_STAMP], "limit": 1, "after": "0"}
    reader._call(f"{kind} search", "POST", _path(reader, hs.OBJECT_SEARCH_PATH, kind=kind), body=body, search=True)


def definitions(reader: HubSpotReader, kind: str) -> Dict[str, Dict[str, Any]]:
    """The property definitions of companies or deals, by name."""
    results = reader._call(f"{kind} property definitions", "GET", _path(reader, hs.OBJECT_PROPERTIES_PATH, kind=kind),
                           check=results_of)
    return {p["name"]: p for p in results if isinstance(p, dict) and isinstance(p.get("name"), str)}


def stage_labels(reader: HubSpotReader) -> Dict[str, str]:
    """Deal stage id -> label, over every deal pipeline."""
    results = reader._call("deal pipelines", "GET", _path(reader, hs.DEAL_PIPELINES_PATH), check=results_of)
    labels: Dict[str, str] = {}
    for pipeline in results:
        stages = pipeline.get("stages") if isinstance(pipeline, dict) else None
        for stage in stages if isinstance(stages, list) else []:
            if isinstance(stage, dict) and stage.get("id") is not None and stage.get("label"):
                labels.setdefault(str(stage["id"]), str(stage["label"]))
    return labels
