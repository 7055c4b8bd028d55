"""The sync itself: read changed contacts, map them, write what differs, record every outcome.

The engine wires the HubSpot reader, the pure mapping, the MailerLite writer and the state;
none of those knows the others.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, replace
from itertools import islice
from typing import Callable, Dict, FrozenSet, Iterator, List, Optional, Set, Tuple

from . import engagement as engagement_pass
from . import mapping_change
from . import write_back as write_back_pass
from .accounts import check_same_accounts, prove_credentials
from .adoption import (
    LISTING_FLOOR,
    MISMATCH_MIN,
    NOT_COVERED,
    Comparison,
    compare,
    listing_worth_reading,
    log_differences,
    state_mismatch,
)
from .adoption_listing import Listing, open_listing, time_for_listing
from .advisories import SCHEMA_SCOPE_ADVICE, SCHEMA_SCOPE_MESSAGE, Advisories
from .associations import ENRICHED, Associations
from .casting import TEXT_MAX, PropertyInfo, property_infos
from .clock_skew import clamp_future_times
from .consent import ARCHIVED_KEY, Consent
from .consent.sweep import SWEEP_DUE_KEY
from .dry_run_report import PlanReport, plan_upsert
from .engagement import Engagement
from .errors import EXIT_ABORTED, EXIT_INTERRUPTED, EXIT_OK, EXIT_PARTIAL, AuthError, ConfigError, SyncError
from .hubspot import Contact, HubSpotWriter, to_epoch_ms
from .hubspot_schema import MERGED_PROPERTY
from .hubspot_schema import merged_ids as merged_ids_of  # (merged_ids: the contact's value here)
from .mailerlite import MailerLiteClient
from .mailerlite_answers import INACTIVE
from .mailerlite_schema import MailerLiteSchema
from .mapping import (
    DEFAULT_OPTOUT_PROPERTIES,
    Mapping,
    Outcome,
    OutOfScope,
    Planned,
    Reject,
    Skip,
    map_contact,
    normalise_email,
)
from .preflight import SCHEMA_READ_SCOPE
from .retrying import Transient
from .run_scratch import RunScratch
from .state import ContactRecord, Result, State
from .suggest import unknown_names_message
from .summary import Summary, attach
from .tunables import DEFAULTS, Tunables
from .write_back import WriteBack
from .writer import Pending, SubscriberWriter, Written

__all__ = ["Engine", "RunOptions", "Summary"]

log = logging.getLogger(__name__)

FIELD_TYPES_KEY = "mailerlite_field_types"  # state meta: the account's field types, as last seen
# State meta: the text limit this account named in a refusal (mailerlite_dialect.py), kept so later
# runs cut text there from the start and adoption takes a value held cut there as equal.
TEXT_LIMIT_KEY = "mailerlite_text_limit"
# The reason a second contact with an address another one syncs is rejected (recorded as a duplicate
# of that contact: state.unheld_duplicates finds those whose owner has let the address go since).
DUPLICATE = "email {email} is already synced from HubSpot contact {owner}"


@dataclass(frozen=True)
class RunOptions:
    full: bool = False
    force: bool = False  # with full: resend even what MailerLite already has
    dry_run: bool = False
    count_total: bool = False  # spend a request on the number of contacts (for a progress ETA)
    write_back: bool = False  # MailerLite unsubscribes, bounces and spam complaints back to HubSpot
    write_back_hours: float = 24.0
    allow_mass_leave: bool = False  # --allow-mass-leave: this run may make many contacts leave
    engagement: bool = False  # MailerLite emails sent, opens, clicks and rates onto HubSpot contacts
    engagement_hours: float = 24.0
    consent_sweep_hours: float = 24.0  # SYNC_CONSENT_SWEEP_HOURS: how often let-go addresses are read
    associations_hours: float = 24.0  # SYNC_ASSOCIATIONS_HOURS: how often synced contacts' associations are read
    plan: Optional[PlanReport] = None  # a dry run's planned actions, listed (--verbose, --output); dry_run_report.py


def _pages(items: Iterator[Contact], size: int) -> Iterator[List[Contact]]:
    it = iter(items)
    while True:
        page = list(islice(it, size))
        if not page:
            return
        yield page


NAMES_CHECKED_KEY = "mapping_names_checked"  # state meta: the properties last found in HubSpot


class Engine:
    """Orchestrates one run: read, map, write, record; consent is decided by its owner (consent/)."""

    def __init__(self, hubspot: HubSpotWriter, mailerlite: MailerLiteClient, state: State, mapping: Mapping,
                 options: RunOptions, on_progress: Optional[Callable[[Counter, Optional[int]], None]] = None,
                 tunables: Tunables = DEFAULTS) -> None:
        self.hubspot = hubspot
        self.mailerlite = mailerlite
        self.state = state
        self.mapping = mapping
        self.options = options
        self.tunables = tunables  # waits, budgets and the wall clock (tunables.py), handed down to the writer
        self.on_progress = on_progress
        self.summary = Summary("incremental", options.dry_run)
        self.writer = SubscriberWriter(mailerlite, tunables=tunables)
        text_limit = state.get_json(TEXT_LIMIT_KEY)
        if isinstance(text_limit, int) and not isinstance(text_limit, bool) and text_limit > 0:
            self.writer.dialect.text_limit = text_limit
        self.schema = MailerLiteSchema(mailerlite, mapping)
        # What the run remembers of every contact it reads, in SQLite (run_scratch.py): never a Python
        # set or dict of them, which would grow with the database.
        self.scratch = RunScratch()
        # The one owner of consent by address (consent/owner.py), called at its named points below.
        self.consent = Consent(hubspot, mailerlite, state, mapping, self.schema, self.summary, self._in_scope,
                               dry_run=options.dry_run, allow_mass_leave=options.allow_mass_leave,
                               sweep_hours=options.consent_sweep_hours, plan=options.plan, tunables=tunables,
                               dry_left=self.scratch.dry_seen, force=options.force)
        # The contact's companies and deals (company.x, deal.x, deals.count in the mapping): associations.py.
        self.associations = Associations(hubspot, state, mapping, dry_run=options.dry_run,
                                         hours=options.associations_hours, lag_ms=tunables.search_lag_ms)
        self._max_modified: Optional[int] = None  # the newest change an incremental run read (its bookmark)
        self._full = False  # this run is a full pass
        self._contact_defs = False  # whether HubSpot's contact property definitions were read
        self._info: Optional[Dict[str, PropertyInfo]] = None  # HubSpot property definitions, fetched lazily
        seen_types = state.get_json(FIELD_TYPES_KEY)
        self._field_types: Dict[str, str] = ({str(k): str(v) for k, v in seen_types.items()}
                                             if isinstance(seen_types, dict) else {})
        self._fields_checked = False
        self._names_checked = False  # the mapping's property names, against what the first page returned
        self._members: Dict[str, Set[int]] = {}
        self._run_id = 0
        self._owners: Dict[str, str] = {}  # email -> HubSpot id owning it, for the current page
        self._page_emails: List[str] = []  # the current page's addresses (their copies read in one query)
        self.total: Optional[int] = None  # contacts this run expects to read, when known
        # MailerLite's listing, when this run compares contacts with it (adoption.py); None otherwise.
        self.copy: Optional[Listing] = None  # kept in the state across runs when long (adoption_listing.py)
        self._waiting = 0  # contacts that wait for the listing to reach their address
        self._started = time.monotonic()
        self._copy_wanted = False  # this run reads the listing when the first contact is compared
        self._first_send_checked = False  # an incremental run asks once whether to read the listing
        # Contacts the state had in step that MailerLite no longer matches, until MailerLite answers
        # their upsert (so no more than the writer holds in flight).
        self._repairing: Set[str] = set()
        self._known_compared = 0  # contacts the state lists that were compared with the listing...
        self._known_missing = 0  # ...and how many of them MailerLite does not hold

    def run(self) -> Summary:
        started = self._started = time.monotonic()
        start_ms = int(self.tunables.wall_clock() * 1000)
        bookmark = self.state.bookmark()
        # A full pass that was interrupted is finished before going incremental again; a mapping no
        # full pass applied yet is applied to every contact (mapping_change.py).
        mapping_changed = mapping_change.needs_full_pass(self.state, self.mapping)
        full = self.options.full or bookmark is None or self.state.full_pass_pending() or mapping_changed is not None
        summary = self.summary
        summary.mode = "full" if full else "incremental"
        self._full = full
        self._run_id = self.state.start_run(summary.mode, self.options.dry_run)
        synced_before = self.state.count_contacts()
        try:
            # Both tokens proven and the state's accounts checked before anything else, idle runs too.
            check_same_accounts(self.state, prove_credentials(self.hubspot, self.mailerlite),
                                record=not self.options.dry_run)
            if mapping_changed and not self.options.full:  # said once the state is known to be these accounts'
                log.info("%s", mapping_change.announcement(mapping_changed, self.options.dry_run))
            self._clamp_future_times(start_ms)
            write_back = self._prepare_write_back(start_ms)
            engagement = self._prepare_engagement(start_ms, scopes_checked=write_back is not None)
            self.associations.prepare(full, start_ms)  # their scopes proven; changed companies and deals found
            if (full or self.mapping.optout_properties != DEFAULT_OPTOUT_PROPERTIES
                    or self.state.get_json(NAMES_CHECKED_KEY) != self._checked_names()):
                # Every property the mapping names exists, before any write (an incremental run checks
                # at its first changed contact, so an idle one spends no request on it, unless the
                # mapping changed since its names were last checked: the run after an edit is usually
                # idle, and a typo must not wait, healthcheck green, for some contact to change).
                self._property_info()
            self.consent.before_pass()  # what earlier runs could not apply comes first
            if full and not self.options.dry_run:
                self.state.set_full_pass_pending(True)
            changed_members = self._load_memberships()
            # A first run, a lost state or --full starts from what MailerLite holds (--force keeps
            # its meaning: re-send everything, so there is nothing to compare).
            self._copy_wanted = full and not self.options.force
            self._sync(full, bookmark, changed_members)
            self._warn_if_state_mismatch()
            # The synced contacts this pass has not read (a full pass's departure candidates; their list
            # is the state's query, made now rather than called back).
            self._say_listing()
            self._keep_text_limit()
            held_back = self.consent.after_pass(full, start_ms, synced_before, self._unseen() if full else [])
            if not self.options.dry_run and held_back is None:
                # After a held-back pass nothing moves on: the next run sees the same departures.
                if self._members:
                    self.state.save_list_members(self._members)
                # Contacts that waited for the listing are read again by the next run, a full pass.
                full_done = full and not self._waiting
                self.state.advance_bookmark(self._new_bookmark(full, bookmark, start_ms), full_pass_done=full_done)
                if full_done:
                    mapping_change.applied(self.state, self.mapping)
                self._listing_done(full)
                self.associations.advance()
            self.consent.sweep(start_ms, full)
            if write_back is not None:
                before = self.hubspot.requests + self.mailerlite.requests
                write_back.run(start_ms)
                summary.add("write_back_requests", self.hubspot.requests + self.mailerlite.requests - before)
            if engagement is not None:
                engagement.run(start_ms)  # an outage there is a warning: the forward result stands
            pending, pending_line = self.consent.pending()
            problems = summary["rejected"] + summary["failed"] + summary["write_back_failed"] + pending
            summary.exit_code = EXIT_PARTIAL if problems else EXIT_OK
            if pending:  # said every run, also when their back-off skipped them, so cron keeps reporting it
                summary.message = pending_line
            if held_back is not None:
                summary.exit_code, summary.message = EXIT_ABORTED, held_back
        except SyncError as exc:
            summary.exit_code, summary.message = exc.exit_code, str(exc)
        except Transient as exc:  # a retry layer gave up somewhere not wrapped above: still an outage
            summary.exit_code, summary.message = EXIT_ABORTED, f"an API kept failing ({exc.reason}); stopped"
        except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: recorded with its own exit code, then on up
            summary.exit_code = getattr(exc, "exit_code", EXIT_INTERRUPTED)
            summary.message = str(exc) or "interrupted (SIGINT)"
            attach(exc, summary)  # --json still tells what was done
            raise
        except Exception as exc:  # a bug: recorded as aborted (no message: it could hold data), then on up
            summary.exit_code, summary.message = EXIT_ABORTED, f"unexpected {exc.__class__.__name__}"
            attach(exc, summary)
            raise
        finally:
            if "consent_pending" not in summary.counts:  # stopped early: --json still tells how many wait
                self.consent.pending()
            if self.copy is not None:
                if not self.options.dry_run:
                    self.copy.note_created(self.summary["created"])
                self.copy.close()
            self.associations.close()
            self.scratch.close()
            summary.duration_seconds = time.monotonic() - started
            summary.hubspot_requests = self.hubspot.requests
            summary.mailerlite_requests = self.mailerlite.requests
            self.state.finish_run(self._run_id, summary.counts, summary.exit_code, summary.message)
        return summary

    def _clamp_future_times(self, start_ms: int) -> None:
        """Times an earlier run stored with its clock ahead are set back (clock_skew.py), so periodic
        work is not put off until that future comes. A dry run changes nothing in the state."""
        if self.options.dry_run:
            return
        hour_ms = 3_600_000
        clamp_future_times(self.state, start_ms, {
            ARCHIVED_KEY: 0,  # when archived contacts were last looked for
            SWEEP_DUE_KEY: int(self.options.consent_sweep_hours * hour_ms),  # when each is next due
            engagement_pass.DUE_KEY: int(self.options.engagement_hours * hour_ms),
            write_back_pass.DUE_KEY: int(self.options.write_back_hours * hour_ms),
        }, self.tunables.consent_retry_max_ms)

    # -- reading ---------------------------------------------------------------------------------
    def _load_memberships(self) -> Set[str]:
        """Members of the lists the mapping uses; returns ids whose membership changed."""
        changed: Set[str] = set()
        self._members = self.consent.list_members(self.mapping.list_ids())
        for list_id, members in self._members.items():
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
            # The synced contacts no longer in the lists are read too: one that left and opted out
            # in the same change must be unsubscribed, not merely found absent (archived ones are
            # not returned, and leave as unseen).
            synced = {int(i) for i in self.state.unseen(self._run_id)}
            returned: Set[str] = set()
            for contact in self.hubspot.read_by_ids((str(i) for i in sorted(members | synced)), props):
                if contact["id"] not in returned:  # a merged-away id may be answered with its merged record
                    returned.add(contact["id"])
                    yield contact
            return  # (members known only by a problem and not returned are forgotten: _problems_missed)
        if full:
            if self.options.count_total:
                self.total = self.hubspot.count_contacts()
            yield from self.hubspot.iter_contacts(props)
            return
        assert bookmark is not None
        # A duplicate whose owner let the address go since (it left, changed address) changed nothing
        # itself: it is read again, and now holds the address.
        extra = set(self.state.failed_ids()) | changed_members | set(self.state.unheld_duplicates())
        for contact in self.hubspot.search_modified_since(bookmark, props):
            if self.total is None and self.hubspot.search_total is not None:
                self.total = self.hubspot.search_total + len(extra)
            extra.discard(contact["id"])
            yield contact
        # Failed last time, joined/left a list, or a duplicate now free (none changes the contact itself).
        if extra:
            # (a merged record answering for a merged-away id came through the search: not read twice)
            yield from self._answered_as_themselves(extra)
            if extra and not self.options.dry_run:
                # Not returned: deleted in HubSpot. One only known by its problem (failed, a duplicate) is
                # forgotten, or it would be read for ever; a failed one's address, which MailerLite may
                # hold, becomes a tombstone (state.py, migration 9) the sweep follows. A synced one
                # leaves by the full pass's evidence, as any other.
                self.state.forget_problems_only(sorted(extra, key=int))
        # Their company or a deal changed, or (the daily pass) their associations did: read by id.
        yield from self.associations.touched(props)

    def _sync(self, full: bool, bookmark: Optional[int], changed_members: Set[str]) -> None:
        try:
            contacts = self.associations.enriched(self._contacts(full, bookmark, changed_members))
            for page in _pages(contacts, self.tunables.state_page):
                self._process_page(page, full)
            if full:
                # Absence from the listing only makes a candidate (consent/evidence.py): each synced contact
                # the pass did not see is read by id; the live ones are processed like any other.
                for page in _pages(self.associations.enriched(self._missed_by_listing()), self.tunables.state_page):
                    self._process_page(page, full)
                for page in _pages(self.associations.enriched(self._problems_missed()), self.tunables.state_page):
                    self._process_page(page, full)
            if not self.options.dry_run:
                self.writer.flush()
            self._settle_written()
        finally:
            # Stopped half-way: what MailerLite answered is still recorded; the consent actions
            # it implies are stored, not tried (the next run applies them).
            self._settle_written(try_now=False)

    def _process_page(self, page: List[Contact], full: bool) -> None:
        if not self._names_checked:
            self._check_names_returned(page)
        ids = [c["id"] for c in page]
        known = self.state.records(ids)
        emails = self._page_emails = [normalise_email(c["properties"].get("email")) for c in page]
        self._owners = self._free_moved_addresses(self.state.owners(emails), page, emails)
        self.consent.page(page, known, emails)
        for contact in page:
            self._process(contact, known.get(contact["id"]))
        self._settle_written()
        if full and not self.options.dry_run:
            self.state.mark_seen(ids, self._run_id)
        elif full:
            self.scratch.dry_seen.update(ids)
        if self.on_progress:
            self.on_progress(self.summary.counts, self.total)

    def _free_moved_addresses(self, owners: Dict[str, str], page: List[Contact], emails: List[str]) -> Dict[str, str]:
        """The state's owners of this page's addresses, without those whose owner HubSpot now shows
        with another address: that address is free, so two contacts that swapped addresses are
        resolved in one run, not reported as duplicates for ever. An owner this run has not read
        is read by id (only when another contact of the page claims its address); one HubSpot
        does not answer as itself keeps its address (no evidence that it let it go)."""
        ids = [c["id"] for c in page]
        self.scratch.remember_addresses(zip(ids, emails))
        claims = dict(zip(emails, ids))
        # Owners another contact of this page claims the address of (rare: usually none, and nothing is asked).
        disputed = {owner for email, owner in owners.items() if claims.get(email) != owner}
        if not disputed:
            return owners
        addresses = self.scratch.addresses_of(disputed)
        unread = sorted(disputed - addresses.keys(), key=int)
        if unread:
            for contact in self.hubspot.read_by_ids(unread, ["email"]):
                if contact["id"] in unread:
                    addresses[contact["id"]] = normalise_email(contact["properties"].get("email"))
            self.scratch.remember_addresses((i, addresses[i]) for i in unread if i in addresses)
        return {email: owner for email, owner in owners.items() if addresses.get(owner, email) == email}

    def _unseen(self) -> List[str]:
        """Synced contacts this full pass has not read (so far). A dry run marks nothing in the state, so
        the state lists every synced contact: streamed a chunk at a time against what it read."""
        if not self.options.dry_run:
            return self.state.unseen(self._run_id)
        unseen: List[str] = []
        for chunk in self.state.unseen_chunks(self._run_id):
            read = self.scratch.dry_seen.among(chunk)  # read by this pass, or left at once (consent's dry_left)
            unseen.extend(i for i in chunk if i not in read)
        return unseen

    def _missed_by_listing(self) -> Iterator[Contact]:
        """The synced contacts the pass did not read, read by id: those HubSpot answers as themselves
        are live (a listing that ended early missed them); the rest are archived, deleted or merged
        away, which the consent owner's after_pass then acts on."""
        if self.mapping.scope_lists:
            return  # a list-scoped full pass read every synced contact by id already (`_contacts`)
        yield from self._answered_as_themselves(set(self._unseen()))

    def _problems_missed(self) -> Iterator[Contact]:
        """Contacts known only by a problem (refused, a duplicate) that this full pass did not read, read
        by id: those HubSpot answers as themselves are processed (out of the scope's lists now, or missed
        by a listing that ended early); the others are deleted or merged away, and forgotten, or their
        problem would hold the address for ever (a departure of another contact with it would take
        nothing) and an address the sync wrote for them would never be a tombstone (migration 13)."""
        if self.options.dry_run:
            return  # it marks nothing seen, and forgetting a problem writes nothing to MailerLite
        wanted = set(self.state.unseen_problems(self._run_id))
        yield from self._answered_as_themselves(wanted)
        if wanted:
            self.state.forget_problems_only(sorted(wanted, key=int))

    def _answered_as_themselves(self, wanted: Set[str]) -> Iterator[Contact]:
        """These contacts read by id (100 a request), those HubSpot answers as themselves yielded and
        taken out of `wanted`, which is left holding the others: deleted, or merged away (a merged-away
        id is answered with its merged record, under that record's id: not it)."""
        if not wanted:
            return
        props = self.mapping.properties() + [MERGED_PROPERTY]
        for contact in self.hubspot.read_by_ids(sorted(wanted, key=int), props):
            if contact["id"] in wanted:
                wanted.discard(contact["id"])
                yield contact

    # -- one contact -------------------------------------------------------------------------------
    def _property_info(self) -> Dict[str, PropertyInfo]:
        if self._info is None:
            try:
                defs = self.hubspot.property_definitions()
            except AuthError:
                # Reading definitions needs crm.schemas.contacts.read; the plain default mapping
                # does without (everything is text), so a token without it still syncs. Said once,
                # not every hour (cron mails every warning).
                if self.mapping.optout_properties != DEFAULT_OPTOUT_PROPERTIES:
                    # Customised opt-out names cannot be verified: a mistyped one would never match,
                    # and those people's opt-outs would be lost without a word (issue 22, item 6).
                    raise AuthError(f"HubSpot rejected the access token: missing scope {SCHEMA_READ_SCOPE}, needed "
                                    f"to verify the names in [consent] optout_properties; add the scope to the "
                                    f"service key or private app (python main.py --check)") from None
                Advisories(self.state, record=not self.options.dry_run).once(SCHEMA_SCOPE_ADVICE, SCHEMA_SCOPE_MESSAGE)
                defs = {}
            else:
                Advisories(self.state, record=not self.options.dry_run).gone(SCHEMA_SCOPE_ADVICE)
            self._info = property_infos(defs)
            self._contact_defs = bool(defs)
            unknown_optouts = [p for p in self.mapping.optout_properties if defs and p not in self._info]
            if unknown_optouts:
                # Opt-outs read from a property that does not exist would be lost without a word.
                raise ConfigError(f"HubSpot has no contact property {', '.join(unknown_optouts)} named in [consent] "
                                  f"optout_properties; fix the mapping file (python main.py --check)")
            missing = [p for p in self.mapping.properties() if p not in self._info]
            if defs and missing:
                # Read as empty, a misspelt property would clear its field for every subscriber.
                raise ConfigError(unknown_names_message("HubSpot has no contact property", missing, defs,
                                                        "fix the mapping file; nothing was written"))
            # The company and deal schemas, their names checked (exit 2 before any write): associations.py.
            self._info.update(self.associations.infos())
            if defs and not self.options.dry_run:
                self.state.set_json(NAMES_CHECKED_KEY, self._checked_names())
        return self._info

    def _checked_names(self) -> List[str]:
        """The names the last check found in HubSpot: the contact properties, then the associated ones."""
        return self.mapping.properties() + self.mapping.associated_names()

    def _check_names_returned(self, page: List[Contact]) -> None:
        """Without crm.schemas.contacts.read the definitions are unknown, so the mapping's names are
        checked against the first page read: HubSpot leaves a requested property that does not exist
        out of its answer, so one that no contact carries at all is a typo (exit 2, before any write).
        Where HubSpot answers such a property as null instead (unconfirmed), this finds nothing."""
        self._names_checked = True
        self._property_info()
        if self._contact_defs or not page:
            return  # the definitions were read: every name was checked against them
        returned: Set[str] = set().union(*(c["properties"].keys() for c in page))
        missing = [p for p in self.mapping.properties() if p not in returned]
        if missing:
            raise ConfigError(unknown_names_message(
                "HubSpot returned no contact property", missing, returned,
                "fix the mapping file; nothing was written (the token lacks crm.schemas.contacts.read, so names "
                "are checked against the contacts read; add the scope to check them against HubSpot's list)"))

    def _map(self, contact: Contact) -> Outcome:
        if self.associations.enabled and not contact.get(ENRICHED):
            self.associations.enrich([contact])  # read outside the pass (consent's reads): its values first
        return map_contact(contact, self.mapping, self._property_info(), self._lists_of(contact["id"]),
                           self._field_types)

    def _process(self, contact: Contact, known: Optional[ContactRecord]) -> None:
        self.summary.add("read")
        hubspot_id, props = contact["id"], contact["properties"]
        if not self._full:  # only an incremental run's bookmark needs the newest change read
            modified = to_epoch_ms(props.get("lastmodifieddate"))
            if modified is not None and (self._max_modified is None or modified > self._max_modified):
                self._max_modified = modified
        email = normalise_email(props.get("email"))
        merged_ids = props.get(MERGED_PROPERTY) or None  # most contacts merged nothing
        outcome = self._map(contact)
        duplicate_of = None
        if isinstance(outcome, Planned):
            owner = self.writer.pending_owner(outcome.email) or self._owners.get(outcome.email)
            # A merged-away record holding this address is taken over by this one (Consent.contact).
            if owner is not None and owner != hubspot_id and owner not in merged_ids_of(merged_ids):
                # Two HubSpot contacts, one address: the first one synced keeps it; this one is
                # reported (--rejected), not silently dropped, until the first one lets it go. Its
                # opt-out still wins.
                duplicate_of = owner
                outcome = Reject(DUPLICATE.format(email=outcome.email, owner=owner), outcome.email,
                                 outcome.opted_out)
        verdict = self.consent.contact(hubspot_id, email, outcome, known, merged_ids,
                                       address_synced=self._address_synced(email))
        known = verdict.known
        if verdict.taken is not None:
            self._owners[email] = hubspot_id
            if self.options.dry_run:
                self.scratch.dry_seen.add(verdict.taken)  # a real run no longer lists it: not a departure
        if isinstance(outcome, (Skip, OutOfScope)):
            self.summary.add("skipped")
            if known is not None and known.email is None and not self.options.dry_run:
                # Only a problem was known (refused, a duplicate, failed), never synced: outside the sync
                # now, there is nothing to report or to read again every run (failed, a duplicate freed).
                self.state.forget(hubspot_id)
            return
        if isinstance(outcome, Reject):
            self._reject(hubspot_id, outcome, known, duplicate_of)
            return
        self._plan(contact, outcome, known, verdict.inactive)

    def _plan(self, contact: Contact, planned: Planned, known: Optional[ContactRecord], inactive: bool) -> None:
        """`inactive`: the consent owner's verdict that MailerLite had the address inactive."""
        hubspot_id = contact["id"]
        fingerprint = planned.fingerprint()
        if known and not self.options.force and known.refused(fingerprint):
            # (an opt-out it carries was sent on its own by the consent owner, when the ledger says it is due)
            self.summary.add("unchanged")  # MailerLite refused this very data: wait for a change
            return
        in_step = (known is not None and not self.options.force and known.fingerprint == fingerprint
                   and known.problem_kind is None)
        if not in_step and not self.options.force and self.copy is None and not self._copy_wanted:
            self._before_first_send()
        held = self._compare(hubspot_id, planned, known, in_step)
        if held is not None and not held.covered:
            held = None  # the listing has not reached its address yet
            # A contact never synced waits for it (sending it would be sending the account blind); an
            # opt-out is delivered at once, and a synced one that changed goes as an hourly run sends it.
            if not in_step and planned.status != "unsubscribed" and (known is None or known.email is None):
                self._waiting += 1
                self.summary.add("waiting")
                return
        if in_step and (held is None or held.same):
            self.summary.add("unchanged")
            return
        if held is not None and held.same:
            self._adopt(hubspot_id, planned, fingerprint, held)
            return
        if inactive and (held is None or held.held is None) and self.consent.not_created_again(
                hubspot_id, planned, listed=held is not None):
            return  # MailerLite no longer holds an address it had as unsubscribed: not made active again
        if self.options.dry_run:
            self.summary.add("would_send")
            if self.options.plan is not None:
                if held is not None and held.extra_groups:  # listed as the real run would leave them
                    held = replace(held, extra_groups=self.consent.removals_on_evidence(hubspot_id, held.extra_groups))
                plan_upsert(self.options.plan, hubspot_id, planned, known, self.mapping, held)
            return
        if not self._fields_checked and self._ensure_fields():
            remapped = self._map(contact)  # the account's field types differ from what was assumed
            if isinstance(remapped, Reject):
                # Refused after all: the consent owner hears of it (an opt-out it carries goes on its own).
                self.consent.contact(hubspot_id, remapped.email, remapped, known)
                self._reject(hubspot_id, remapped, known)
                return
            if not isinstance(remapped, Planned):
                self.summary.add("skipped")
                return
            planned, fingerprint = remapped, remapped.fingerprint()
        if in_step:
            self._repairing.add(hubspot_id)  # edited, moved or deleted in MailerLite: HubSpot's data goes back
        for warning in planned.warnings:
            log.warning("contact %s: %s", hubspot_id, warning)
        # Fields the sync filled before and that are now empty in HubSpot are cleared; fields
        # it never set (a MailerLite form's, say) are never named in the payload.
        previously = known.fields_set if known else frozenset()
        cleared = frozenset(previously & self.mapping.managed_fields) - planned.fields.keys()
        removals: FrozenSet[str] = frozenset()
        if known:
            removals = frozenset(g for g in known.groups_set - set(planned.groups) if self.mapping.manages_group(g))
        if held is not None:
            removals |= held.extra_groups  # positive evidence: the listing shows it there, the mapping says no
        group_ids = self.schema.group_ids(list(planned.groups))
        earlier_failures = known.problem_attempts if known and known.problem_kind == "failed" else 0
        self.writer.add(Pending(hubspot_id, planned.email, planned.payload(cleared, group_ids), fingerprint,
                                frozenset(planned.fields), frozenset(planned.groups), removals,
                                earlier_failures=earlier_failures, opted_out=planned.opted_out))
        self._settle_written()  # recorded as soon as answered: a crash resends only what was in flight

    # -- MailerLite's copy (adoption.py) -----------------------------------------------------------
    def _compare(self, hubspot_id: str, planned: Planned, known: Optional[ContactRecord],
                 in_step: bool) -> Optional[Comparison]:
        """This contact against MailerLite's listing, when this run read it (never under --force)."""
        if self._copy_wanted and self.copy is None:
            self._copy_wanted = False  # read when the first contact needs it: HubSpot answered by then
            self.copy = self._read_listing()
        if self.copy is None or self.options.force:
            return None
        found = self.copy.get(planned.email, page=self._page_emails)
        if found is None and not self.copy.complete:
            # Not read yet (it waits), or a listing that ended incomplete: evidence of nothing, so it
            # is sent as an hourly run sends it (an upsert never makes anyone active again).
            return None if self.copy.settled else NOT_COVERED
        if found is None and known is not None and known.email == planned.email and not self.copy.begun_now and \
                self.copy.begun_before(self.state.synced_at(hubspot_id)):
            return None  # written by the sync after a kept listing began: absent from it, not from MailerLite
        previously = known.fields_set if known and known.email == planned.email else frozenset()
        # A group the mapping names is made now (a dry run only looks): the send would make it anyway.
        group_ids = {name: self.schema.group_id(name, create=not self.options.dry_run) for name in planned.groups}
        held = compare(planned, found, self.mapping, group_ids, previously, in_step,
                       min(TEXT_MAX, self.writer.dialect.text_limit or TEXT_MAX))
        if known is not None and known.fingerprint is not None:
            self._known_compared += 1
            self._known_missing += held.held is None
        log_differences(hubspot_id, held)
        return held

    def _adopt(self, hubspot_id: str, planned: Planned, fingerprint: str, held: Comparison) -> None:
        """MailerLite already holds what the sync would send: recorded as synced, nothing written.
        An unsubscribed, bounced or junk subscriber keeps its status (today's not_reactivated)."""
        assert held.held is not None
        kind = "not_reactivated" if held.held.status in INACTIVE and not planned.opted_out else "adopted"
        # It owns the address now, as a sent contact does: another contact with it is a duplicate.
        self._owners.setdefault(planned.email, hubspot_id)
        if not self.options.dry_run:
            # Recorded at the state's next call (usually the page's end): a transaction a page, not one each.
            self.state.record_later([Result(hubspot_id, planned.email, kind, fingerprint, frozenset(planned.fields),
                                            held.held.subscriber_id, groups_set=frozenset(planned.groups))])
        self.summary.add(kind)

    def _listing_seen(self) -> Callable[[List[Tuple[str, str]]], None]:
        """Where the listing's statuses go as it is read: the consent ledger (consent.seen_in_listing)."""
        return self.consent.seen_in_listing

    def _before_first_send(self) -> None:
        """Before an incremental run sends its first contact, once: is the state to be believed?
        Many changes (a state restored from an old backup, a long outage) are compared with MailerLite's
        listing when reading it costs less than sending them; a state listing far more subscribers than
        MailerLite holds (another account, a wiped one) is not believed: the rest of this run compares
        with the listing, and the next run is a full pass that does so for every contact. One request
        (the count), and only on runs that would send something."""
        if self._first_send_checked:
            return
        self._first_send_checked = True
        synced = self.state.count_contacts()
        many = self.total is not None and self.total >= LISTING_FLOOR
        if synced < MISMATCH_MIN and not many:
            return  # too small a state to judge, too few changes to bother
        total = self.mailerlite.count_subscribers()
        if many and listing_worth_reading(self.total, total):
            log.info("%s contacts changed since the last run: comparing them with MailerLite's listing", self.total)
        elif total is not None and state_mismatch(synced, total):
            log.warning("the state lists %d synced subscribers but MailerLite holds %d: comparing with MailerLite's "
                        "listing instead of trusting the state", synced, total)
            if not self.options.dry_run:
                self.state.set_full_pass_pending(True)
        else:
            return
        self.copy = self._read_listing(total)

    def _read_listing(self, total: Optional[int] = None) -> Listing:
        """MailerLite's listing as far as this run's share of its time allows (adoption_listing.py)."""
        listing = open_listing(self.state.conn, self.state.transaction, self.options.dry_run)
        listing.begin(self.mailerlite, int(self.tunables.wall_clock() * 1000), total)
        listing.read(self.mailerlite, time_for_listing(self._started, self.mailerlite.retry.deadline,
                                                       self.tunables.listing_share, time.monotonic),
                     self._listing_seen())
        return listing

    def _keep_text_limit(self) -> None:
        learnt = self.writer.dialect.text_limit
        if learnt is not None and not self.options.dry_run and self.state.get_json(TEXT_LIMIT_KEY) != learnt:
            self.state.set_json(TEXT_LIMIT_KEY, learnt)

    def _say_listing(self) -> None:
        """One line while the listing is not read to its end (waiting contacts, or an incomplete one)."""
        if self.copy is None or self.copy.complete:
            return
        line = self.copy.incomplete_line() if self.copy.settled else self.copy.progress_line()
        log.warning("%s", line)
        if not self.summary.message:
            self.summary.message = line

    def _listing_done(self, full: bool) -> None:
        """A kept listing goes once the full pass that used it is done (or the incremental run that
        read it needs it no more); while contacts wait for it the next run, a full pass, continues it."""
        if self._waiting:
            self.state.set_full_pass_pending(True)
        elif full or (self.copy is not None and self.copy.settled):
            open_listing(self.state.conn, self.state.transaction, False).clear()

    def _warn_if_state_mismatch(self) -> None:
        if state_mismatch(self._known_compared, self._known_compared - self._known_missing):
            log.warning("MailerLite holds only %d of the %d subscribers the state lists as synced (deleted there, "
                        "or another account): they were compared and created again as needed, not counted as "
                        "departures", self._known_compared - self._known_missing, self._known_compared)

    def _reject(self, hubspot_id: str, reject: Reject, known: Optional[ContactRecord],
                duplicate_of: Optional[str] = None) -> None:
        """Data that cannot be sent, after the consent owner's verdict on it (Consent.contact: an opt-out it
        carries goes on its own; refused data hiding an address change lets the old address go, with
        the opt-out too unless another live contact holds it, and `known` is then None)."""
        fingerprint = reject.fingerprint()
        if known and known.refused(fingerprint):
            # Rejected before with the same data: nothing new to record. A full pass compares every contact,
            # so it counts the contact as still rejected, as --rejected lists it; an hourly run says it once.
            self.summary.add("rejected" if self.summary.mode == "full" else "unchanged")
            return
        self._record([Result(hubspot_id, reject.email, "rejected", fingerprint, reason=reject.reason,
                             duplicate_of=duplicate_of)])

    def _ensure_fields(self) -> bool:
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
            self.state.record(results)
        for r in results:
            self.summary.add(r.kind)
            if r.kind in ("rejected", "failed"):
                log.info("contact %s (%s) %s: %s", r.hubspot_id, r.email, r.kind, r.reason)

    def _address_synced(self, email: str) -> bool:
        return bool(email) and bool(self._owners.get(email) or self.writer.pending_owner(email))

    def _settle_written(self, try_now: bool = True) -> None:
        """Record what MailerLite answered; the consent owner stores the actions the answers imply
        first, and tries them after (unless the run is stopping)."""
        written: List[Written] = self.writer.take_finished()
        if not written:
            return
        settled = self.consent.answered(written)  # the actions they imply stored first
        self._record_answers([result for _, result in settled])
        if try_now:
            self.consent.recorded(settled)

    def _record_answers(self, results: List[Result]) -> None:
        """MailerLite's answers recorded, and the repairs among them counted at once: a run stopped
        while the consent actions they imply are tried has still made them."""
        self._record(results)
        for result in results:
            if result.hubspot_id in self._repairing:
                self._repairing.discard(result.hubspot_id)  # answered: its item is done
                if result.kind in ("created", "updated"):
                    self.summary.add("repaired")

    def _in_scope(self, contact: Contact) -> bool:
        """Whether the mapping keeps this contact in the sync's scope (sent, or reported as refused)."""
        return isinstance(self._map(contact), (Planned, Reject))

    def _prepare_write_back(self, start_ms: int) -> Optional[WriteBack]:
        """Write-back, when on and due, runs after the forward sync, so the bookmark that sync moved
        does not cover the contacts it touches: the next run reads them again, finds their
        MailerLite data unchanged, and sends nothing. Its scopes are checked before anything is
        written, so a missing one stops the run with nothing done (exit 2)."""
        if not (self.options.write_back or self.mapping.write_back):
            return None
        write_back = WriteBack(self.hubspot, self.mailerlite, self.state, self.summary, self.options.write_back_hours,
                               self.options.dry_run)
        if not write_back.due(start_ms):
            return None
        self._require_write_scopes("SYNC_WRITE_BACK")
        return write_back

    def _prepare_engagement(self, start_ms: int, scopes_checked: bool) -> Optional[Engagement]:
        """Engagement, when on and due (or with refused figures to retry), runs last, for the
        reason write-back does; its scopes are checked before anything is written (exit 2)."""
        if not (self.options.engagement or self.mapping.engagement):
            return None
        engagement = Engagement(self.hubspot, self.mailerlite, self.state, self.summary, self.options.engagement_hours,
                                self.options.dry_run)
        if not engagement.wanted(start_ms):
            return None
        if not scopes_checked:  # write-back, when due, asked for the same two scopes a moment ago
            self._require_write_scopes("SYNC_ENGAGEMENT")
        return engagement

    def _require_write_scopes(self, setting: str) -> None:
        """The write scopes, learnt before anything is written (exit 2 when one is missing); scopes
        HubSpot does not tell are found by the first write instead."""
        missing = self.hubspot.missing_write_scopes()
        if missing:
            raise AuthError(f"HubSpot rejected the access token: missing scope {', '.join(missing)} "
                            f"(needed by {setting}; turn it off or add the scope to the service key or private app)")

    # -- bookmark ------------------------------------------------------------------------------------
    def _new_bookmark(self, full: bool, old: Optional[int], start_ms: int) -> int:
        """Never past the run's start (by the earlier of our clock and HubSpot's) minus the lag.

        A full pass lists contacts by id, so only the start time bounds it. An incremental pass
        read changes oldest first, so everything up to the newest one seen is dealt with.
        """
        server_ms = int(self.hubspot.server_time * 1000) if self.hubspot.server_time else start_ms
        ceiling = min(start_ms, server_ms) - self.tunables.search_lag_ms
        if full:
            return ceiling
        # Never back: contacts read by id (a list joined or left, a failed one retried) carry their own,
        # older lastmodifieddate, and the search covered everything up to the old bookmark anyway.
        newest = max((ms for ms in (self._max_modified, old) if ms is not None), default=None)
        return min(newest if newest is not None else ceiling, ceiling)
