"""The one owner of consent by address, called by the engine at a few named points.

HubSpot keeps an opt-out with the address, and a destructive action (an unsubscribe, a group
removal, "left the sync") needs positive evidence about that record. Everything that follows from
those two principles happens behind this class: reading consent by address (by_address.py),
deciding (rules.py, departures.py), acting (actions.py: stored before tried, each action with its
own back-off), the evidence for departures (evidence.py) and the tombstones' sweep (sweep.py).
The engine reads, maps, writes and records; at each point below it hands over what it saw:

  before_pass()             stored opt-outs and group removals whose back-off is over are tried first
  list_members(list_ids)    the lists' members, complete by their size, candidates confirmed
  seen_in_listing(seen)     MailerLite's listing, chunk by chunk as it is read: its statuses kept
  page(page, known, emails) a page read: its addresses' ledger rows; the addresses it lets go of
                            (a new address, a merge) read by address in one batch
  contact(...)              one contact read and mapped, the one call per contact, answered by a
                            Verdict: a merge (the merged-away records leave, or one is taken over),
                            the opt-out it carries, the scope it left, the address it let go of, an
                            opt-out whose very data MailerLite refused in a run before
  not_created_again(...)    asked only when the verdict says MailerLite had the address as
                            unsubscribed, bounced or junk: deleted there since, it is not created
  answered(written)         MailerLite's answers: list-group removals confirmed, the actions they
                            imply stored (their statuses kept in the ledger), returned to record
  recorded(settled)         the answers recorded: the actions they imply tried
  after_pass(...)           stored departures of contacts not back in the sync tried again; archived
                            and unseen contacts leave (with evidence: a full pass reads the unseen
                            ones' archived records by id); the mass-leave guard
  sweep(...)                when due, the tombstones read by address, the opted-out unsubscribed
  pending()                 how many actions still wait (--json consent_pending)

Every piece of evidence about an address (HubSpot's opt-out as read, MailerLite's status as seen in
a listing, an upsert's answer, a refusal to reactivate, write-back's reads, an unsubscribe taken) is
kept in the consent ledger (ledger.py), and the decisions that need it (an unsubscribe due, an
address never made active again) are rules on its row (rules.py). The state (state.py) only
stores: contacts, the ledger, pending actions and their back-off and the tombstones (which its
triggers keep in step with the contacts table; see there).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Callable, Dict, FrozenSet, Iterable, Iterator, List, MutableSet, Optional, Set, Tuple, Union

from ..advisories import Advisories
from ..casting import to_epoch_ms
from ..dry_run_report import PlanReport
from ..errors import AbortRun
from ..hubspot import Contact, HubSpotReader
from ..hubspot_schema import MERGED_PROPERTY, merged_ids
from ..mailerlite import MailerLiteClient
from ..mailerlite_schema import MailerLiteSchema
from ..mapping import Mapping, OutOfScope, Planned, Reject, Skip
from ..retrying import Transient
from ..state import ContactRecord, Result, State, Synced
from ..summary import Summary
from ..tunables import DEFAULTS, Tunables
from ..writer import Pending, Written
from . import rules
from .actions import ConsentWriter
from .archived import archived_optouts
from .by_address import CONSENT_SCOPE_ADVICE, CONSENT_SCOPE_MESSAGE, AddressConsent
from .departures import Departures
from .evidence import confirmed_removals, read_list_members
from .ledger import Ledger
from .sweep import ConsentSweep

log = logging.getLogger(__name__)

# State meta: when archived contacts were last looked for (the daily listing, or a full pass, whose
# unseen contacts include every synced one archived since: read by id, it counts as the daily check).
ARCHIVED_KEY = "archived_checked_ms"
# Why an address MailerLite created again is unsubscribed at once (Consent._kept_unsubscribed).
RECREATED = "created again by MailerLite after it had it as unsubscribed, bounced or junk"


def previous_subscriber(hubspot_id: str, known: Optional[ContactRecord]) -> Optional[Synced]:
    """What MailerLite has of this contact, as the state remembers it (None: never synced)."""
    if known is None or known.email is None:
        return None
    return Synced(hubspot_id, known.email, known.subscriber_id, known.groups_set)


@dataclass(frozen=True)
class Verdict:
    """The consent owner's word on one contact read (Consent.contact): all the engine goes on with."""

    known: Optional[ContactRecord]  # what the sync has of the contact now; None: it let go of its previous
    # address (the new one is a new subscriber) or was never synced
    taken: Optional[str] = None  # the merged-away record whose subscriber it took over
    inactive: bool = False  # MailerLite was last seen holding its address inactive (not_created_again)


class Consent:
    """One run's consent by address. `in_scope(contact)`: whether the mapping keeps a contact read
    from HubSpot in the sync's scope (the engine maps it), for "another live contact holds it"."""

    def __init__(self, hubspot: HubSpotReader, mailerlite: MailerLiteClient, state: State, mapping: Mapping,
                 schema: MailerLiteSchema, summary: Summary, in_scope: Callable[[Contact], bool], *,
                 dry_run: bool = False, allow_mass_leave: bool = False, sweep_hours: float = 24.0,
                 plan: Optional[PlanReport] = None, tunables: Tunables = DEFAULTS,
                 dry_left: Optional[MutableSet[str]] = None, force: bool = False) -> None:
        self.hubspot = hubspot
        self.state = state
        self.mapping = mapping
        self.summary = summary
        self.in_scope = in_scope
        self.dry_run = dry_run
        self.force = force  # --force: refused data is sent again, its opt-out with it
        self.sweep_hours = sweep_hours
        self.plan = plan
        self.tunables = tunables
        self.mailerlite = mailerlite
        self.ledger = Ledger(state, dry_run, tunables.wall_clock)
        self.writer = ConsentWriter(mailerlite, state, schema, summary, self.ledger, tunables)
        self.by_address = AddressConsent(hubspot, mapping.optout_properties)
        self.departures = Departures(state, mapping, self.writer, summary, self._held_in_hubspot, self.ledger,
                                     dry_run, allow_mass_leave, self.by_address.opted_out, dry_left)
        self.departures.plan = plan
        self._unproven_lists: Set[str] = set()  # lists whose listing this run could not prove complete

    @property
    def dry_left(self) -> MutableSet[str]:
        """Contacts a dry run counted as leaving at once (a merge, say): a dry full pass's end must
        not count them again as unseen."""
        return self.departures.dry_left

    # -- before the pass -------------------------------------------------------------------------
    def before_pass(self) -> None:
        """Opt-outs and group removals earlier runs could not apply come first (a dry run tries nothing:
        its plan lists them). Stored departures wait for after_pass (departures.retry_pending)."""
        self.departures.retry_pending(departures=False)

    def list_members(self, list_ids: Iterable[str]) -> Dict[str, Set[int]]:
        """Each list's members, complete by its size, with every synced contact the listing missed
        kept unless HubSpot confirms for that record that it left (evidence.py)."""
        return read_list_members(self.hubspot, list_ids, self.state.list_members, self._synced_ids,
                                 self.tunables.list_reads, self._unproven_lists)

    def _synced_ids(self, ids: Set[int]) -> Set[int]:
        return {int(s.hubspot_id) for s in self.state.synced(str(i) for i in sorted(ids))}

    # -- a page, a contact -----------------------------------------------------------------------
    def page(self, page: List[Contact], known: Dict[str, ContactRecord], emails: List[str]) -> None:
        """A page read. The addresses it lets go of (a new address, a merge) are read by address in one
        batch, a hundred per request, rather than one request each as they leave; a dry run reads
        them too, as the real run would."""
        self.departures.new_page(emails)
        for contact, email in zip(page, emails):  # HubSpot's time of each opt-out read (rules.unsubscribe_due)
            props = contact["properties"]
            if email and self.mapping.opted_out(props):
                self.ledger.opted_out_at(email, to_epoch_ms(props.get("lastmodifieddate")))
        merged = [i for c in page for i in merged_ids(c["properties"].get(MERGED_PROPERTY))]
        leaving = [s.email for s in self.state.synced(merged)]
        leaving += [k.email for c in page for k in [known.get(c["id"])] if k and k.email]
        held = set(emails)
        let_go = [e for e in leaving if e not in held]
        if let_go:
            self.by_address.opted_out(let_go)

    def contact(self, hubspot_id: str, email: str, outcome: Union[Planned, Reject, Skip, OutOfScope],
                known: Optional[ContactRecord], merged_ids: Optional[str] = None, address_synced: bool = False,
                ) -> Verdict:
        """One contact read and mapped (a duplicate comes as its Reject): the one consent call the engine
        makes for it. In order: a merge (`merged_ids`: the merged-away records leave, or the one with this
        address is taken over, whose row the contact goes on from; a dry run takes nothing over but says
        so too, to forecast it), the opt-out and departures the outcome implies (`read`), and an
        opted-out contact whose very data MailerLite refused before gets its unsubscribe on its own.
        `email`: the record's address as read; `address_synced`: another contact brought it in."""
        taken = None
        if merged_ids:
            taken = self.departures.apply_merge(hubspot_id, email, merged_ids, outcome.opted_out)
            if taken is not None:  # (a dry run took nothing over: it reads the old row)
                known = self.state.records([hubspot_id]).get(hubspot_id) or self.state.records([taken]).get(taken)
        if self._read(hubspot_id, outcome, previous_subscriber(hubspot_id, known), address_synced) \
                and not isinstance(outcome, (Skip, OutOfScope)):
            known = None  # a new address: the old one has left the sync; the new one is a new subscriber
        if isinstance(outcome, Planned) and outcome.opted_out and known is not None and not self.force:
            # An opt-out no upsert will carry, as the contact's data is what the state already holds:
            fingerprint = outcome.fingerprint()
            if not self.dry_run and known.refused(fingerprint):
                # data MailerLite refused before (the refusal was recorded before, so a run killed in
                # between cannot leave it undelivered), or...
                self.departures.refused(hubspot_id, outcome.email, "by MailerLite, in an earlier run")
            elif known.email == outcome.email and known.fingerprint == fingerprint \
                    and self.ledger.opted_out_again(outcome.email):
                # ...data MailerLite has as mapped, with an opt-out newer than the one delivered.
                self.departures.optout(hubspot_id, outcome.email, "opted out again in HubSpot since the "
                                       "sync's last unsubscribe", evidenced=True)
        inactive = isinstance(outcome, Planned) and self.ledger.never_made_active(outcome.email)
        return Verdict(known, taken, inactive)

    def _read(self, hubspot_id: str, outcome: Union[Planned, Reject, Skip, OutOfScope], previous: Optional[Synced],
             address_synced: bool = False) -> bool:
        """One contact read and mapped (a duplicate of an address another contact holds comes as its
        Reject); every outcome carries its opt-out. `previous`: what MailerLite has of it;
        `address_synced`: another contact brought its address in. Returns whether the contact let go
        of its previous address (its old address has then left the sync, its consent read by address
        and kept as a tombstone; the new one is a new subscriber). HubSpot's opt-out as read goes in
        the ledger after the decisions, which are made on what the ledger held before."""
        opted_out = outcome.opted_out
        let_go = False
        if isinstance(outcome, (Skip, OutOfScope)):
            self.departures.out_of_scope(hubspot_id, outcome, previous, address_synced)
        else:
            if isinstance(outcome, Reject):
                if opted_out:  # data that cannot be sent: the opt-out it carries is delivered on its own first
                    self.departures.refused(hubspot_id, outcome.email, outcome.reason)
            else:
                self.departures.in_scope(hubspot_id, outcome.email, opted_out)
            if previous is not None and previous.email != outcome.email:
                # A new address (or refused data hiding one): the old address leaves the sync, with the
                # opt-out too when the contact opted out (unless another live contact holds it).
                self.departures.email_changed(previous, opted_out)
                let_go = True
        if not isinstance(outcome, Skip):
            self.ledger.read(outcome.email, opted_out)
        return let_go

    # -- MailerLite's answers --------------------------------------------------------------------
    def answered(self, written: List[Written]) -> List[Written]:
        """MailerLite's answers: the consent actions they imply are stored, and returned as the engine
        is to record them (the answers' statuses are kept in the ledger). The actions are stored BEFORE
        the engine records the answers: a run killed in between leaves an action to apply (harmless to
        repeat), never a recorded answer whose action is lost (a rejected opt-out or a group to leave
        would then read "unchanged"). `recorded` tries them after, unless the run is stopping."""
        settled = [(item, self._kept_unsubscribed(item, result)) for item, result in self._evidenced(written)]
        for item, result in settled:
            self._implied(item, result, try_now=False)
        # What was sent, and what MailerLite answered it holds.
        self.ledger.answered((result, item.opted_out) for item, result in settled)
        return settled

    def recorded(self, settled: List[Written]) -> None:
        """The answers are recorded: the actions they imply are tried (not when the run is stopping, an
        outage, a refused account, SIGTERM: then they stay stored for the next run)."""
        for item, result in settled:
            self._implied(item, result, try_now=True)

    def _evidenced(self, written: List[Written]) -> List[Written]:
        """Group removals rest on positive evidence: leaving the group of a list whose listing this run
        could not prove complete needs the contact's own memberships to say so (evidence.py); one
        batch read for the answers at hand, before anything they imply is stored."""
        unproven = self._unproven_groups()
        wanted = [(item.hubspot_id, item.removals) for item, result in written
                  if item.removals & unproven.keys() and result.kind in ("created", "updated")]
        if not wanted:
            return written
        kept = confirmed_removals(self.hubspot, wanted, unproven)
        return [(replace(item, removals=kept[item.hubspot_id]) if item.hubspot_id in kept else item, result)
                for item, result in written]

    def _unproven_groups(self) -> Dict[str, FrozenSet[str]]:
        """Group name -> the lists behind it whose listing this run could not prove complete."""
        unproven = {name: frozenset(lid for lid, n in self.mapping.list_groups
                                    if n == name and lid in self._unproven_lists)
                    for _, name in self.mapping.list_groups}
        return {name: lists for name, lists in unproven.items() if lists}

    def removals_on_evidence(self, hubspot_id: str, groups: FrozenSet[str]) -> FrozenSet[str]:
        """The group removals a dry run's plan lists: those the real run would make (_evidenced)."""
        unproven = self._unproven_groups()
        if not groups & unproven.keys():
            return groups
        return confirmed_removals(self.hubspot, [(hubspot_id, groups)], unproven)[hubspot_id]

    def _implied(self, item: Pending, result: Result, try_now: bool) -> None:
        self.departures.written(item.hubspot_id, item.email, result.kind, result.subscriber_id, item.removals,
                                item.opted_out, result.reason, try_now=try_now)
        if result.kind == "not_reactivated" and result.reason == RECREATED:
            self.departures.optout(item.hubspot_id, item.email, RECREATED, try_now=try_now)
        if result.kind in ("created", "updated") and item.opted_out \
                and not rules.unsubscribe_shown(result.mailerlite_status):
            # The upsert carried the opt-out, but MailerLite answered the subscriber still active: no delivery.
            # The answer is the evidence (the ledger may still say an earlier unsubscribe was delivered).
            self.departures.optout(item.hubspot_id, item.email, "opted out; MailerLite answered the upsert still "
                                   f"holding the subscriber as {result.mailerlite_status}", try_now, evidenced=True)

    def not_created_again(self, hubspot_id: str, planned: Planned, listed: bool) -> bool:
        """An address the ledger last saw inactive (unsubscribed, bounced, junk) that MailerLite no longer
        holds (deleted there since) is not created again, which would make it active: nothing is written
        and the unsubscribe stands. `listed`: this run's listing, read, lacks the address; otherwise
        (an hourly run) MailerLite is asked about that one address (GET by address) before anything is
        sent: held, its status is kept and the contact is sent as usual (an update keeps an inactive
        status; an active one means the person signed up again there). An opted-out contact goes as
        unsubscribed anyway. A lookup that fails sends it: its answer is then the evidence
        (_kept_unsubscribed)."""
        if planned.opted_out or not self.ledger.never_made_active(planned.email):
            return False
        if not listed:
            try:
                held = self.mailerlite.find_subscriber(planned.email)
            except (Transient, AbortRun) as exc:
                log.info("contact %s: MailerLite's subscriber %s could not be looked up (%s); sent as usual",
                         hubspot_id, planned.email, getattr(exc, "reason", exc))
                return False
            if held is not None:
                self.ledger.seen([(planned.email, str(held.get("status") or ""))], rules.UPSERT)
                return False
        log.info("contact %s: MailerLite no longer holds %s, which it had as unsubscribed, bounced or junk; "
                 "not created again", hubspot_id, planned.email)
        self.summary.add("not_reactivated")
        return True

    def _kept_unsubscribed(self, item: Pending, result: Result) -> Result:
        """MailerLite created (active) an address the state knows it had as unsubscribed, bounced or
        junk: deleted there since, and an hourly run cannot see that before it sends. The answer is
        the evidence; the address is unsubscribed again at once and stays known as not reactivated."""
        if result.kind != "created" or item.opted_out or not self.ledger.never_made_active(item.email):
            return result
        log.warning("contact %s: MailerLite created %s again although it had it as unsubscribed, bounced or junk "
                    "(deleted there since); unsubscribing it again", item.hubspot_id, item.email)
        # Its "active" is the sync's own doing, no sign the person signed up again: not kept in the ledger.
        return replace(result, kind="not_reactivated", reason=RECREATED, mailerlite_status=None)

    def seen_in_listing(self, seen: List[Tuple[str, str]]) -> None:
        """MailerLite's listing, a chunk at a time: (address, status) of each subscriber it holds, kept
        in the consent ledger (ledger.seen_in_mailerlite; a dry run keeps nothing)."""
        self.ledger.seen(seen, rules.LISTING)

    # -- after the pass --------------------------------------------------------------------------
    def after_pass(self, full: bool, start_ms: int, synced_before: int, unseen: List[str]) -> Optional[str]:
        """Contacts gone from HubSpot (archived, merged away) or from the synced lists leave, then the
        departures held until now are applied, unless the mass-leave guard stops them: its line is
        returned, and nothing moves on (the next run sees the same departures). `unseen`: the synced
        contacts this full pass has not read."""
        self.ledger.flush()  # the last page's readings
        self.departures.apply_seen_departures()  # a new address's or a merge's, before the unseen are read
        # Departures stored by earlier runs, now that this pass has voided those of contacts back in the sync.
        self.departures.retry_pending(departures=True)
        archived_checked = self._leave_departed(full, start_ms, unseen)
        held_back = self.departures.apply_held_departures(synced_before)
        if archived_checked and held_back is None and not self.dry_run:
            self.state.set_json(ARCHIVED_KEY, start_ms)
        return held_back

    def _leave_departed(self, full: bool, start_ms: int, unseen: List[str]) -> bool:
        """Contacts gone from HubSpot (archived, merged away) or from the synced lists are found and
        handed to departures.gone (which makes them leave). Returns whether the archived ones were looked for.
        The archived records' opt-outs are read with them: an opt-out then a delete between two runs
        (without the consent scope, the only way to know it)."""
        opted_out: Set[str] = set()
        if full:
            # A dry run counts these too, and meets the mass-leave guard as the real run would.
            # Read by id a moment ago and not answered as themselves: archived, deleted or merged away;
            # their archived records are read by id, not the whole archived listing (archived.py).
            gone = self.state.synced(unseen)
            if gone:
                opted_out = archived_optouts(self.hubspot, (s.hubspot_id for s in gone), self.mapping)
            self.departures.gone(gone, "no longer in HubSpot or the synced lists", frozenset(opted_out))
            return True
        # A dry run reads the archived contacts when a real run would, and so meets the mass-leave
        # guard and counts the departures as it would (it records nothing: the check stays due).
        last = self.state.get_json(ARCHIVED_KEY)
        if isinstance(last, int) and start_ms - last < self.tunables.archived_check_ms:
            return False
        gone = self.state.synced(self._archived_ids(opted_out))
        self.departures.gone(gone, "archived in HubSpot", frozenset(opted_out))
        return True

    def _archived_ids(self, opted_out: Set[str]) -> Iterator[str]:
        """Every archived contact's id (the listing, a page at a time: the daily check knows no
        candidates); those opted out are added to `opted_out`. Contacts known only by a problem are
        forgotten as they are listed (a dry run keeps them): deleted, their problem must not hold the
        address for ever (a departure of another contact with it would take nothing), and an address
        the sync wrote for them becomes a tombstone (state migration 13)."""
        chunk: List[str] = []
        for contact in self.hubspot.iter_contacts(["email", *self.mapping.optout_properties], archived=True):
            if self.mapping.opted_out(contact["properties"]):
                opted_out.add(contact["id"])
            chunk.append(contact["id"])
            if len(chunk) >= 500:
                self._forget_problems(chunk)
                chunk = []
            yield contact["id"]
        self._forget_problems(chunk)

    def _forget_problems(self, ids: List[str]) -> None:
        if ids and not self.dry_run:
            self.state.forget_problems_only(ids)

    def _held_in_hubspot(self, synced: Synced) -> bool:
        """One HubSpot search: another live contact with the address that the mapping keeps in scope."""
        for contact in self.hubspot.contacts_with_email(synced.email, self.mapping.properties()):
            if contact["id"] != synced.hubspot_id and self.in_scope(contact):
                return True
        return False

    # -- the sweep, and what still waits -----------------------------------------------------------
    def sweep(self, start_ms: int, full: bool) -> None:
        """When due (every `sweep_hours`, and on every --full), the tombstones read by address and the
        opted-out ones unsubscribed. A token without the consent scope falls back to the records'
        opt-outs: said once, not hourly."""
        sweep = ConsentSweep(self.by_address, self.state, self.writer, self.summary, self.sweep_hours,
                             self.dry_run, self.plan)
        if sweep.due(start_ms, full):
            sweep.run(start_ms)
        if self.by_address.down:
            sweep.due_next_run(start_ms)
        advisories = Advisories(self.state, record=not self.dry_run)
        if self.by_address.available is False:
            advisories.once(CONSENT_SCOPE_ADVICE, CONSENT_SCOPE_MESSAGE)
        elif self.by_address.available:
            advisories.gone(CONSENT_SCOPE_ADVICE)

    def pending(self) -> Tuple[int, str]:
        """How many consent actions still wait (counted as consent_pending), with the line a run says
        about them every time, also when their back-off skipped them, so cron keeps reporting it."""
        pending = self.state.count_pending_actions()
        self.summary.add("consent_pending", pending)
        line = (f"{pending} consent action(s) (unsubscribe or group removal) still pending: MailerLite has not "
                f"taken them yet") if pending else ""
        return pending, line
