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
from typing import Callable, Dict, Iterable, Iterator, List, Optional

from .errors import EXIT_OK, EXIT_PARTIAL, SyncError
from .hubspot import Contact, HubSpotReader, to_epoch_ms
from .mailerlite import MailerLiteClient
from .mapping import Mapping, Planned, Reject, Skip, map_contact
from .state import Known, Result, State
from .writer import Pending, SubscriberWriter

log = logging.getLogger(__name__)

# Search lags writes by a few moments: the bookmark never passes the run's start minus this.
SEARCH_LAG_MS = 60_000
PAGE = 100  # contacts looked up in the state per query
SUMMARY_COUNTS = ("read", "created", "updated", "unchanged", "skipped", "rejected", "failed", "not_reactivated")


@dataclass(frozen=True)
class RunOptions:
    full: bool = False
    force: bool = False  # with full: resend even what MailerLite already has
    dry_run: bool = False


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


def _pages(items: Iterable[Contact], size: int) -> Iterator[List[Contact]]:
    it = iter(items)
    while True:
        page = list(islice(it, size))
        if not page:
            return
        yield page


class Engine:
    def __init__(self, reader: HubSpotReader, client: MailerLiteClient, state: State, mapping: Mapping,
                 options: RunOptions, on_progress: Optional[Callable[[Counter], None]] = None) -> None:
        self.reader = reader
        self.client = client
        self.state = state
        self.mapping = mapping
        self.options = options
        self.on_progress = on_progress
        self.counts: Counter = Counter()
        self.writer = SubscriberWriter(client, self._record)
        self._max_modified: Optional[int] = None

    def run(self) -> Summary:
        started = time.monotonic()
        start_ms = int(time.time() * 1000)
        bookmark = self.state.bookmark()
        # A full pass that was interrupted is finished before going incremental again.
        full = self.options.full or bookmark is None or self.state.full_pass_pending()
        mode = "full" if full else "incremental"
        summary = Summary(mode, self.options.dry_run, self.counts)
        run_id = self.state.start_run(mode, self.options.dry_run)
        try:
            if full and not self.options.dry_run:
                self.state.set_full_pass_pending(True)
            self._sync(full, bookmark)
            if not self.options.dry_run:
                self.state.advance_bookmark(self._new_bookmark(full, bookmark, start_ms), full_pass_done=full)
            summary.exit_code = EXIT_PARTIAL if self.counts["rejected"] or self.counts["failed"] else EXIT_OK
        except SyncError as exc:
            summary.exit_code, summary.message = exc.exit_code, str(exc)
        finally:
            summary.duration_seconds = time.monotonic() - started
            summary.hubspot_requests = self.reader.requests
            summary.mailerlite_requests = self.client.requests
            self.state.finish_run(run_id, self.counts, summary.exit_code, summary.message)
        return summary

    # -- reading ---------------------------------------------------------------------------------
    def _contacts(self, full: bool, bookmark: Optional[int]) -> Iterator[Contact]:
        props = self.mapping.properties()
        if full:
            yield from self.reader.iter_contacts(props)
            return
        assert bookmark is not None
        retry = set(self.state.failed_ids())
        for contact in self.reader.search_modified_since(bookmark, props):
            retry.discard(contact["id"])
            yield contact
        if retry:  # failed transiently last time: try again even though HubSpot did not change them
            yield from self.reader.read_by_ids(sorted(retry, key=int), props)

    def _sync(self, full: bool, bookmark: Optional[int]) -> None:
        for page in _pages(self._contacts(full, bookmark), PAGE):
            known = self.state.known([c["id"] for c in page])
            for contact in page:
                self._process(contact, known.get(contact["id"]))
            if self.on_progress:
                self.on_progress(self.counts)
        if not self.options.dry_run:
            self.writer.flush()

    # -- one contact -------------------------------------------------------------------------------
    def _process(self, contact: Contact, known: Optional[Known]) -> None:
        self.counts["read"] += 1
        modified = to_epoch_ms(contact["properties"].get("lastmodifieddate"))
        if modified is not None and (self._max_modified is None or modified > self._max_modified):
            self._max_modified = modified
        outcome = map_contact(contact, self.mapping)
        if isinstance(outcome, Skip):
            self.counts["skipped"] += 1
            return
        if isinstance(outcome, Reject):
            fingerprint = outcome.fingerprint()
            if known and known.problem_kind == "rejected" and known.problem_fingerprint == fingerprint:
                self.counts["unchanged"] += 1  # rejected before with the same data: nothing new to say
                return
            self._record([Result(contact["id"], outcome.email, "rejected", fingerprint, reason=outcome.reason)])
            return
        self._plan(contact["id"], outcome, known)

    def _plan(self, hubspot_id: str, planned: Planned, known: Optional[Known]) -> None:
        fingerprint = planned.fingerprint()
        for warning in planned.warnings:
            log.warning("contact %s: %s", hubspot_id, warning)
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
        # Fields the sync filled before and that are now empty in HubSpot are cleared; fields
        # it never set (a MailerLite form's, say) are never named in the payload.
        previously = known.fields_set if known else frozenset()
        cleared = frozenset(previously & self.mapping.managed_fields) - planned.fields.keys()
        self.writer.add(Pending(hubspot_id, planned.email, planned.payload(cleared), fingerprint,
                                frozenset(planned.fields)))

    def _record(self, results: List[Result]) -> None:
        if not self.options.dry_run:
            self.state.record(results)
        for r in results:
            self.counts[r.outcome] += 1
            if r.outcome in ("rejected", "failed"):
                log.info("contact %s (%s) %s: %s", r.hubspot_id, r.email, r.outcome, r.reason)

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
