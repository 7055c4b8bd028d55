"""Positive evidence before a departure: absence from a listing only makes a candidate.

A departure unsubscribes or removes groups for good, so it needs evidence about that record:
- a list membership listing that ends short of the list's own settled `size` was cut short (a
  page without `paging` half-way): it is read again, then the run stops (exit 3), never departures;
- a synced contact missing from a list's listing is asked about by id (the memberships batch
  read): only an answer that names its lists without this one means it left; no answer keeps it;
- a synced contact missing from a full pass's listing is read by id (engine): archived or not
  found is evidence it is gone; a live answer is processed like any contact read;
- a list's listing that cannot be proven complete (HubSpot is still processing the list, so its
  size says nothing) is no evidence about contacts the state did not sync from it (a first run's
  adoption, a list group newly mapped): before any contact leaves that list's group, its own
  memberships are read by id (`confirmed_removals`); no answer keeps it in the group.

The consent owner calls `read_list_members`; the rules are here, the requests in hubspot.py.
"""

from __future__ import annotations

import logging
from typing import Callable, Dict, FrozenSet, Iterable, List, Mapping, Optional, Set, Tuple

from ..errors import AbortRun, SyncError
from ..hubspot import HubSpotReader
from ..retrying import Transient

log = logging.getLogger(__name__)


def incomplete_listing(listed: int, size: Optional[int], settled: bool) -> bool:
    """A listing of fewer members than the list's settled size was cut short. While HubSpot is
    still processing the list its size moves, so only the per-record evidence below counts."""
    return settled and size is not None and listed < size


def confirmed_leavers(candidates: Set[int], lists_of: Dict[int, Set[str]], list_id: str) -> Set[int]:
    """Of the candidates, those HubSpot answered about without naming this list."""
    return {i for i in candidates if i in lists_of and list_id not in lists_of[i]}


def proven_complete(listed: int, size: Optional[int], settled: bool) -> bool:
    """A listing of a settled list as long as its size: a contact it does not name is not in the list."""
    return settled and size is not None and listed >= size


def _complete_members(hubspot: HubSpotReader, list_id: str, tries: int, unproven: Set[str]) -> Set[int]:
    for attempt in range(1, tries + 1):
        members = set(hubspot.list_members(list_id))
        size, settled = hubspot.list_size(list_id)
        if not incomplete_listing(len(members), size, settled):
            if not proven_complete(len(members), size, settled):
                unproven.add(list_id)
            return members
        log.warning("HubSpot listed %d members of list %s, whose size is %s: an incomplete read (try %d of %d)",
                    len(members), list_id, size, attempt, tries)
    raise AbortRun(f"HubSpot list {list_id} kept listing fewer members than its size ({len(members)} of {size}): "
                   f"an incomplete read, so nobody left; the next run reads it again")


def read_list_members(hubspot: HubSpotReader, list_ids: Iterable[str], previous: Callable[[str], Set[int]],
                      synced: Callable[[Set[int]], Set[int]], tries: int,
                      unproven: Optional[Set[str]] = None) -> Dict[str, Set[int]]:
    """Each list's members, complete by its size, with every synced contact that the listing
    missed kept unless HubSpot confirms, for that record, that it is no longer in the list.
    `unproven` receives the lists whose listing cannot be proven complete (see confirmed_removals)."""
    unproven = set() if unproven is None else unproven
    members = {list_id: _complete_members(hubspot, list_id, tries, unproven) for list_id in list_ids}
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


def confirmed_removals(hubspot: HubSpotReader, wanted: List[Tuple[str, FrozenSet[str]]],
                       unproven_groups: Mapping[str, FrozenSet[str]]) -> Dict[str, FrozenSet[str]]:
    """Of each contact's group removals (hubspot id, groups), those that rest on positive evidence.
    `unproven_groups`: group name -> the lists behind it whose listing is not proven complete; leaving
    such a group needs the contact's own memberships (one batch read for all of them) to name none of
    those lists. A contact HubSpot does not answer about, or a read that fails, keeps its groups."""
    asking = {hid for hid, groups in wanted if hid.isdigit() and groups & unproven_groups.keys()}
    lists_of: Dict[int, Set[str]] = {}
    if asking:
        try:
            lists_of = hubspot.lists_of(int(h) for h in asking)
        except (SyncError, Transient) as exc:
            log.warning("HubSpot did not answer the list memberships of %d contacts (%s): they stay in their "
                        "list groups until a run can confirm they left", len(asking), exc)
    out: Dict[str, FrozenSet[str]] = {}
    for hid, groups in wanted:
        lists = lists_of.get(int(hid)) if hid.isdigit() else None
        out[hid] = frozenset(g for g in groups if g not in unproven_groups
                             or (lists is not None and not unproven_groups[g] & lists))
    return out
