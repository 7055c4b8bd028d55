"""One run's departures and opt-outs, decided by the rules (rules.py) and applied by the consent
writer (actions.py): what MailerLite must be told about each contact the engine read, and when.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Callable, Dict, FrozenSet, Iterable, List, MutableSet, Optional, Set, Tuple, Union

from ..dry_run_report import LEAVE, LEAVE_GROUPS, UNSUBSCRIBE, PlanReport
from ..hubspot_schema import merged_ids as merged_record_ids
from ..mapping import Mapping, OutOfScope, Skip, email_problem
from ..state import PendingAction, State, Synced
from ..summary import Summary
from .actions import ConsentWriter
from .ledger import Ledger
from .rules import (
    Leaving,
    group_removal,
    leave_action,
    mass_leave_problem,
    merge_plan,
    merged_action,
    needs_address_check,
    optout_action,
)

log = logging.getLogger(__name__)

RETRIED = "stored by an earlier run, tried again"  # a dry run's plan: an action MailerLite has not taken yet


class Departures:
    """One run's consent and departures, decided by the rules (rules.py) and applied by ConsentWriter.

    The consent owner (owner.py) hands over what the engine read (a contact in scope, out of scope,
    refused, merged, gone); this decides what MailerLite must be told and when. Departures read from
    absence or scope wait for the end of the pass (`apply_held_departures`), where the mass-leave
    guard may hold them all.
    """

    def __init__(self, state: State, mapping: Mapping, consent: ConsentWriter, summary: Summary,
                 held_in_hubspot: Callable[[Synced], bool], ledger: Ledger, dry_run: bool = False,
                 allow_mass_leave: bool = False,
                 optouts_by_address: Optional[Callable[[Iterable[str]], Optional[Set[str]]]] = None,
                 dry_left: Optional[MutableSet[str]] = None) -> None:
        self.state = state
        self.ledger = ledger  # the consent ledger: whether an unsubscribe is due (rules.unsubscribe_due)
        self.mapping = mapping
        self.consent = consent
        self.summary = summary
        self.held_in_hubspot = held_in_hubspot  # one HubSpot search: another live in-scope contact has it
        self.dry_run = dry_run
        self.allow_mass_leave = allow_mass_leave
        # HubSpot's consent by address (by_address.AddressConsent.opted_out): None, or an answer
        # of None (no scope), falls back to the records' opt-out properties.
        self.optouts_by_address = optouts_by_address
        self._leaving: List[Leaving] = []
        # Departures seen directly (a new address, a merge) that only leave groups: applied after the pass,
        # when the state knows every contact the run read, so who holds the address needs no HubSpot
        # search each (a domain move of 50,000 addresses would spend hours on them).
        self._after_pass: List[Leaving] = []
        self._dry_sent: Set[str] = set()  # addresses a dry run's plan unsubscribed (current page)
        # (contact, email) -> unsubscribes: the departures pending for the current page's addresses
        self._departing: Dict[Tuple[str, str], bool] = {}
        self.plan: Optional[PlanReport] = None  # a dry run's listing, when asked for (the owner sets it)
        # Contacts a dry run counted as leaving at once (a merge, say): the real run forgets them then, so
        # the end of a dry full pass must not count them again as unseen. The engine hands a set kept in
        # SQLite (run_scratch.py): a dry run over a million contacts must not grow with them.
        self.dry_left: MutableSet[str] = set() if dry_left is None else dry_left
        # Departures a dry run found back in the sync (the real run voids them): not listed as retried.
        self._dry_back: Set[Tuple[str, str]] = set()

    def retry_pending(self, departures: bool) -> None:
        """What earlier runs stored and could not apply, whose back-off is over, is tried again; a dry
        run's plan lists it. Opt-outs and group removals go before the pass; departures after it, once
        the run has read which of those contacts are back in the sync (their departures are then void:
        a departure acts on what an earlier run read, and nothing is left or unsubscribed on stale
        evidence)."""
        if not self.dry_run:
            self.consent.retry_pending(departures)
        elif self.plan is not None:
            for action in self.consent.due(departures):
                if (action.hubspot_id, action.email) not in self._dry_back:
                    self._plan_action(action, f"{action.reason}; {RETRIED}")

    def new_page(self, emails: List[str]) -> None:
        self.ledger.new_page(emails)
        self._dry_sent = set()
        self._departing = self.state.departing(emails)

    # -- what the engine read (handed over by the owner) ---------------------------------------
    def in_scope(self, hubspot_id: str, email: str, opted_out: bool) -> None:
        unsubscribes = self._departing.get((hubspot_id, email))
        if unsubscribes is not None and not (unsubscribes and opted_out):
            # Back in the sync with this address before MailerLite took its departure: void now (it
            # would be tried after this pass), not only once written again, or an unchanged contact
            # would be taken out of its groups and forgotten, then created again. One that unsubscribes
            # a contact read opted out is kept: nothing says MailerLite has the opt-out yet.
            if self.dry_run:
                self._dry_back.add((hubspot_id, email))
            else:
                self.consent.back_in_sync(hubspot_id, email)
            del self._departing[(hubspot_id, email)]

    def refused(self, hubspot_id: str, email: str, reason: str, try_now: bool = True) -> None:
        """The full upsert of an opted-out contact cannot be sent or was refused."""
        self.optout(hubspot_id, email, f"opted out; the data was refused ({reason})", try_now)

    def out_of_scope(self, hubspot_id: str, outcome: Union[Skip, OutOfScope], synced: Optional[Synced],
                     address_synced: bool) -> None:
        """Not to be synced (out of scope, or no address). `synced`: what MailerLite has of it."""
        opted_out = outcome.opted_out
        if synced is not None:  # it was synced before: it has left the sync's scope
            # An opt-out is applied whatever the scope, at once (never held by the guard).
            self.leave(Leaving(synced, outcome.reason, opted_out, guarded=not opted_out,
                               holds_address=isinstance(outcome, OutOfScope)))
        elif isinstance(outcome, OutOfScope) and opted_out and (address_synced or self.ledger.written(outcome.email)):
            # Never synced itself, but the sync wrote its address (another contact brought it in, or one
            # it let go of had it): the opt-out wins.
            self.optout(hubspot_id, outcome.email, "opted out (out of scope; the address is synced)")
        # Otherwise nothing: nobody outside the sync's scope is created in MailerLite, not even as
        # unsubscribed. If the address is in MailerLite from elsewhere, that source owns its consent.

    def email_changed(self, synced: Synced, opted_out: bool = False) -> None:
        self.leave(Leaving(synced, "the email address changed", opted_out, guarded=False, holds_address=False))

    def apply_merge(self, hubspot_id: str, email: str, merged_ids: Optional[str],
                    opted_out: bool = False) -> Optional[str]:
        """A merge: the merged-away records leave, or one is taken over by this record (its id returned;
        a dry run changes nothing but returns it too, so it forecasts the take-over). When the merged
        record is opted out, the other addresses that leave get the opt-out too (the same person)."""
        others = [i for i in merged_record_ids(merged_ids) if i.isdigit() and i != hubspot_id]
        if others and not self.dry_run:
            # Merged-away records known only by a problem (refused, a duplicate) are gone from HubSpot:
            # forgotten, so an address the sync wrote for them is followed as a tombstone (migration 13).
            self.state.forget_problems_only(others)
        old = self.state.synced(others)
        if not old:
            return None
        taken, leaving = merge_plan(hubspot_id, email, old)
        for synced in leaving:
            self.leave(Leaving(synced, f"merged into contact {hubspot_id}", opted_out, guarded=False,
                               holds_address=False))
        if taken is None:
            return None
        log.info("contact %s takes over subscriber %s (%s) of merged contact %s", hubspot_id, taken.subscriber_id,
                 email, taken.hubspot_id)
        if not self.dry_run:
            # Its stored actions go to the new record, each merged with one stored there for the address
            # by the one merge rule (nothing either still had to do is lost).
            moved = [merged_action(self.state.stored_action(hubspot_id, a.email), replace(a, hubspot_id=hubspot_id))
                     for a in self.state.actions_of(taken.hubspot_id)]
            self.state.take_over(taken.hubspot_id, hubspot_id, moved)
        return taken.hubspot_id

    def written(self, hubspot_id: str, email: str, kind: str, subscriber_id: Optional[str],
                removals: FrozenSet[str], opted_out: bool, reason: str, try_now: bool = True) -> None:
        """After MailerLite answered an upsert: groups to leave, or an opt-out its refusal left behind."""
        if kind in ("created", "updated") and removals:
            self._act(group_removal(hubspot_id, email, subscriber_id, removals), try_now)
        elif kind in ("rejected", "failed") and opted_out:
            # Failed (tried again next run, up to a bound) or rejected: the opt-out does not wait for it.
            self.optout(hubspot_id, email, f"opted out; MailerLite did not take the data ({reason})", try_now)

    def gone(self, synced: List[Synced], reason: str, opted_out: FrozenSet[str] = frozenset()) -> None:
        """Synced contacts found missing: not listed by a full pass, or archived (`opted_out`: ids
        whose archived record carries an opt-out; applied at once, never held by the guard)."""
        for one in synced:
            optout = one.hubspot_id in opted_out
            self.leave(Leaving(one, reason, optout, guarded=not optout))

    # -- deciding and applying --------------------------------------------------------------------
    def optout(self, hubspot_id: str, email: str, reason: str, try_now: bool = True, evidenced: bool = False) -> None:
        """The unsubscribe on its own (email and status), unless the ledger shows this opt-out already
        delivered (rules.unsubscribe_due: from the address's evidence, never from a contact id).
        `evidenced`: an answer at hand shows it not delivered, whatever the ledger held before."""
        due = evidenced or self.ledger.unsubscribe_due(email)
        if email_problem(email) or email in self._dry_sent or not due:
            return  # an address MailerLite could never take, or already delivered
        if self.dry_run:  # reported as the real run would send it (once per address, as there)
            if self.plan is not None:
                self.plan.add(UNSUBSCRIBE, email, hubspot_id, detail=reason)
            self.summary.add("would_send")
            self._dry_sent.add(email)
            return
        if try_now:  # (only stored: said when it is tried)
            log.info("contact %s (%s): %s; unsubscribed on its own", hubspot_id, email, reason)
        self._act(optout_action(hubspot_id, email, reason), try_now)  # taken: the ledger says so (actions.py)

    def leave(self, leaving: Leaving) -> None:
        if leaving.guarded:
            self._leaving.append(leaving)  # a dry run too: it must meet the guard the real run meets
        elif self.dry_run:
            self.summary.add("left_scope")
            self._plan_leave(leaving)
            self.dry_left.add(leaving.synced.hubspot_id)
        elif self.mapping.on_leave == "remove_from_groups":
            leaving = self._address_consent(leaving)  # read now: the page's let-go addresses were read at once
            if leaving.opted_out:
                self._apply_leave(leaving, consent_read=True)
            else:
                self._after_pass.append(leaving)
        else:
            self._apply_leave(leaving)

    def apply_seen_departures(self) -> None:
        """The departures seen directly that waited for the end of the pass (never held by the guard):
        first after the pass, so a full pass does not count their contacts again as unseen."""
        waiting, self._after_pass = self._after_pass, []
        for one in waiting:
            self._apply_leave(one, ask_hubspot=False, consent_read=True)

    def apply_held_departures(self, synced_before: int) -> Optional[str]:
        """Apply the held departures, unless the mass-leave guard stops them (its line returned). (The
        owner applies the departures seen directly first: apply_seen_departures.)"""
        leaving, self._leaving = self._leaving, []
        by_address = self._opted_out_addresses(one.synced.email for one in leaving)  # a hundred per request
        problem = mass_leave_problem(len(leaving), synced_before, self.mapping, self.allow_mass_leave)
        if problem is not None:
            self.summary.add("mass_leave_held", len(leaving))
            for one in leaving:  # an opt-out is evidence about that address: it goes though the leaving waits
                if one.synced.email in by_address:
                    self.optout(one.synced.hubspot_id, one.synced.email, "opted out in HubSpot (address)")
                else:
                    self._plan_leave(one, "held back by the mass-leave guard")
            return problem
        for one in leaving:
            if self.dry_run:
                self.summary.add("left_scope")
                self._plan_leave(one)
            else:
                self._apply_leave(one)
        return None

    def _plan_leave(self, leaving: Leaving, held: str = "") -> None:
        """A departure a dry run would apply, as on_leave makes it (before the one HubSpot search
        that may find another live contact holding the address: then groups only)."""
        if self.plan is None or not self.dry_run:
            return
        action = leave_action(self._address_consent(leaving), self.mapping, address_held=False)
        self._plan_action(action, "; ".join(part for part in (leaving.reason, held) if part))

    def _plan_action(self, action: PendingAction, detail: str) -> None:
        assert self.plan is not None
        kind = UNSUBSCRIBE if action.unsubscribe else LEAVE_GROUPS if action.groups else LEAVE
        self.plan.add(kind, action.email, action.hubspot_id, left=action.groups, detail=detail)

    def _act(self, action: PendingAction, try_now: bool) -> bool:
        if try_now:
            return self.consent.apply(action)
        self.consent.store(action)  # stopping: kept for the next run, not tried now
        return False

    def _opted_out_addresses(self, emails: Iterable[str]) -> Set[str]:
        """Of these addresses, those HubSpot's consent by address says are opted out (empty without it)."""
        if self.optouts_by_address is None:
            return set()
        return self.optouts_by_address(emails) or set()

    def _address_consent(self, leaving: Leaving) -> Leaving:
        """Consent belongs to the address: read before it is let go (deleted, merged away, changed,
        out of scope), and an opted-out address is unsubscribed whoever else holds it. A dry run's
        plan reads it too, so it lists the unsubscribe the real run makes."""
        if not (leaving.opted_out and leaving.holds_address) and \
                leaving.synced.email in self._opted_out_addresses([leaving.synced.email]):
            return replace(leaving, opted_out=True, holds_address=True,
                           reason=f"{leaving.reason}; the address is opted out in HubSpot")
        return leaving

    def _apply_leave(self, leaving: Leaving, ask_hubspot: Optional[bool] = None, consent_read: bool = False) -> None:
        if not consent_read:
            leaving = self._address_consent(leaving)
        # HubSpot is searched for an unsubscribe, or a departure seen directly (a merge, a new address)
        # applied during the pass (the contact holding the address may come later in it); one applied
        # after the pass needs only the state (every contact the run read is recorded in it, problems
        # included), not a search per contact leaving.
        if ask_hubspot is None:
            ask_hubspot = leaving.opted_out or self.mapping.on_leave == "unsubscribe" or not leaving.guarded
        action = leave_action(leaving, self.mapping, address_held=False)
        # Only a departure that takes something (an unsubscribe, a managed group) asks who holds the address.
        held = (action.unsubscribe or bool(action.groups)) and needs_address_check(leaving, self.mapping) \
            and self._address_held(leaving.synced, ask_hubspot)
        if held:
            action = leave_action(leaving, self.mapping, address_held=True)
            heir = None if action.unsubscribe else self.state.problem_only_holder(action.email, action.hubspot_id)
            if heir is not None:
                # Its subscriber is the heir's now, with the groups the sync set on it: the heir's first
                # write takes away those it is not in (nothing is taken now, on the leaving one's word).
                self.summary.add("left_scope")
                log.info("contact %s (%s) left the sync: %s; contact %s, which holds the address, takes its "
                         "subscriber over", action.hubspot_id, action.email, leaving.reason, heir)
                self.state.hand_over(leaving.synced, heir)
                return
        self.summary.add("left_scope")
        log.info("contact %s (%s) left the sync: %s; %s%s", action.hubspot_id, action.email, leaving.reason,
                 "unsubscribed" if action.unsubscribe else self.mapping.on_leave,
                 " (another live contact holds the address: nothing taken from it)"
                 if held and not action.unsubscribe else "")
        self.consent.apply(action)

    def _address_held(self, synced: Synced, ask_hubspot: bool = True) -> bool:
        """Another live, in-scope contact holds the address: the state's (every contact read this run is
        recorded before departures are applied, so nothing is kept in memory per contact), then HubSpot's."""
        if self.state.others_holding(synced.email, synced.hubspot_id):
            return True
        return ask_hubspot and self.held_in_hubspot(synced)
