"""Consent and departures: who is unsubscribed, who leaves which groups, who is forgotten.

The rules (the README's "Consent" section says the same to users):
- An opt-out (any of the mapping's opt-out properties true) always reaches MailerLite. When the
  full upsert cannot carry it (its data is refused, locally or with a 422; the contact is a
  duplicate of another holding the address; it leaves the sync's scope), the unsubscribe goes
  on its own: {"email", "status": "unsubscribed"}, nothing else.
- Nobody outside the sync's scope is created in MailerLite: an out-of-scope contact that opts
  out is only unsubscribed when its address is synced (by it or another contact).
- A contact leaving the sync gets the on_leave policy; "unsubscribe" is never applied to an
  address another live, in-scope contact still holds (only the managed groups are removed).
- A merge's new record takes over the subscriber of the merged-away record with its address.
- Every action is stored before it is tried and kept until MailerLite takes it; the contact is
  forgotten only then.
- The mass-leave guard: one pass making too many synced contacts leave stops the leaving.

Decisions are plain functions; `ConsentWriter` applies them. The engine only orchestrates.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import FrozenSet, List, Optional, Tuple

from .errors import AbortRun
from .mailerlite import MailerLiteClient, describe_error
from .mailerlite_schema import MailerLiteSchema
from .mapping import Mapping
from .retrying import Transient
from .state import PendingAction, State, Synced
from .summary import Summary
from .writer import NOT_REACTIVATED_HINT

log = logging.getLogger(__name__)

MAX_CONSECUTIVE_FAILURES = 3  # actions refused in a row: MailerLite is down, stop the run
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


def managed_groups(synced: Synced, mapping: Mapping) -> FrozenSet[str]:
    return frozenset(g for g in synced.groups_set if mapping.manages_group(g))


def leave_action(leaving: Leaving, mapping: Mapping, address_held: bool) -> PendingAction:
    """What leaving means in MailerLite. An opt-out unsubscribes whatever on_leave says;
    on_leave = "unsubscribe" does not when another live contact holds the address."""
    synced = leaving.synced
    policy = mapping.on_leave
    unsubscribe = leaving.opted_out or (policy == "unsubscribe" and not address_held)
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
    """Only an unsubscribe caused by on_leave needs to know whether the address is still held."""
    return mapping.on_leave == "unsubscribe" and not leaving.opted_out


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
            f"right, run once with {ALLOW_FLAG}")


class _Refused(Exception):
    pass


class ConsentWriter:
    """Applies consent actions: stored first, tried, forgotten only once MailerLite took them."""

    def __init__(self, client: MailerLiteClient, state: State, schema: MailerLiteSchema, summary: Summary) -> None:
        self.client = client
        self.state = state
        self.schema = schema
        self.summary = summary
        self._consecutive_failures = 0

    def apply(self, action: PendingAction) -> bool:
        """True when MailerLite took the action; otherwise it stays pending (counted failed)."""
        self.state.save_action(action)
        return self._try(action)

    def retry_pending(self) -> None:
        """Actions earlier runs could not apply, before anything else happens."""
        for action in self.state.pending_actions():
            if not action.forget and action.groups:
                # A group the contact joined again since (a rule matches again) is not left.
                current = self.state.synced([action.hubspot_id])
                if current and current[0].email == action.email:
                    action = PendingAction(action.hubspot_id, action.email, action.subscriber_id or
                                           current[0].subscriber_id, action.unsubscribe,
                                           action.groups - current[0].groups_set, False, action.reason,
                                           action.attempts)
            self._try(action)

    def _try(self, action: PendingAction) -> bool:
        try:
            if action.unsubscribe:
                self._unsubscribe(action.email)
            self._leave_groups(action)
        except (_Refused, AbortRun, Transient) as exc:
            reason = str(exc) if not isinstance(exc, Transient) else f"MailerLite: {exc.reason}"
            self.state.action_failed(action, reason)
            self.summary.add("failed")
            log.warning("contact %s (%s): %s not applied, retried next run: %s", action.hubspot_id, action.email,
                        "unsubscribe" if action.unsubscribe else "leaving groups", reason)
            self._consecutive_failures += 1
            if self._consecutive_failures >= MAX_CONSECUTIVE_FAILURES:
                raise AbortRun(f"MailerLite keeps refusing unsubscribes or group removals ({reason}); stopped, "
                               f"they are kept and the next run tries again") from None
            return False
        self._consecutive_failures = 0
        self.state.action_done(action)
        if action.unsubscribe and not action.forget:
            self.state.record_optout_sent(action.email, action.hubspot_id)
        if action.unsubscribe:
            self.summary.add("unsubscribed")
        return True

    def _unsubscribe(self, email: str) -> None:
        answer = self.client.upsert({"email": email, "status": "unsubscribed"})
        if answer.code in (200, 201):
            return
        reason = describe_error(answer.body if isinstance(answer.body, dict) else {})
        if answer.code == 422 and NOT_REACTIVATED_HINT in reason.lower():
            return  # bounced or junk already: MailerLite sends it nothing either way
        if answer.code in (0, 408, 429) or answer.code >= 500:
            raise Transient(f"answered {answer.code}")
        raise _Refused(f"MailerLite refused the unsubscribe (HTTP {answer.code}): {reason}")

    def _leave_groups(self, action: PendingAction) -> None:
        if not action.subscriber_id:
            return
        for name in sorted(action.groups):
            gid = self.schema.group_id(name, create=False)
            if gid:
                self.client.unassign(action.subscriber_id, gid)
