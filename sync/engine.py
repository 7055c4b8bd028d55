"""The sync itself: read changed contacts, map them, write what differs, record every outcome.

The engine wires the HubSpot reader, the pure mapping, the MailerLite writer and the state;
none of those knows the others.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass
from itertools import islice
from typing import Callable, Dict, FrozenSet, Iterable, Iterator, List, Optional, Set

from .casting import PropertyInfo, property_infos
from .errors import EXIT_ABORTED, EXIT_OK, EXIT_PARTIAL, AuthError, SyncError
from .hubspot import Contact, HubSpotWriter, to_epoch_ms
from .mailerlite import MailerLiteClient
from .mailerlite_schema import MailerLiteSchema
from .mapping import Mapping, Outcome, OutOfScope, Planned, Reject, Skip, map_contact, normalise_email
from .retrying import Transient
from .state import Known, Result, State, Synced
from .write_back import WriteBack
from .writer import Pending, SubscriberWriter

log = logging.getLogger(__name__)

# Search can lag writes by more than a minute: the bookmark never passes the run's start minus
# this margin, so each run reads the last ten minutes again (unchanged contacts cost no write).
SEARCH_LAG_MS = 10 * 60_000
ARCHIVED_CHECK_MS = 24 * 3_600_000  # incremental runs look for archived contacts this often
PAGE = 100  # contacts looked up in the state per query
MERGED_PROPERTY = "hs_merged_object_ids"
SUMMARY_COUNTS = ("read", "created", "updated", "unchanged", "skipped", "rejected", "failed", "not_reactivated",
                  "left_scope", "written_back", "write_back_unmatched", "write_back_failed", "write_back_requests")
FIELD_TYPES_KEY = "mailerlite_field_types"  # state meta: the account's field types, as last seen


@dataclass(frozen=True)
class RunOptions:
    full: bool = False
    force: bool = False  # with full: resend even what MailerLite already has
    dry_run: bool = False
    count_total: bool = False  # spend a request on the number of contacts (for a progress ETA)
    write_back: bool = False  # MailerLite unsubscribes, bounces and spam complaints back to HubSpot
    write_back_hours: float = 24.0


@dataclass
class Summary:
    mode: str
    dry_run: bool
    counts: Counter
    duration_seconds: float = 0.0
    exit_code: int = EXIT_OK
    message: str = ""
    hubspot_requests: int = 0
    mailerlite_requests: int = 0

    def as_dict(self) -> Dict[str, object]:
        out: Dict[str, object] = {"mode": self.mode, "dry_run": self.dry_run}
        out.update({k: int(self.counts.get(k, 0)) for k in SUMMARY_COUNTS})
        out.update(would_send=int(self.counts.get("would_send", 0)),
                   duration_seconds=round(self.duration_seconds, 3), exit_code=self.exit_code,
                   hubspot_requests=self.hubspot_requests, mailerlite_requests=self.mailerlite_requests,
                   message=self.message)
        return out


def _synced(hubspot_id: str, known: Known) -> Synced:
    assert known.email is not None
    return Synced(hubspot_id, known.email, known.subscriber_id, known.groups_set)


def _pages(items: Iterable[Contact], size: int) -> Iterator[List[Contact]]:
    it = iter(items)
    while True:
        page = list(islice(it, size))
        if not page:
            return
        yield page


class Engine:
    def __init__(self, reader: HubSpotWriter, client: MailerLiteClient, state: State, mapping: Mapping,
                 options: RunOptions, on_progress: Optional[Callable[[Counter, Optional[int]], None]] = None) -> None:
        self.reader = reader
        self.client = client
        self.state = state
        self.mapping = mapping
        self.options = options
        self.on_progress = on_progress
        self.counts: Counter = Counter()
        self.writer = SubscriberWriter(client, self._record)
        self.schema = MailerLiteSchema(client, mapping)
        self._max_modified: Optional[int] = None
        self._info: Optional[Dict[str, PropertyInfo]] = None  # HubSpot property definitions, fetched lazily
        self._field_types: Dict[str, str] = dict(state.get_json(FIELD_TYPES_KEY) or {})
        self._fields_checked = False
        self._members: Dict[str, Set[int]] = {}
        self._removals: Dict[str, FrozenSet[str]] = {}  # groups to leave once an upsert is accepted
        self._subscriber_ids: Dict[str, Optional[str]] = {}
        self._run_id = 0
        self._owners: Dict[str, str] = {}  # email -> HubSpot id owning it, for the current page
        self.total: Optional[int] = None  # contacts this run expects to read, when known

    def run(self) -> Summary:
        started = time.monotonic()
        start_ms = int(time.time() * 1000)
        bookmark = self.state.bookmark()
        # A full pass that was interrupted is finished before going incremental again.
        full = self.options.full or bookmark is None or self.state.full_pass_pending()
        mode = "full" if full else "incremental"
        summary = Summary(mode, self.options.dry_run, self.counts)
        self._run_id = self.state.start_run(mode, self.options.dry_run)
        try:
            write_back = self._prepare_write_back(start_ms)
            if full and not self.options.dry_run:
                self.state.set_full_pass_pending(True)
            changed_members = self._load_memberships()
            self._sync(full, bookmark, changed_members)
            self._leave_departed(full, start_ms)
            if not self.options.dry_run:
                if self._members:
                    self.state.save_list_members(self._members)
                self.state.advance_bookmark(self._new_bookmark(full, bookmark, start_ms), full_pass_done=full)
            if write_back is not None:
                before = self.reader.requests + self.client.requests
                write_back.run(start_ms)
                self.counts["write_back_requests"] += self.reader.requests + self.client.requests - before
            problems = self.counts["rejected"] + self.counts["failed"] + self.counts["write_back_failed"]
            summary.exit_code = EXIT_PARTIAL if problems else EXIT_OK
        except SyncError as exc:
            summary.exit_code, summary.message = exc.exit_code, str(exc)
        except Transient as exc:  # a retry layer gave up somewhere not wrapped above: still an outage
            summary.exit_code, summary.message = EXIT_ABORTED, f"an API kept failing ({exc.reason}); stopped"
        finally:
            summary.duration_seconds = time.monotonic() - started
            summary.hubspot_requests = self.reader.requests
            summary.mailerlite_requests = self.client.requests
            self.state.finish_run(self._run_id, self.counts, summary.exit_code, summary.message)
        return summary

    # -- reading ---------------------------------------------------------------------------------
    def _load_memberships(self) -> Set[str]:
        """Members of the lists the mapping uses; returns ids whose membership changed."""
        changed: Set[str] = set()
        for list_id in self.mapping.list_ids():
            members = set(self.reader.list_members(list_id))
            self._members[list_id] = members
            changed.update(str(i) for i in members ^ self.state.list_members(list_id))
        return changed

    def _lists_of(self, hubspot_id: str) -> FrozenSet[str]:
        if not self._members or not hubspot_id.isdigit():
            return frozenset()
        number = int(hubspot_id)
        return frozenset(lid for lid, members in self._members.items() if number in members)

    def _contacts(self, full: bool, bookmark: Optional[int], changed_members: Set[str]) -> Iterator[Contact]:
        props = self.mapping.properties() + [MERGED_PROPERTY]
        if full and self.mapping.scope_lists:
            members: Set[int] = set().union(*(self._members[lid] for lid in self.mapping.scope_lists))
            self.total = len(members)
            yield from self.reader.read_by_ids((str(i) for i in sorted(members)), props)
            return
        if full:
            if self.options.count_total:
                self.total = self.reader.count_contacts()
            yield from self.reader.iter_contacts(props)
            return
        assert bookmark is not None
        extra = set(self.state.failed_ids()) | changed_members
        for contact in self.reader.search_modified_since(bookmark, props):
            if self.total is None and self.reader.search_total is not None:
                self.total = self.reader.search_total + len(extra)
            extra.discard(contact["id"])
            yield contact
        # Failed last time, or joined/left a list (which does not change the contact itself).
        if extra:
            yield from self.reader.read_by_ids(sorted(extra, key=int), props)

    def _sync(self, full: bool, bookmark: Optional[int], changed_members: Set[str]) -> None:
        for page in _pages(self._contacts(full, bookmark, changed_members), PAGE):
            ids = [c["id"] for c in page]
            known = self.state.known(ids)
            self._owners = self.state.owners([normalise_email(c["properties"].get("email")) for c in page])
            for contact in page:
                self._process(contact, known.get(contact["id"]))
            if full and not self.options.dry_run:
                self.state.mark_seen(ids, self._run_id)
            if self.on_progress:
                self.on_progress(self.counts, self.total)
        if not self.options.dry_run:
            self.writer.flush()

    # -- one contact -------------------------------------------------------------------------------
    def _property_info(self) -> Dict[str, PropertyInfo]:
        if self._info is None:
            try:
                defs = self.reader.property_definitions()
            except AuthError as exc:
                # Reading definitions needs crm.schemas.contacts.read; the plain default mapping
                # does without (everything is text), so a token without it still syncs.
                log.warning("%s: property types and labels are unknown, values go as text unless the mapping "
                            "gives a type", exc)
                defs = {}
            self._info = property_infos(defs)
            missing = [p for p in self.mapping.properties() if p not in self._info]
            if defs and missing:
                log.warning("HubSpot has no contact property %s; check the mapping (python main.py --check)",
                            ", ".join(missing))
        return self._info

    def _map(self, contact: Contact) -> Outcome:
        return map_contact(contact, self.mapping, self._property_info(), self._lists_of(contact["id"]),
                           self._field_types)

    def _process(self, contact: Contact, known: Optional[Known]) -> None:
        self.counts["read"] += 1
        props = contact["properties"]
        modified = to_epoch_ms(props.get("lastmodifieddate"))
        if modified is not None and (self._max_modified is None or modified > self._max_modified):
            self._max_modified = modified
        self._leave_merged(props.get(MERGED_PROPERTY), contact["id"])
        outcome = self._map(contact)
        if isinstance(outcome, (Skip, OutOfScope)):
            self.counts["skipped"] += 1
            if known and known.email:  # it was synced before: it has left the sync's scope
                self._leave(_synced(contact["id"], known), outcome.reason)
            return
        if isinstance(outcome, Reject):
            self._reject_locally(contact, outcome, known)
            return
        owner = self.writer.pending_owner(outcome.email) or self._owners.get(outcome.email)
        if owner is not None and owner != contact["id"]:
            # Two HubSpot contacts, one address: the first one synced keeps it; this one is
            # reported (--rejected), not silently dropped, until the first one lets it go.
            self._reject_locally(contact, Reject(
                f"email {outcome.email} is already synced from HubSpot contact {owner}", outcome.email), known)
            return
        if known and known.email and known.email != outcome.email:
            # A new address: the old one has left scope; the new one is a new subscriber.
            self._leave(_synced(contact["id"], known), "the email address changed")
            known = None
        self._plan(contact, outcome, known)

    def _plan(self, contact: Contact, planned: Planned, known: Optional[Known]) -> None:
        hubspot_id = contact["id"]
        fingerprint = planned.fingerprint()
        if known and not self.options.force:
            if known.fingerprint == fingerprint and known.problem_kind is None:
                self.counts["unchanged"] += 1
                return
            if known.problem_kind == "rejected" and known.problem_fingerprint == fingerprint:
                self.counts["unchanged"] += 1  # MailerLite refused this very data: wait for a change
                return
        if self.options.dry_run:
            self.counts["would_send"] += 1
            return
        if not self._fields_checked and self._check_fields():
            remapped = self._map(contact)  # the account's field types differ from what was assumed
            if not isinstance(remapped, Planned):
                self._reject_locally(contact, remapped, known)
                return
            planned, fingerprint = remapped, remapped.fingerprint()
        for warning in planned.warnings:
            log.warning("contact %s: %s", hubspot_id, warning)
        # Fields the sync filled before and that are now empty in HubSpot are cleared; fields
        # it never set (a MailerLite form's, say) are never named in the payload.
        previously = known.fields_set if known else frozenset()
        cleared = frozenset(previously & self.mapping.managed_fields) - planned.fields.keys()
        if known:
            leaving = frozenset(g for g in known.groups_set - set(planned.groups) if self.mapping.manages_group(g))
            if leaving:
                self._removals[hubspot_id] = leaving
                self._subscriber_ids[hubspot_id] = known.subscriber_id
        group_ids = self.schema.group_ids(list(planned.groups))
        self.writer.add(Pending(hubspot_id, planned.email, planned.payload(cleared, group_ids), fingerprint,
                                frozenset(planned.fields), frozenset(planned.groups)))

    def _reject_locally(self, contact: Contact, outcome: Outcome, known: Optional[Known]) -> None:
        """A rejection (or skip) decided locally."""
        if not isinstance(outcome, Reject):
            self.counts["skipped"] += 1
            return
        fingerprint = outcome.fingerprint()
        if known and known.problem_kind == "rejected" and known.problem_fingerprint == fingerprint:
            self.counts["unchanged"] += 1  # rejected before with the same data: nothing new to say
            return
        self._record([Result(contact["id"], outcome.email, "rejected", fingerprint, reason=outcome.reason)])

    def _check_fields(self) -> bool:
        """Before the first write: fields exist (or are created) with agreeing types.
        Returns True when the types to send changed, so the current contact is mapped again."""
        self._fields_checked = True
        planned = self.mapping.field_types(self._property_info(), self._field_types)
        actual = self.schema.ensure_fields(planned)
        if actual != {k: self._field_types.get(k) for k in actual}:
            self._field_types.update(actual)
            self.state.set_json(FIELD_TYPES_KEY, self._field_types)
        return actual != planned

    def _record(self, results: List[Result]) -> None:
        if not self.options.dry_run:
            for r in results:
                leaving = self._removals.pop(r.hubspot_id, None)
                if leaving and r.outcome in ("created", "updated"):
                    self._leave_groups(r.subscriber_id or self._subscriber_ids.get(r.hubspot_id), leaving)
                self._subscriber_ids.pop(r.hubspot_id, None)
            self.state.record(results)
        for r in results:
            self.counts[r.outcome] += 1
            if r.outcome in ("rejected", "failed"):
                log.info("contact %s (%s) %s: %s", r.hubspot_id, r.email, r.outcome, r.reason)

    # -- leaving scope -------------------------------------------------------------------------------
    def _leave_groups(self, subscriber_id: Optional[str], names: Iterable[str]) -> None:
        if not subscriber_id:
            return
        for name in sorted(names):
            gid = self.schema.group_id(name, create=False)
            if gid:
                self.client.unassign(subscriber_id, gid)

    def _leave(self, synced: Synced, reason: str) -> None:
        """A synced contact left the sync's scope: apply the on_leave setting, then forget it."""
        self.counts["left_scope"] += 1
        log.info("contact %s (%s) left the sync: %s; %s", synced.hubspot_id, synced.email, reason,
                 self.mapping.on_leave)
        if self.options.dry_run:
            return
        if self.mapping.on_leave == "remove_from_groups":
            self._leave_groups(synced.subscriber_id,
                               (g for g in synced.groups_set if self.mapping.manages_group(g)))
        elif self.mapping.on_leave == "unsubscribe":
            answer = self.client.upsert({"email": synced.email, "status": "unsubscribed"})
            if answer.code not in (200, 201):
                log.warning("could not unsubscribe %s (HTTP %s)", synced.email, answer.code)
        self.state.forget(synced.hubspot_id)

    def _leave_merged(self, merged: Optional[str], survivor: str) -> None:
        ids = [i.strip() for i in str(merged or "").split(";")]
        for synced in self.state.synced(i for i in ids if i.isdigit() and i != survivor):
            self._leave(synced, f"merged into contact {survivor}")

    def _leave_departed(self, full: bool, start_ms: int) -> None:
        """Contacts gone from HubSpot (archived, merged away) or from the synced lists."""
        if self.options.dry_run:
            return
        if full:
            gone = self.state.unseen(self._run_id)
            for synced in self.state.synced(gone):
                self._leave(synced, "no longer in HubSpot or the synced lists")
            self.state.set_json("archived_checked_ms", start_ms)
            return
        last = self.state.get_json("archived_checked_ms")
        if isinstance(last, int) and start_ms - last < ARCHIVED_CHECK_MS:
            return
        archived = (c["id"] for c in self.reader.iter_contacts(["email"], archived=True))
        for synced in self.state.synced(archived):
            self._leave(synced, "archived in HubSpot")
        self.state.set_json("archived_checked_ms", start_ms)

    def _prepare_write_back(self, start_ms: int) -> Optional[WriteBack]:
        """Write-back, when on and due, runs after the forward sync, so the bookmark that sync moved
        does not cover the contacts it touches: the next run reads them again, finds their
        MailerLite data unchanged, and sends nothing. Its scopes are checked before anything is
        written, so a missing one stops the run with nothing done (exit 2)."""
        if not (self.options.write_back or self.mapping.write_back):
            return None
        write_back = WriteBack(self.reader, self.client, self.state, self.counts, self.options.write_back_hours,
                               self.options.dry_run)
        if not write_back.due(start_ms):
            return None
        missing = self.reader.missing_write_scopes()
        if missing:
            raise AuthError(f"HubSpot rejected the access token: missing scope {', '.join(missing)} "
                            f"(needed by SYNC_WRITE_BACK; turn it off or add the scope to the private app)")
        return write_back

    # -- bookmark ------------------------------------------------------------------------------------
    def _new_bookmark(self, full: bool, old: Optional[int], start_ms: int) -> int:
        """Never past the run's start (by the earlier of our clock and HubSpot's) minus the lag.

        A full pass lists contacts by id, so only the start time bounds it. An incremental pass
        read changes oldest first, so everything up to the newest one seen is dealt with.
        """
        server_ms = int(self.reader.server_time * 1000) if self.reader.server_time else start_ms
        ceiling = min(start_ms, server_ms) - SEARCH_LAG_MS
        if full:
            return ceiling
        newest = self._max_modified if self._max_modified is not None else old
        return min(newest if newest is not None else ceiling, ceiling)
