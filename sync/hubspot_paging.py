"""The one paging loop for HubSpot, and the checks that keep a glitch from looking like the end.

Every paged read (the contact listing, list memberships, search) goes through `paginate`. A page
without a results list, a next cursor that was seen before (a loop), or a search page out of
order raises `Transient` inside the request's retried attempt: it is asked again, and if it
stays wrong the run stops (exit 3). It is never taken for the last page, because a full pass
treats every contact it did not see as gone.

Search pages by keyset, not by offset: the index is live, so when a contact already read is
edited it moves to the end and every later offset shifts by one, hiding a contact. Each search
request instead asks for `lastmodifieddate` from the newest one seen on; a run of more than one
page of contacts sharing one instant is walked by `hs_object_id`.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Dict, Hashable, Iterator, List, Optional, Set, Tuple, TypeVar

from .casting import to_epoch_ms
from .retrying import Transient

S = TypeVar("S", bound=Hashable)
_ID_RE = re.compile(r"[0-9]{1,20}")

# A search position: (operator on lastmodifieddate, that instant, hs_object_id already passed).
#   ("GTE", ms, 0): changed at ms or later      ("GT", ms, 0): changed after ms
#   ("EQ", ms, id): changed at ms, id above id  ("ID", 0, id): any change, id above id
SearchKey = Tuple[str, int, int]


def paginate(fetch: Callable[[S, Set[S]], Tuple[List[Any], Optional[S]]], first: S) -> Iterator[List[Any]]:
    """Pages from `first` on. `fetch(state, seen)` asks one page and returns its results and the
    next state (None after the last page); it rejects (Transient) a next state already in `seen`."""
    state, seen = first, {first}
    while True:
        results, following = fetch(state, seen)
        yield results
        if following is None:
            return
        seen.add(following)
        state = following


def is_record_id(value: Any) -> bool:
    """A HubSpot record id as the sync stores it: plain ASCII digits (not "²", not 1.5, not True)."""
    return isinstance(value, (str, int)) and not isinstance(value, bool) and bool(_ID_RE.fullmatch(str(value)))


def results_of(page: Dict[str, Any]) -> List[Any]:
    results = page.get("results")
    if not isinstance(results, list):
        raise Transient("HubSpot sent a page without a results list")
    return results


def next_cursor(page: Dict[str, Any], seen: Set[str]) -> Optional[str]:
    """The cursor of the next page; None when HubSpot says there is none."""
    paging = page.get("paging")
    following = paging.get("next") if isinstance(paging, dict) else None
    if following is None:
        return None
    after = following.get("after") if isinstance(following, dict) else None
    if not isinstance(after, (str, int)) or isinstance(after, bool) or str(after) == "":
        raise Transient("HubSpot sent a page whose next cursor is missing")
    if str(after) in seen:
        raise Transient("HubSpot sent a next cursor it had sent before (a paging loop)")
    return str(after)


CONTACT_STAMP = "lastmodifieddate"  # companies and deals keep theirs in hs_lastmodifieddate


def _positions(results: List[Dict[str, Any]], stamp: str = CONTACT_STAMP) -> List[Tuple[int, int]]:
    """(modification time ms or -1, id) of each result with a usable id."""
    out = []
    for raw in results:
        if isinstance(raw, dict) and is_record_id(raw.get("id")):
            props = raw.get("properties")
            ms = to_epoch_ms(props.get(stamp)) if isinstance(props, dict) else None
            out.append((-1 if ms is None else ms, int(raw["id"])))
    return out


def next_search_key(key: SearchKey, results: List[Dict[str, Any]], more: bool,
                    seen: Set[SearchKey], stamp: str = CONTACT_STAMP) -> Optional[SearchKey]:
    """Where the next search request starts, checking the page came in the order asked for."""
    op, ms, last_id = key
    positions = _positions(results, stamp)
    if op in ("EQ", "ID"):
        ids = [i for _, i in positions]
        if ids != sorted(ids) or (ids and ids[0] <= last_id) or (op == "EQ" and any(m not in (ms, -1)
                                                                                      for m, _ in positions)):
            raise Transient("HubSpot's search answered out of the order asked for")
        following: Optional[SearchKey] = (op, ms, ids[-1]) if more and ids else None
        if more and not ids:
            raise Transient("HubSpot's search said there is more but sent no usable record")
        if following is None and op == "EQ":
            following = ("GT", ms, 0)  # that instant is done: go on after it
    else:
        stamps = [m for m, _ in positions if m >= 0]
        if stamps != sorted(stamps) or (stamps and (stamps[0] < ms or (op == "GT" and stamps[0] == ms))):
            raise Transient("HubSpot's search answered out of the order asked for")
        if not more:
            return None
        if not stamps:
            raise Transient("HubSpot's search said there is more but sent no usable lastmodifieddate")
        newest = stamps[-1]
        # A full page that did not get past one instant: walk that instant by id.
        following = ("GTE", newest, 0) if newest > ms or op == "GT" else ("EQ", ms, 0)
    if following is not None and following in seen:
        raise Transient("HubSpot's search paging went in a loop")
    return following


def search_filters(key: SearchKey, base: List[Dict[str, Any]],
                   stamp: str = CONTACT_STAMP) -> Tuple[List[Dict[str, Any]], str]:
    """The filters and the sort (HubSpot takes one sort, a property name, ascending) for a position;
    `stamp` is the modification-time property (contacts: lastmodifieddate, others hs_lastmodifieddate)."""
    op, ms, last_id = key
    if op == "ID":
        return base + [{"propertyName": "hs_object_id", "operator": "GT", "value": str(last_id)}], "hs_object_id"
    if op == "EQ":
        return base + [{"propertyName": stamp, "operator": "EQ", "value": str(ms)},
                       {"propertyName": "hs_object_id", "operator": "GT", "value": str(last_id)}], "hs_object_id"
    return base + [{"propertyName": stamp, "operator": op, "value": str(ms)}], stamp
