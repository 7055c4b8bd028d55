"""Upserting subscribers as fast as MailerLite's two limits allow, reading every answer.

Batches of 50 (POST /batch) while the import limit (5 a minute for all-upsert batches) has
room; single POST /subscribers while it is used up, so both budgets are spent. Everything is
driven by what the server says (Retry-After, X-RateLimit-Remaining, the import 429): the
limits may change, and the client must be right whether a batch costs one request or one per
item against the global limit (unconfirmed; see mailerlite.md).

An all-upsert batch is a bulk import whose per-item answers are undocumented: when a batch
answer is not understood, its items go as single upserts and the rest of the run sends no
batch (the next run tries again). Every answer, single or batch item, is read by the one
classifier in mailerlite_answers.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Deque, Dict, FrozenSet, List, Optional, Tuple

from . import mailerlite_answers as answers
from .errors import AbortRun
from .mailerlite import (
    BATCH_LIMIT,
    BatchNotUnderstood,
    ImportLimited,
    ItemResult,
    MailerLiteClient,
    bad_key,
    refused_account,
)
from .mailerlite_answers import Answer, classify_upsert
from .mailerlite_dialect import Dialect
from .retrying import Transient
from .state import Result
from .tunables import DEFAULTS, Tunables

log = logging.getLogger(__name__)



@dataclass
class Pending:
    """A subscriber waiting to be written, with what the state will need afterwards."""

    hubspot_id: str
    email: str
    payload: Dict[str, Any]
    fingerprint: str
    fields_set: FrozenSet[str]
    groups: FrozenSet[str] = frozenset()
    removals: FrozenSet[str] = frozenset()  # managed groups to leave once MailerLite accepts the upsert
    attempts: int = 0  # answers of this run that said "try again"
    earlier_failures: int = 0  # runs that ended with this contact failed (the state's problem attempts)
    opted_out: bool = False  # the mapped contact's opt-out (its payload carries it as the status)


Written = Tuple[Pending, Result]  # an item and its recorded outcome


def to_result(item: Pending, answer: Answer, max_refused_runs: int = DEFAULTS.max_refused_runs) -> Optional[Result]:
    """The recorded outcome of one classified answer; None when the item should be sent again.
    Account-level verdicts never get here (they stop the run)."""
    if answer.kind == answers.WRITTEN:
        assert answer.subscriber is not None
        return Result(item.hubspot_id, item.email, "created" if answer.created else "updated", item.fingerprint,
                      item.fields_set, str(answer.subscriber["id"]), groups_set=item.groups,
                      mailerlite_status=answers.answered_status(answer))
    if answer.kind == answers.NOT_REACTIVATED:
        # MailerLite protects an unsubscribed/bounced/junk subscriber: expected, not an error.
        return Result(item.hubspot_id, item.email, "not_reactivated", item.fingerprint, item.fields_set,
                      mailerlite_status=answers.answered_status(answer))
    if answer.kind == answers.REJECTED:
        return Result(item.hubspot_id, item.email, "rejected", item.fingerprint, reason=f"MailerLite: {answer.reason}")
    if answer.kind == answers.REFUSED:
        runs = item.earlier_failures + 1
        if runs >= max_refused_runs:
            return Result(item.hubspot_id, item.email, "rejected", item.fingerprint,
                          reason=f"MailerLite refused it in {runs} runs (HTTP {answer.code}): {answer.reason}")
        return Result(item.hubspot_id, item.email, "failed", item.fingerprint,
                      reason=f"MailerLite refused it (HTTP {answer.code}): {answer.reason}; tried again next run")
    return None


class SubscriberWriter:
    """Takes items with add(), sends them when it suits the limits; take_finished() hands back
    the answered ones (also after an AbortRun, so nothing answered goes unrecorded)."""

    def __init__(self, client: MailerLiteClient, clock: Callable[[], float] = time.monotonic,
                 tunables: Tunables = DEFAULTS) -> None:
        self.client = client
        self.tunables = tunables
        self.finished: List[Written] = []
        self.clock = clock
        self.buffer: Deque[Pending] = deque()
        self.import_ready_at = 0.0
        self._import_wait = self.tunables.import_wait_first_s
        self.batch_costs_items: Optional[bool] = None  # learned from X-RateLimit-Remaining
        self.batching = True  # False once a batch answer was not understood: singles for the rest of the run
        self.dialect = Dialect()
        self._consecutive_failures = 0
        self._pending_emails: Dict[str, str] = {}  # email -> HubSpot id, for items not yet answered

    # -- public --------------------------------------------------------------------------------
    def add(self, item: Pending) -> None:
        self._pending_emails.setdefault(item.email, item.hubspot_id)
        self.buffer.append(item)
        self._pump(final=False)

    def pending_owner(self, email: str) -> Optional[str]:
        """The contact already queued with this address in this run, if any."""
        return self._pending_emails.get(email)

    def take_finished(self) -> List[Written]:
        done, self.finished = self.finished, []
        return done

    def _done(self, written: List[Written]) -> None:
        for _, r in written:
            if self._pending_emails.get(r.email) == r.hubspot_id:
                del self._pending_emails[r.email]
        self.finished.extend(written)

    def flush(self) -> None:
        self._pump(final=True)

    # -- strategy --------------------------------------------------------------------------------
    def _pump(self, final: bool) -> None:
        while self.buffer:
            size = min(len(self.buffer), BATCH_LIMIT)
            if self._batch_allowed(size):
                if size == BATCH_LIMIT or (final and size >= self.tunables.min_batch):
                    self._send_batch([self.buffer.popleft() for _ in range(size)])
                    continue
                if not final:
                    return  # wait for a full batch
            self._send_single(self.buffer.popleft())

    def _batch_allowed(self, size: int) -> bool:
        if not self.batching or self.clock() < self.import_ready_at:
            return False
        remaining = self.client.remaining
        # When a batch costs one request per item and the global budget cannot carry a whole
        # batch, use the budget up with singles instead of waiting for the window.
        return not (self.batch_costs_items and remaining is not None and remaining < size)

    def _learn_batch_cost(self, before: Optional[int], after: Optional[int], size: int) -> None:
        if before is None or after is None or size < 2 or after > before:
            return  # unknown, or the window rolled over in between
        spent = before - after
        if spent >= size:
            self.batch_costs_items = True
        elif spent <= 1:
            self.batch_costs_items = False

    def _import_limited(self, retry_after: Optional[float]) -> None:
        if retry_after is not None:
            wait = retry_after
        else:
            wait = self._import_wait
            self._import_wait = min(self._import_wait * 2, self.tunables.import_wait_max_s)
        self.import_ready_at = self.clock() + wait
        log.debug("MailerLite import limit reached; single upserts for %.1f s", wait)

    def _stop_batching(self, what: str) -> None:
        if self.batching:
            log.warning("MailerLite answered a batch in a way this version does not understand (%s); sending "
                        "single upserts for the rest of this run", what)
        self.batching = False

    # -- sending ---------------------------------------------------------------------------------
    def _send_batch(self, items: List[Pending]) -> None:
        before = self.client.remaining
        sent = [self.dialect.adapt(i.payload) for i in items]
        try:
            results = self.client.upsert_batch(sent)
        except ImportLimited as exc:
            self._import_limited(exc.retry_after)
            self.buffer.extendleft(reversed(items))
            return
        except Transient as exc:
            log.warning("a batch of %d kept failing (%s); sending its items one by one", len(items), exc.reason)
            for item in items:
                self._send_single(item)
            return
        except BatchNotUnderstood as exc:
            self._stop_batching(exc.reason)
            self.buffer.extendleft(reversed(items))
            return
        self._import_wait = self.tunables.import_wait_first_s
        self._learn_batch_cost(before, self.client.remaining, len(items))
        self._consecutive_failures = 0
        self._settle(items, sent, results, batch=True)

    def _send_single(self, item: Pending) -> None:
        sent = self.dialect.adapt(item.payload)
        try:
            result = self.client.upsert(sent)
        except Transient as exc:  # the retry layer's tries (import limit included) are used up
            self._consecutive_failures += 1
            self._done([(item, Result(item.hubspot_id, item.email, "failed", item.fingerprint,
                                      reason=f"MailerLite: {exc.reason}"))])
            if self._consecutive_failures >= self.tunables.max_consecutive_failures:
                raise AbortRun(f"MailerLite keeps failing ({exc.reason}); stopped, the next run "
                               f"continues where this one stopped") from None
            return
        self._consecutive_failures = 0
        self._settle([item], [sent], [result], batch=False)

    def _settle(self, items: List[Pending], sent: List[Dict[str, Any]], results: List[ItemResult],
                batch: bool) -> None:
        done: List[Written] = []
        again: List[Pending] = []
        not_understood: List[Pending] = []
        account: Optional[Answer] = None
        verdicts = [classify_upsert(raw.code, raw.body, batch_item=batch, email=item.email)
                    for item, raw in zip(items, results)]
        if batch and len(items) > 1 and all(v.kind == answers.REFUSED for v in verdicts):
            # Every item refused alike, and not for its data: the batch is the problem (its path,
            # its shape), not these contacts. They go on their own, and are judged one by one.
            verdicts = [Answer(answers.NOT_UNDERSTOOD, v.code, v.reason) for v in verdicts]
        if batch and any(v.reason == answers.ANOTHER_ADDRESS for v in verdicts):
            # An answer about another address: the batch's order cannot be trusted, so no answer
            # that does not name its own address (a refusal, say) is taken as its item's either.
            verdicts = [v if v.kind in (answers.WRITTEN, answers.AUTH, answers.ACCOUNT)
                        else Answer(answers.NOT_UNDERSTOOD, v.code, v.reason or answers.ANOTHER_ADDRESS)
                        for v in verdicts]
        for item, payload, raw, answer in zip(items, sent, results, verdicts):
            if answer.kind in (answers.AUTH, answers.ACCOUNT):
                account = account or answer  # every contact would be refused alike: the run stops below
            elif answer.kind == answers.NOT_UNDERSTOOD:
                not_understood.append(item)
            elif self._learned(payload, raw, answer):
                again.append(item)  # the other reading of an unconfirmed behaviour: send it as that
            else:
                result = to_result(item, answer, self.tunables.max_refused_runs)
                if result is None:
                    item.attempts += 1
                    if item.attempts < self.tunables.max_item_attempts:
                        again.append(item)
                        continue
                    result = Result(item.hubspot_id, item.email, "failed", item.fingerprint,
                                    reason=f"MailerLite answered {answer.code or 'nothing usable'} "
                                           f"{self.tunables.max_item_attempts} times ({answer.reason})")
                done.append((item, result))
        if done:
            self._done(done)
        if account is not None:
            raise bad_key() if account.kind == answers.AUTH else refused_account(account.code, account.reason)
        if not_understood:
            first = next(v for v in verdicts if v.kind == answers.NOT_UNDERSTOOD)
            self._stop_batching(f"{len(not_understood)} of {len(items)} items like code {first.code or 'missing'}: "
                                f"{first.reason}")
        self.buffer.extendleft(reversed(again + not_understood))

    def _learned(self, sent: Dict[str, Any], raw: ItemResult, answer: Answer) -> bool:
        """Whether the answer taught the dialect something that makes sending again worth it."""
        if answer.kind == answers.REJECTED:
            body = raw.body if isinstance(raw.body, dict) else {}
            return self.dialect.learn_from_refusal(sent, body.get("errors"))
        if answer.kind == answers.WRITTEN and answer.subscriber is not None:
            return self.dialect.learn_from_success(sent, answer.subscriber)
        return False
