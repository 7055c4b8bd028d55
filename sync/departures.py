"""Consent and departures: who is unsubscribed, who leaves which groups, who is forgotten.

The rules (the README's "Consent" section says the same to users):
- An opt-out (any of the mapping's opt-out properties true) always reaches MailerLite. When the
  full upsert cannot carry it (its data is refused, locally or by MailerLite, or the upsert
  failed; the contact is a duplicate of another holding the address; it leaves the sync's
  scope), the unsubscribe goes on its own: {"email", "status": "unsubscribed"}, nothing else.
- An opt-out made together with a new address (accepted or refused), no address, or a merge
  into the opted-out record also reaches the address that leaves, unless another live,
  in-scope contact still holds it (that contact's consent is its own).
- Nobody outside the sync's scope is created in MailerLite: an out-of-scope contact that opts
  out is only unsubscribed when its address is synced (by it or another contact).
- A contact leaving the sync gets the on_leave policy; "unsubscribe" is never applied to an
  address another live, in-scope contact still holds (only the managed groups are removed).
- A merge's new record takes over the subscriber of the merged-away record with its address.
- Every action is stored before it is tried and kept until MailerLite takes it; the contact is
  forgotten only then.
- The mass-leave guard: one pass making too many synced contacts leave stops the leaving (a
  dry run forecasts the same).

Decisions are plain functions; `Departures` follows one run, `ConsentWriter` applies. The engine
only orchestrates: read, map, decide (here), write, record.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Callable, Dict, FrozenSet, Iterable, List, Optional, Set, Tuple, Union

from . import mailerlite_answers as answers
from .dry_run_report import LEAVE, LEAVE_GROUPS, UNSUBSCRIBE, PlanReport
from .errors import AbortRun
from .mailerlite import AccountRefused, MailerLiteClient
from .mailerlite_schema import MailerLiteSchema
from .mapping import Mapping, OutOfScope, Skip, email_problem
from .retrying import RunDeadline, Transient, WaitTooLong
from .state import PendingAction, State, Synced
from .summary import Summary
from .tunables import DEFAULTS, Tunables

log = logging.getLogger(__name__)

ALLOW_FLAG = "--allow-mass-leave"


@dataclass(frozen=True)
class Leaving:
    """A synced contact that leaves the sync, and why."""

    synced: Synced
    reason: str
    opted_out: bool = False
    # Departures read from absence or scope (unseen in a full pass, archived, out of scope, no
    # email) count toward the mass-leave guard; those seen directly (a new address, a merge) do not.
    guarded: bool = True
    # Whether the contact still holds the synced address (False: its address changed or was emptied).
    # An opt-out then reaches the old address only when no other live contact holds it.
    holds_address: bool = True


def managed_groups(synced: Synced, mapping: Mapping) -> FrozenSet[str]:
    return frozenset(g for g in synced.groups_set if mapping.manages_group(g))


def leave_action(leaving: Leaving, mapping: Mapping, address_held: bool) -> PendingAction:
    """What leaving means in MailerLite. An opt-out unsubscribes whatever on_leave says;
    on_leave = "unsubscribe" does not when another live contact holds the address."""
    synced = leaving.synced
    policy = mapping.on_leave
    consent = leaving.opted_out and (leaving.holds_address or not address_held)
    unsubscribe = consent or (policy == "unsubscribe" and not address_held)
    groups = managed_groups(synced, mapping) if policy in ("remove_from_groups", "unsubscribe") else frozenset()
    return PendingAction(synced.hubspot_id, synced.email, synced.subscriber_id, unsubscribe, groups, True,
                         leaving.reason)


def optout_action(hubspot_id: str, email: str, reason: str) -> PendingAction:
    """An unsubscribe on its own (email and status only), for a contact that stays known."""
    return PendingAction(hubspot_id, email, None, True, frozenset(), False, reason)


def group_removal(hubspot_id: str, email: str, subscriber_id: Optional[str], groups: FrozenSet[str]) -> PendingAction:
    """Groups a synced subscriber leaves because a rule stopped matching."""
    return PendingAction(hubspot_id, email, subscriber_id, False, groups, False, "a group rule stopped matching")


def needs_address_check(leaving: Leaving, mapping: Mapping) -> bool:
    """An unsubscribe caused by on_leave, or by an opt-out of a contact that no longer holds the
    address, needs to know whether another live contact still holds it."""
    if leaving.opted_out:
        return not leaving.holds_address
    return mapping.on_leave == "unsubscribe"


def merge_plan(new_id: str, email: str, merged: List[Synced]) -> Tuple[Optional[Synced], List[Synced]]:
    """Of the merged-away records: the one with the merged record's address is taken over (no
    leave, no duplicate, no group churn); the others leave as any contact does."""
    taken = next((s for s in merged if email and s.email == email and s.hubspot_id != new_id), None)
    return taken, [s for s in merged if s is not taken and s.hubspot_id != new_id]


def mass_leave_problem(leaving: int, synced: int, mapping: Mapping, allowed: bool) -> Optional[str]:
    """The one line stopping a pass that would make too many synced contacts leave, or None.

    Departures are read from absence (a contact not listed is gone): a truncated listing, a list
    read empty or a scope typed wrong would make everyone leave. More than mass_leave_percent of
    the synced contacts AND more than mass_leave_min of them need a person's confirmation."""
    if allowed or leaving <= mapping.mass_leave_min or leaving * 100 <= mapping.mass_leave_percent * synced:
        return None
    return (f"{leaving} of {synced} synced contacts would leave the sync in this run (more than "
            f"{mapping.mass_leave_percent:g}% and more than {mapping.mass_leave_min}); nobody left. If that is "
            f"right, run once with {ALLOW_FLAG}; never for another client's settings sharing this state (each "
            f"client needs its own: its own --env-file or SYNC_STATE_DB)")


def next_try_ms(attempts: int, now_ms: int, first_ms: int, max_ms: int) -> int:
    """When a consent action that failed `attempts` times is tried again: the next run after the
    first failure, then after first_ms, doubling up to max_ms (a day): one address MailerLite keeps
    refusing costs a request now and then, never every run's budget."""
    if attempts <= 1:
        return 0
    return now_ms + min(max_ms, first_ms * 2 ** min(attempts - 2, 32))


class _Refused(Exception):
    pass


class ConsentWriter:
    """Applies consent actions: stored first, tried, forgotten only once MailerLite took them."""

    def __init__(self, mailerlite: MailerLiteClient, state: State, schema: MailerLiteSchema, summary: Summary,
                 tunables: Tunables = DEFAULTS) -> None:
        self.tunables = tunables  # the back-off of actions that keep failing, and the wall clock
        self.mailerlite = mailerlite
        self.state = state
        self.schema = schema
        self.summary = summary
        self._consecutive_failures = 0

    def _now_ms(self) -> int:
        return int(self.tunables.wall_clock() * 1000)

    def _paused(self) -> bool:
        """Failing in a row this run (an outage, not one address): the rest stay stored for the next
        run instead of each spending its retries now. The run itself goes on; only account-level
        failures (a refused key or account, the run's time limit) stop it."""
        return self._consecutive_failures >= self.tunables.max_consecutive_failures

    def apply(self, action: PendingAction) -> bool:
        """True when MailerLite took the action; otherwise it stays pending (counted failed when tried).
        One still in its back-off from earlier runs is only stored."""
        self.state.save_action(action)
        if self._paused() or self.state.action_next_try(action) > self._now_ms():
            return False
        return self._try(action)

    def retry_pending(self) -> None:
        """Actions earlier runs could not apply and whose back-off is over, before anything else happens."""
        now = self._now_ms()
        for action in self.state.pending_actions():
            if not action.forget and action.groups:
                # A group the contact joined again since (a rule matches again) is not left.
                current = self.state.synced([action.hubspot_id])
                if current and current[0].email == action.email:
                    action = PendingAction(action.hubspot_id, action.email, action.subscriber_id or
                                           current[0].subscriber_id, action.unsubscribe,
                                           action.groups - current[0].groups_set, False, action.reason,
                                           action.attempts, action.next_try)
            void = not action.unsubscribe and not action.groups  # nothing left to tell MailerLite: done now
            if not void and (action.next_try > now or self._paused()):
                continue  # still pending: counted at the end of the run (consent_pending)
            self._try(action)

    def _try(self, action: PendingAction) -> bool:
        try:
            if action.unsubscribe:
                self._unsubscribe(action.email)
            self._leave_groups(action)
        except (AccountRefused, RunDeadline, WaitTooLong):
            # Every action would be refused alike, or the run must stop now (its time limit, a wait
            # too long): the action stays saved for the next run, and the run ends with that line.
            raise
        except (_Refused, AbortRun, Transient) as exc:
            # One address failing (refused, or answered 503 for ever) never stops the run: the action
            # stays pending with its own back-off, is listed by --rejected, and every run says how
            # many are outstanding (exit 1) until MailerLite takes it.
            reason = str(exc) if not isinstance(exc, Transient) else f"MailerLite: {exc.reason}"
            attempts = self.state.action_attempts(action) + 1
            retry_at = next_try_ms(attempts, self._now_ms(), self.tunables.consent_retry_first_ms,
                                   self.tunables.consent_retry_max_ms)
            self.state.action_failed(action, reason, retry_at)
            self.summary.add("failed")
            log.warning("contact %s (%s): %s not applied (attempt %d), tried again %s: %s", action.hubspot_id,
                        action.email, "unsubscribe" if action.unsubscribe else "leaving groups", attempts,
                        "next run" if not retry_at else f"in {(retry_at - self._now_ms()) // 60_000} minutes", reason)
            if not isinstance(exc, _Refused):
                # Not an answer about this address (an outage?): after a few in a row the rest wait.
                self._consecutive_failures += 1
                if self._paused():
                    log.warning("MailerLite failed %d consent actions in a row; the others are kept for the next run",
                                self._consecutive_failures)
            return False
        self._consecutive_failures = 0
        self.state.action_done(action)
        if action.unsubscribe and not action.forget:
            self.state.record_optout_sent(action.email, action.hubspot_id)
        if action.unsubscribe:
            self.summary.add("unsubscribed")
        return True

    def _unsubscribe(self, email: str) -> None:
        """The consent-only upsert, judged by the one classifier of MailerLite answers."""
        raw = self.mailerlite.upsert({"email": email, "status": "unsubscribed"})
        answer = answers.classify_upsert(raw.code, raw.body)
        if answer.kind in (answers.WRITTEN, answers.NOT_REACTIVATED):
            return  # NOT_REACTIVATED: bounced or junk already, MailerLite sends it nothing either way
        if answer.kind == answers.RETRY:
            raise Transient(f"answered {answer.code}")
        raise _Refused(f"MailerLite refused the unsubscribe (HTTP {answer.code}): {answer.reason}")

    def _leave_groups(self, action: PendingAction) -> None:
        if not action.subscriber_id:
            return
        for name in sorted(action.groups):
            gid = self.schema.group_id(name, create=False)
            if gid:
                self.mailerlite.unassign(action.subscriber_id, gid)


class Departures:
    """One run's consent and departures, decided by the rules above and applied by ConsentWriter.

    The engine reports what it reads (a contact in scope, out of scope, refused, merged, gone);
    this decides what MailerLite must be told and when. Departures read from absence or scope
    wait for the end of the pass (`settle`), where the mass-leave guard may hold them all.
    """

    def __init__(self, state: State, mapping: Mapping, consent: ConsentWriter, summary: Summary,
                 held_in_hubspot: Callable[[Synced], bool], dry_run: bool = False,
                 allow_mass_leave: bool = False,
                 optouts_by_address: Optional[Callable[[Iterable[str]], Optional[Set[str]]]] = None) -> None:
        self.state = state
        self.mapping = mapping
        self.consent = consent
        self.summary = summary
        self.held_in_hubspot = held_in_hubspot  # one HubSpot search: another live in-scope contact has it
        self.dry_run = dry_run
        self.allow_mass_leave = allow_mass_leave
        # HubSpot's consent by address (hubspot_consent.AddressConsent.opted_out): None, or an answer
        # of None (no scope), falls back to the records' opt-out properties.
        self.optouts_by_address = optouts_by_address
        self._leaving: List[Leaving] = []
        self._sent: Dict[str, str] = {}  # email -> contact whose opt-out went on its own (current page)
        self.plan: Optional[PlanReport] = None  # a dry run's listing, when asked for (the engine sets it)
        # Contacts a dry run counted as leaving at once (a merge, say): the real run forgets them then, so
        # the end of a dry full pass must not count them again as unseen.
        self.dry_left: Set[str] = set()

    def retry_pending(self) -> None:
        if not self.dry_run:
            self.consent.retry_pending()

    def new_page(self, emails: List[str]) -> None:
        self._sent = self.state.optouts_sent(emails)

    # -- what the engine read ---------------------------------------------------------------------
    def in_scope(self, hubspot_id: str, email: str, opted_out: bool) -> None:
        if not opted_out:
            self.not_opted_out(hubspot_id, email)

    def not_opted_out(self, hubspot_id: str, email: str) -> None:
        """Read without an opt-out (in scope, refused or out of scope): one it had delivered on its
        own before is over, so a later opt-out is delivered anew."""
        if self._sent.get(email) == hubspot_id and not self.dry_run:
            self.state.clear_optout_sent(email)
            del self._sent[email]

    def refused(self, hubspot_id: str, email: str, reason: str, try_now: bool = True) -> None:
        """The full upsert of an opted-out contact cannot be sent or was refused."""
        self.optout(hubspot_id, email, f"opted out; the data was refused ({reason})", try_now)

    def out_of_scope(self, hubspot_id: str, outcome: Union[Skip, OutOfScope], synced: Optional[Synced],
                     address_synced: bool, skipped_opted_out: bool = False) -> None:
        """Not to be synced (out of scope, or no address). `synced`: what MailerLite has of it;
        `skipped_opted_out`: a contact without an address (Skip) opted out."""
        opted_out = outcome.opted_out if isinstance(outcome, OutOfScope) else skipped_opted_out
        if synced is not None:  # it was synced before: it has left the sync's scope
            # An opt-out is applied whatever the scope, at once (never held by the guard).
            self.leave(Leaving(synced, outcome.reason, opted_out, guarded=not opted_out,
                               holds_address=isinstance(outcome, OutOfScope)))
        elif isinstance(outcome, OutOfScope) and opted_out and address_synced:
            # Never synced itself, but another contact brought its address in: the opt-out wins.
            self.optout(hubspot_id, outcome.email, "opted out (out of scope; the address is synced)")
        elif isinstance(outcome, OutOfScope) and not opted_out:
            self.not_opted_out(hubspot_id, outcome.email)
        # Otherwise nothing: nobody outside the sync's scope is created in MailerLite, not even as
        # unsubscribed. If the address is in MailerLite from elsewhere, that source owns its consent.

    def email_changed(self, synced: Synced, opted_out: bool = False) -> None:
        self.leave(Leaving(synced, "the email address changed", opted_out, guarded=False, holds_address=False))

    def apply_merge(self, hubspot_id: str, email: str, merged_ids: Optional[str],
                    opted_out: bool = False) -> Optional[str]:
        """A merge: the merged-away records leave, or one is taken over by this record (its id returned;
        a dry run changes nothing but returns it too, so it forecasts the take-over). When the merged
        record is opted out, the other addresses that leave get the opt-out too (the same person)."""
        ids = [i.strip() for i in str(merged_ids or "").split(";")]
        old = self.state.synced(i for i in ids if i.isdigit() and i != hubspot_id)
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
            self.state.take_over(taken.hubspot_id, hubspot_id)
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
    def optout(self, hubspot_id: str, email: str, reason: str, try_now: bool = True) -> None:
        """The unsubscribe on its own (email and status), once per address."""
        if email in self._sent or email_problem(email):
            return  # already delivered, or an address MailerLite could never take
        if self.dry_run:  # reported as the real run would send it (once per address, as there)
            if self.plan is not None:
                self.plan.add(UNSUBSCRIBE, email, hubspot_id, detail=reason)
            self.summary.add("would_send")
            self._sent[email] = hubspot_id
            return
        if try_now:  # (only stored: said when it is tried)
            log.info("contact %s (%s): %s; unsubscribed on its own", hubspot_id, email, reason)
        if self._act(optout_action(hubspot_id, email, reason), try_now):
            self._sent[email] = hubspot_id

    def leave(self, leaving: Leaving) -> None:
        if leaving.guarded:
            self._leaving.append(leaving)  # a dry run too: it must meet the guard the real run meets
        elif self.dry_run:
            self.summary.add("left_scope")
            self._plan_leave(leaving)
            self.dry_left.add(leaving.synced.hubspot_id)
        else:
            self._apply_leave(leaving)

    def apply_held_departures(self, synced_before: int) -> Optional[str]:
        """Apply the held departures, unless the mass-leave guard stops them (its line returned)."""
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
        kind = UNSUBSCRIBE if action.unsubscribe else LEAVE_GROUPS if action.groups else LEAVE
        self.plan.add(kind, action.email, action.hubspot_id, left=action.groups,
                      detail="; ".join(part for part in (leaving.reason, held) if part))

    def _act(self, action: PendingAction, try_now: bool) -> bool:
        if try_now:
            return self.consent.apply(action)
        self.state.save_action(action)  # stopping: kept for the next run, not tried now
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

    def _apply_leave(self, leaving: Leaving) -> None:
        leaving = self._address_consent(leaving)
        held = needs_address_check(leaving, self.mapping) and self._address_held(leaving.synced)
        action = leave_action(leaving, self.mapping, held)
        self.summary.add("left_scope")
        log.info("contact %s (%s) left the sync: %s; %s%s", action.hubspot_id, action.email, leaving.reason,
                 "unsubscribed" if action.unsubscribe else self.mapping.on_leave,
                 " (another live contact holds the address: groups only)" if held else "")
        self.consent.apply(action)

    def _address_held(self, synced: Synced) -> bool:
        """Another live, in-scope contact holds the address: the state's (every contact read this run is
        recorded before departures are applied, so nothing is kept in memory per contact), then HubSpot's."""
        if self.state.others_holding(synced.email, synced.hubspot_id):
            return True
        return self.held_in_hubspot(synced)
