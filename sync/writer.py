"""Upserting subscribers as fast as MailerLite's two limits allow, reading every answer.

Batches of 50 (POST /batch) while the import limit (5 a minute for all-upsert batches) has
room; single POST /subscribers while it is used up, so both budgets are spent. Everything is
driven by what the server says (Retry-After, X-RateLimit-Remaining, the import 429): the
limits may change, and the client must be right whether a batch costs one request or one per
item against the global limit (unconfirmed; see mailerlite.md).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Deque, Dict, FrozenSet, List, Optional, Tuple

from .errors import AbortRun
from .mailerlite import BATCH_LIMIT, ImportLimited, ItemResult, MailerLiteClient, describe_error
from .retrying import Transient
from .state import Result

log = logging.getLogger(__name__)

MIN_BATCH = 3  # a remainder smaller than this goes as single upserts, sparing the import budget
MAX_ITEM_ATTEMPTS = 3  # an item failing transiently inside batches this often is reported failed
MAX_CONSECUTIVE_FAILURES = 3  # single upserts failing in a row beyond retries: MailerLite is down
IMPORT_WAIT_FIRST = 10.0  # when the import 429 names no Retry-After: probe again after this...
IMPORT_WAIT_MAX = 60.0  # ...doubling up to the documented window
NOT_REACTIVATED_HINT = "cannot be imported"


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
    attempts: int = 0

    @property
    def opts_out(self) -> bool:
        return self.payload.get("status") == "unsubscribed"


Written = Tuple[Pending, Result]  # an item and its recorded outcome


def classify(item: Pending, answer: ItemResult) -> Optional[Result]:
    """The recorded outcome of one answer, or None when the item should be tried again."""
    body = answer.body if isinstance(answer.body, dict) else {}
    if answer.code in (200, 201):
        data = body.get("data") if isinstance(body.get("data"), dict) else {}
        sid = data.get("id")
        if not sid:
            return None  # "success" without the subscriber is not proof: ask again rather than trust it
        return Result(item.hubspot_id, item.email, "created" if answer.code == 201 else "updated",
                      item.fingerprint, item.fields_set, str(sid), groups_set=item.groups)
    reason = describe_error(body)
    if answer.code == 422 and NOT_REACTIVATED_HINT in reason.lower():
        # MailerLite protects an unsubscribed/bounced/junk subscriber: expected, not an error.
        return Result(item.hubspot_id, item.email, "not_reactivated", item.fingerprint, item.fields_set)
    if answer.code in (0, 408, 409, 429) or answer.code >= 500:
        return None
    return Result(item.hubspot_id, item.email, "rejected", item.fingerprint, reason=f"MailerLite: {reason}")


class SubscriberWriter:
    """Takes items with add(), sends them when it suits the limits; take_finished() hands back
    the answered ones (also after an AbortRun, so nothing answered goes unrecorded)."""

    def __init__(self, client: MailerLiteClient,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self.client = client
        self.finished: List[Written] = []
        self.clock = clock
        self.sleep = sleep
        self.buffer: Deque[Pending] = deque()
        self.import_ready_at = 0.0
        self._import_wait = IMPORT_WAIT_FIRST
        self.batch_costs_items: Optional[bool] = None  # learned from X-RateLimit-Remaining
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
                if size == BATCH_LIMIT or (final and size >= MIN_BATCH):
                    self._send_batch([self.buffer.popleft() for _ in range(size)])
                    continue
                if not final:
                    return  # wait for a full batch
            self._send_single(self.buffer.popleft())

    def _batch_allowed(self, size: int) -> bool:
        if self.clock() < self.import_ready_at:
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
            self._import_wait = min(self._import_wait * 2, IMPORT_WAIT_MAX)
        self.import_ready_at = self.clock() + wait
        log.debug("MailerLite import limit reached; single upserts for %.1f s", wait)

    # -- sending ---------------------------------------------------------------------------------
    def _send_batch(self, items: List[Pending]) -> None:
        before = self.client.remaining
        try:
            answers = self.client.upsert_batch([i.payload for i in items])
        except ImportLimited as exc:
            self._import_limited(exc.retry_after)
            self.buffer.extendleft(reversed(items))
            return
        except Transient as exc:
            log.warning("a batch of %d kept failing (%s); sending its items one by one", len(items), exc.reason)
            for item in items:
                self._send_single(item)
            return
        self._import_wait = IMPORT_WAIT_FIRST
        self._learn_batch_cost(before, self.client.remaining, len(items))
        self._consecutive_failures = 0
        self._settle(items, answers)

    def _send_single(self, item: Pending) -> None:
        try:
            answer = self.client.upsert(item.payload)
        except ImportLimited as exc:  # not expected for single upserts, but never fatal
            self.sleep(exc.retry_after if exc.retry_after is not None else IMPORT_WAIT_FIRST)
            self.buffer.appendleft(item)
            return
        except Transient as exc:
            self._consecutive_failures += 1
            self._done([(item, Result(item.hubspot_id, item.email, "failed", item.fingerprint,
                                      reason=f"MailerLite: {exc.reason}"))])
            if self._consecutive_failures >= MAX_CONSECUTIVE_FAILURES:
                raise AbortRun(f"MailerLite keeps failing ({exc.reason}); stopped, the next run "
                               f"continues where this one stopped") from None
            return
        self._consecutive_failures = 0
        self._settle([item], [answer])

    def _settle(self, items: List[Pending], answers: List[ItemResult]) -> None:
        results: List[Written] = []
        for item, answer in zip(items, answers):
            result = classify(item, answer)
            if result is None:
                item.attempts += 1
                if item.attempts < MAX_ITEM_ATTEMPTS:
                    self.buffer.appendleft(item)
                    continue
                result = Result(item.hubspot_id, item.email, "failed", item.fingerprint,
                                reason=f"MailerLite answered {answer.code} {MAX_ITEM_ATTEMPTS} times")
            results.append((item, result))
        if results:
            self._done(results)
