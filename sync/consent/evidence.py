"""Positive evidence before a departure: absence from a listing only makes a candidate.

A departure unsubscribes or removes groups for good, so it needs evidence about that record:
- a list membership listing that ends short of the list's own settled `size` was cut short (a
  page without `paging` half-way): it is read again, then the run stops (exit 3), never departures;
- a synced contact missing from a list's listing is asked about by id (the memberships batch
  read): only an answer that names its lists without this one means it left; no answer keeps it;
- a synced contact missing from a full pass's listing is read by id (engine): archived or not
  found is evidence it is gone; a live answer is processed like any contact read.

The consent owner calls `read_list_members`; the rules are here, the requests in hubspot.py.
"""

from __future__ import annotations

import logging
from typing import Callable, Dict, Iterable, Optional, Set

from ..errors import AbortRun
from ..hubspot import HubSpotReader

log = logging.getLogger(__name__)


def incomplete_listing(listed: int, size: Optional[int], settled: bool) -> bool:
    """A listing of fewer members than the list's settled size was cut short. While HubSpot is
    still processing the list its size moves, so only the per-record evidence below counts."""
    return settled and size is not None and listed < size


def confirmed_leavers(candidates: Set[int], lists_of: Dict[int, Set[str]], list_id: str) -> Set[int]:
    """Of the candidates, those HubSpot answered about without naming this list."""
    return {i for i in candidates if i in lists_of and list_id not in lists_of[i]}


def _complete_members(hubspot: HubSpotReader, list_id: str, tries: int) -> Set[int]:
    for attempt in range(1, tries + 1):
        members = set(hubspot.list_members(list_id))
        size, settled = hubspot.list_size(list_id)
        if not incomplete_listing(len(members), size, settled):
            return members
        log.warning("HubSpot listed %d members of list %s, whose size is %s: an incomplete read (try %d of %d)",
                    len(members), list_id, size, attempt, tries)
    raise AbortRun(f"HubSpot list {list_id} kept listing fewer members than its size ({len(members)} of {size}): "
                   f"an incomplete read, so nobody left; the next run reads it again")


def read_list_members(hubspot: HubSpotReader, list_ids: Iterable[str], previous: Callable[[str], Set[int]],
                      synced: Callable[[Set[int]], Set[int]], tries: int) -> Dict[str, Set[int]]:
    """Each list's members, complete by its size, with every synced contact that the listing
    missed kept unless HubSpot confirms, for that record, that it is no longer in the list."""
    members = {list_id: _complete_members(hubspot, list_id, tries) for list_id in list_ids}
    missing = {list_id: synced(previous(list_id) - ids) for list_id, ids in members.items()}
    asked: Set[int] = set().union(*missing.values()) if missing else set()
    if not asked:
        return members
    lists_of = hubspot.lists_of(asked)
    for list_id, candidates in missing.items():
        kept = candidates - confirmed_leavers(candidates, lists_of, list_id)
        if kept:
            log.info("%d contacts missing from list %s's listing are still in it (or HubSpot did not say): kept",
                     len(kept), list_id)
            members[list_id] |= kept
    return members
