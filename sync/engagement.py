"""Email engagement in HubSpot: each contact's MailerLite emails sent, opens, clicks and rates.

Opt-in (SYNC_ENGAGEMENT=true or `engagement = true` in the mapping file). Once per interval
(SYNC_ENGAGEMENT_HOURS, default 24) it reads MailerLite's subscriber listing once, a page at a
time (never the whole listing in memory), matches each subscriber by address to the HubSpot
contact the sync knows (the state's contacts), and writes HubSpot, in batches of up to 100, only
the contacts whose figures changed since the sync last wrote them. It writes its own properties
(group "MailerLite") and never HubSpot's email or subscription properties.

It runs after the forward sync and write-back: an outage here is a warning, never the forward
sync's result; the pass is simply done again next run.
"""

from __future__ import annotations

import json
import logging
import math
from datetime import datetime, timezone
from typing import Any, Dict, Iterable, List, Optional, Set, Tuple

from . import hubspot_schema as hs
from .errors import AbortRun
from .hubspot import HubSpotWriter
from .mailerlite import MailerLiteClient
from .mapping import normalise_email
from .retrying import Transient
from .state import State
from .summary import Summary

log = logging.getLogger(__name__)

DUE_KEY = "engagement_due_ms"  # state meta: when the next pass over MailerLite is due
SHOWN_FAILURES = 5  # refused contacts named one by one; the rest as a count


def _number(value: Any) -> Optional[float]:
    """A finite number from a JSON number or numeric text; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None


def _count(value: Any) -> Optional[int]:
    number = _number(value)
    return int(number) if number is not None and number >= 0 and number == int(number) else None


def rate_percent(raw: Any, count: Optional[int], sent: Optional[int]) -> Optional[float]:
    """MailerLite's open or click rate as a percentage (0-100, two decimals).

    A rate comes as a number or as {"float", "string"}. Whether the number is a fraction (0.25)
    or a percentage (25) is unconfirmed, so: text ending in "%" is a percentage; a number above 1
    can only be a percentage; for one of 0-1 the reading nearer to what the counts say (count /
    sent) wins; without counts, a fraction (what the "float" of group answers is). With no usable
    rate at all, the counts give it.
    """
    if isinstance(raw, dict):
        text = raw.get("string")
        if isinstance(text, str) and text.strip().endswith("%"):
            shown = _number(text.strip()[:-1])
            if shown is not None:
                return _percent(shown)
        raw = raw.get("float")
    value = _number(raw)
    if value is None or value < 0:
        return _percent(100.0 * count / sent) if count is not None and sent else None
    if value > 1:
        return _percent(value)
    if count is not None and sent:
        measured = count / sent
        return _percent(value * 100 if abs(value - measured) <= abs(value / 100 - measured) else value)
    return _percent(value * 100)


def _percent(value: float) -> float:
    return round(min(max(value, 0.0), 100.0), 2)


def _text(number: float) -> str:
    """HubSpot number values as plain text: 12, 41.67 (never 1e-05)."""
    return str(int(number)) if number == int(number) else f"{number:.2f}".rstrip("0")


def figures_of(subscriber: Dict[str, Any]) -> Optional[Dict[str, str]]:
    """The engagement properties for one subscriber object; None when MailerLite sent no usable counts."""
    sent, opens, clicks = (_count(subscriber.get(k)) for k in ("sent", "opens_count", "clicks_count"))
    if sent is None or opens is None or clicks is None:
        return None
    open_rate = rate_percent(subscriber.get("open_rate"), opens, sent)
    click_rate = rate_percent(subscriber.get("click_rate"), clicks, sent)
    figures = {hs.SENT_PROPERTY: str(sent), hs.OPENS_PROPERTY: str(opens), hs.CLICKS_PROPERTY: str(clicks)}
    if open_rate is not None:
        figures[hs.OPEN_RATE_PROPERTY] = _text(open_rate)
    if click_rate is not None:
        figures[hs.CLICK_RATE_PROPERTY] = _text(click_rate)
    return figures


def _key(figures: Dict[str, str]) -> str:
    """What the state remembers: the figures as canonical text (compared, not parsed, each pass)."""
    return json.dumps(figures, sort_keys=True, separators=(",", ":"))


def _hubspot_now(now_ms: int) -> str:
    return datetime.fromtimestamp(now_ms / 1000, timezone.utc).strftime(hs.DATETIME_FORMAT)


class Engagement:
    def __init__(self, hubspot: HubSpotWriter, mailerlite: MailerLiteClient, state: State, summary: Summary,
                 interval_hours: float, dry_run: bool = False) -> None:
        self.hubspot = hubspot
        self.mailerlite = mailerlite
        self.state = state
        self.summary = summary
        self.interval_ms = int(interval_hours * 3_600_000)
        self.dry_run = dry_run
        self._outbox: List[Tuple[str, str]] = []  # (hubspot id, figures) changed, not yet written
        self._now_ms = 0

    def due(self, now_ms: int) -> bool:
        """Reading every subscriber costs a request per page: once per interval."""
        return self.state.is_due(DUE_KEY, now_ms)

    def wanted(self, now_ms: int) -> bool:
        """A pass is due, or HubSpot refused figures last time (retried every run, MailerLite not read)."""
        return self.due(now_ms) or (not self.dry_run and bool(self.state.engagement_pending(limit=1)))

    def run(self, now_ms: int) -> None:
        """The pass, with its requests counted. A missing scope stops the run (exit 2); an outage
        only this pass, which the next run does again."""
        before = self.hubspot.requests + self.mailerlite.requests
        try:
            self._run(now_ms)
        except (AbortRun, Transient) as exc:
            reason = exc.reason if isinstance(exc, Transient) else str(exc)
            log.warning("the engagement pass stopped (%s); the sync itself is done, the next run tries again",
                        reason)
        finally:
            self.summary.add("engagement_requests", self.hubspot.requests + self.mailerlite.requests - before)

    def _run(self, now_ms: int) -> None:
        self._now_ms = now_ms
        if not self.dry_run:
            # Debug, not info: the progress bar is still drawn on a terminal, and --check announces them.
            for made in self.hubspot.ensure_engagement_properties():
                log.debug("created HubSpot %s for engagement", made)
            self._retry_refused()
        if not self.due(now_ms):
            return
        unmatched = 0
        page: List[Tuple[str, Dict[str, str]]] = []
        for subscriber in self.mailerlite.iter_subscribers():
            email = normalise_email(subscriber.get("email"))
            figures = figures_of(subscriber)
            if not email or figures is None:
                log.debug("a MailerLite subscriber without an address or usable figures; skipped")
                continue
            page.append((email, figures))
            if len(page) >= hs.BATCH_UPDATE_SIZE:
                unmatched += self._compare(page)
                page = []
        if page:
            unmatched += self._compare(page)
        self._flush()
        self.summary.add("engagement_unmatched", unmatched)
        if not self.dry_run:
            self.state.set_json(DUE_KEY, now_ms + self.interval_ms)

    def _compare(self, page: List[Tuple[str, Dict[str, str]]]) -> int:
        """Queue the changed figures of up to 100 subscribers; returns how many have no HubSpot contact."""
        owners = self.state.owners([email for email, _ in page])
        known = self.state.engagement_written(list(owners.values()))
        for email, figures in page:
            hubspot_id = owners.get(email)
            if hubspot_id is None:
                continue  # counted, never created in HubSpot
            key = _key(figures)
            if known.get(hubspot_id) != key:
                self._outbox.append((hubspot_id, key))
                if len(self._outbox) >= hs.BATCH_UPDATE_SIZE:
                    self._flush()
        return sum(1 for email, _ in page if email not in owners)

    def _flush(self) -> None:
        rows, self._outbox = self._outbox, []
        if rows and self.dry_run:
            log.info("dry run: the MailerLite engagement of %d HubSpot contacts would be written", len(rows))
        elif rows:
            self._write(rows)

    def _write(self, rows: Iterable[Tuple[str, str]]) -> None:
        rows = list(rows)
        stamp = _hubspot_now(self._now_ms)
        inputs = [{"id": hubspot_id, "properties": dict(json.loads(key), **{hs.ENGAGEMENT_UPDATED_PROPERTY: stamp})}
                  for hubspot_id, key in rows]
        gone: Set[str] = set()
        failed = self.hubspot.update_contacts(inputs, gone)
        written = [row for row in rows if row[0] not in failed]
        refused = [row for row in rows if row[0] in failed and row[0] not in gone]
        # A contact HubSpot says does not exist (deleted, merged away) never takes its figures: they
        # are dropped, not retried every run. Should it exist after all, the next pass finds them changed.
        self.state.forget_engagement(gone)
        self.state.record_engagement(written, refused)
        self.summary.add("engagement_updated", len(written))
        if gone:
            log.warning("%d HubSpot contact(s) no longer exist, so their MailerLite engagement was dropped "
                        "(not retried)", len(gone))
        failed = {hubspot_id: reason for hubspot_id, reason in failed.items() if hubspot_id not in gone}
        for hubspot_id, reason in sorted(failed.items())[:SHOWN_FAILURES]:
            log.warning("HubSpot did not take the MailerLite engagement of contact %s (%s); retried next run",
                        hubspot_id, reason)
        if len(failed) > SHOWN_FAILURES:
            log.warning("HubSpot did not take the MailerLite engagement of %d more contacts; retried next run",
                        len(failed) - SHOWN_FAILURES)

    def _retry_refused(self) -> None:
        """Figures HubSpot refused before, sent again from the state (MailerLite is not read for them)."""
        after = -1
        while True:
            rows = self.state.engagement_pending(after)
            if not rows:
                return
            after = int(rows[-1][0])
            self._write(rows)
