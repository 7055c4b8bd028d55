"""Acting on consent: every unsubscribe or group removal is stored before it is tried and kept
until MailerLite takes it, with its own back-off when it keeps failing (rules.next_try_ms), so
one address MailerLite keeps refusing never blocks the run for everyone else.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Iterator, Optional, Set, Tuple

from .. import mailerlite_answers as answers
from ..errors import AbortRun
from ..mailerlite import AccountRefused, MailerLiteClient
from ..mailerlite_schema import MailerLiteSchema
from ..retrying import RunDeadline, Transient, WaitTooLong
from ..state import PendingAction, State
from ..summary import Summary
from ..tunables import DEFAULTS, Tunables
from .ledger import Ledger
from .rules import UNSUBSCRIBE, merged_action, next_try_ms, unsubscribe_shown

log = logging.getLogger(__name__)


class _Refused(Exception):
    pass


class ConsentWriter:
    """Applies consent actions: stored first, tried, forgotten only once MailerLite took them."""

    def __init__(self, mailerlite: MailerLiteClient, state: State, schema: MailerLiteSchema, summary: Summary,
                 ledger: Ledger, tunables: Tunables = DEFAULTS) -> None:
        self.ledger = ledger  # an unsubscribe MailerLite took is kept there, per address, with its time
        self.tunables = tunables  # the back-off of actions that keep failing, and the wall clock
        self.mailerlite = mailerlite
        self.state = state
        self.schema = schema
        self.summary = summary
        self._consecutive_failures = 0
        self._tried: Set[Tuple[str, str]] = set()  # (contact, address) tried this run: once per run is enough

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
        action = self.store(action)
        if self._paused() or action.next_try > self._now_ms():
            return False
        return self._try(action)

    def store(self, action: PendingAction) -> PendingAction:
        """Saved, merged with the one stored for the contact and address (rules.merged_action: nothing
        either still had to do is lost); returned as stored, less the groups held again."""
        merged = merged_action(self.state.stored_action(action.hubspot_id, action.email), action)
        merged = self._still_to_leave(merged)
        self.state.save_action(merged)
        return merged

    def retry_pending(self, departures: bool) -> None:
        """Actions earlier runs could not apply and whose back-off is over: the departures among them
        (`departures`) or the others (opt-outs on their own, group removals)."""
        for action in self.due(departures):
            self._try(action)

    def due(self, departures: bool) -> Iterator[PendingAction]:
        """The stored actions whose back-off is over and that this run has not tried yet, departures or
        the others, as they are tried now (a dry run lists them)."""
        now = self._now_ms()
        # Those that never failed first: a few addresses MailerLite keeps failing (which pause the run
        # after max_consecutive_failures in a row) must not hold back the actions stored behind them.
        for action in sorted(self.state.pending_actions(), key=lambda a: a.attempts):
            if action.forget != departures or (action.hubspot_id, action.email) in self._tried:
                continue
            action = self._still_to_leave(action)
            void = not action.unsubscribe and not action.groups  # nothing left to tell MailerLite: done now
            if not void and (action.next_try > now or self._paused()):
                continue  # still pending: counted at the end of the run (consent_pending)
            yield action

    def back_in_sync(self, hubspot_id: str, email: str) -> None:
        """The contact is read back in the sync with this address before MailerLite took its departure:
        the departure is void, but for groups a group removal merged into it still had to leave
        (those the contact holds are kept, as on any retry)."""
        stored = self.state.stored_action(hubspot_id, email)
        if stored is None or not stored.forget:
            return
        kept = self._still_to_leave(replace(stored, unsubscribe=False, forget=False))
        self.state.void_departure(hubspot_id, email, kept.groups)

    def _still_to_leave(self, action: PendingAction) -> PendingAction:
        """The groups still to leave: one a contact syncing this address is in is kept, the contact's
        own (joined again since: a rule matches again), unless it is the one leaving, or another's that
        now holds the address (an address taken by another contact: its old owner's departure, tried
        after the new owner's upsert, must not take the new owner's groups away)."""
        if not action.groups:
            return action
        ids = [action.hubspot_id, *self.state.others_holding(action.email, action.hubspot_id)]
        holders = [s for s in self.state.synced(ids) if s.email == action.email
                   and (s.hubspot_id != action.hubspot_id or not action.forget)]
        if not holders:
            return action
        kept = frozenset().union(*(s.groups_set for s in holders))
        own = next((s for s in holders if s.hubspot_id == action.hubspot_id), None)
        return replace(action, groups=action.groups - kept,
                       subscriber_id=action.subscriber_id or (own.subscriber_id if own else None))

    def _try(self, action: PendingAction) -> bool:
        self._tried.add((action.hubspot_id, action.email))
        status: Optional[str] = None
        try:
            if action.unsubscribe:
                status = self._unsubscribe(action.email)
                if status is not None and not unsubscribe_shown(status):
                    # Answered 200 but still held active: not taken. What MailerLite said is the evidence
                    # (the ledger keeps it, so the opt-out is never judged delivered); tried again.
                    self.ledger.seen([(action.email, status)], UNSUBSCRIBE)
                    raise _Refused(f"MailerLite answered the unsubscribe still holding the subscriber as {status}")
                self.ledger.unsubscribed(action.email, status)  # at once: a failing group removal must not hide it
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
        # Taken: a contact that left the sync is forgotten now, and an address unsubscribed has no
        # later opt-out to follow (no tombstone).
        self.state.action_done(action, forget_contact=action.forget, drop_tombstone=action.unsubscribe)
        if action.unsubscribe:
            self.summary.add("unsubscribed")
        return True

    def _unsubscribe(self, email: str) -> Optional[str]:
        """The consent-only upsert, judged by the one classifier of MailerLite answers; returns the
        status MailerLite's answer gives the subscriber (None: not said)."""
        raw = self.mailerlite.upsert({"email": email, "status": "unsubscribed"})
        answer = answers.classify_upsert(raw.code, raw.body)
        if answer.kind in (answers.WRITTEN, answers.NOT_REACTIVATED):
            return answers.answered_status(answer)  # NOT_REACTIVATED: bounced or junk already, sent nothing
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
