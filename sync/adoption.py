"""Start from what MailerLite already holds: its subscriber listing, read once, compared per contact.

A first run (or a lost or restored state, or `--full`) reads MailerLite's listing into a
temporary SQLite database keyed by address (memory stays flat at any size), then each mapped
HubSpot contact is compared with its copy there using MailerLite's own equality: equal means
"record as synced, write nothing"; different means the contact is sent as usual (the full mapped
payload). See docs/adoption.md for the rules and which side wins.
"""

from __future__ import annotations

import json
import logging
import math
import re
import sqlite3
from dataclasses import dataclass
from typing import Any, Callable, Dict, FrozenSet, Iterable, List, Optional, Tuple

from .mailerlite import MailerLiteClient
from .mailerlite_answers import INACTIVE
from .mapping import Mapping, Planned

log = logging.getLogger(__name__)

__all__ = ["INACTIVE", "MailerLiteCopy", "compare"]  # INACTIVE: the one list, mailerlite_answers.py's
MISSING = "subscriber"  # the difference named when MailerLite does not hold the address at all
INSERT_CHUNK = 1000  # listing rows written to the temporary table per statement
# An incremental run reading this many changed contacts or more asks MailerLite how many it holds
# (one request); when listing them all costs less than sending the changes, it reads the listing.
LISTING_FLOOR = 500
# Listing costs ~1 request per 1000 (or 100) subscribers; sending costs ~1 request per 3 contacts at
# MailerLite's ceiling (365 upserts a minute at 120 requests): reading is worth it while the account
# holds at most this many subscribers per changed contact.
LISTING_WORTH_PER_CHANGE = 30
# A state listing this many contacts or more, of which MailerLite holds fewer than half, does not
# match the account (another account, a wiped one): the run compares everything with the listing.
MISMATCH_MIN = 20
SHORTEST_TEXT_LIMIT = 255  # the smallest text limit a MailerLite field may have (mailerlite.md: unconfirmed)
_DATE_RE = re.compile(r"^(\d{4}-\d{2}-\d{2})(?:[ T]00:00(?::00(?:\.0+)?)?(?:Z|[+-]00:?00)?)?$")
_NUMBER_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


@dataclass(frozen=True)
class Held:
    """One subscriber as MailerLite's listing shows it."""

    subscriber_id: Optional[str]
    status: str
    fields: Dict[str, Any]
    groups: Optional[Dict[str, str]]  # group id -> name; None when the listing did not include them


@dataclass(frozen=True)
class Comparison:
    """A mapped contact against MailerLite's copy: what differs (empty: nothing to send)."""

    held: Optional[Held]
    differing: Tuple[str, ...]  # field keys, "status", "groups", or MISSING
    extra_groups: FrozenSet[str] = frozenset()  # managed groups it is in and should not be

    @property
    def same(self) -> bool:
        return not self.differing


class MailerLiteCopy:
    """MailerLite's subscribers, by lowercased address, in a private temporary database."""

    def __init__(self) -> None:
        # "" is SQLite's private temporary database: on disk, deleted on close, never in the state file.
        self.conn = sqlite3.connect("")
        self.conn.execute("CREATE TABLE held (email TEXT PRIMARY KEY, subscriber_id TEXT, status TEXT NOT NULL, "
                          "fields TEXT NOT NULL, groups TEXT)")
        self.size = 0

    @classmethod
    def read(cls, mailerlite: MailerLiteClient,
             seen: Optional[Callable[[List[Tuple[str, str]]], None]] = None) -> MailerLiteCopy:
        """The whole listing, through the one paginator (a wrong page stops the run, never ends the listing).
        `seen`: handed each chunk's (address, status), for the consent ledger (consent.seen_in_listing)."""
        copy = cls()
        rows: List[Tuple[str, Optional[str], str, str, Optional[str]]] = []
        for subscriber in mailerlite.iter_subscribers(include_groups=True):
            row = _row(subscriber)
            if row is not None:
                rows.append(row)
            if len(rows) >= INSERT_CHUNK:
                copy._insert(rows, seen)
                rows = []
        copy._insert(rows, seen)
        log.info("read MailerLite's listing: %d subscribers", copy.size)
        return copy

    def _insert(self, rows: List[Tuple[str, Optional[str], str, str, Optional[str]]],
                seen: Optional[Callable[[List[Tuple[str, str]]], None]] = None) -> None:
        if rows:
            if seen is not None:
                seen([(email, status) for email, _, status, _, _ in rows])
            self.conn.executemany("INSERT OR REPLACE INTO held VALUES (?,?,?,?,?)", rows)
            self.size = self.conn.execute("SELECT COUNT(*) FROM held").fetchone()[0]

    def get(self, email: str) -> Optional[Held]:
        row = self.conn.execute("SELECT subscriber_id, status, fields, groups FROM held WHERE email=?",
                                (email.strip().lower(),)).fetchone()
        if row is None:
            return None
        sid, status, fields, groups = row
        return Held(sid, status, json.loads(fields), None if groups is None else dict(json.loads(groups)))

    def holds(self, emails: Iterable[str]) -> int:
        """How many of these addresses MailerLite holds."""
        return sum(1 for email in emails if self.get(email) is not None)

    def close(self) -> None:
        self.conn.close()


def _row(subscriber: Dict[str, Any]) -> Optional[Tuple[str, Optional[str], str, str, Optional[str]]]:
    email = subscriber.get("email")
    if not isinstance(email, str) or not email.strip():
        return None  # nothing to match a contact with
    sid = subscriber.get("id")
    fields = subscriber.get("fields")
    groups = subscriber.get("groups")
    ids: Optional[Dict[str, str]] = None
    if isinstance(groups, list):
        ids = {str(g["id"]): str(g.get("name") or "") for g in groups if isinstance(g, dict) and g.get("id")}
    return (email.strip().lower(), None if sid is None else str(sid), str(subscriber.get("status") or ""),
            json.dumps(fields if isinstance(fields, dict) else {}, ensure_ascii=False),
            None if ids is None else json.dumps(ids, ensure_ascii=False))


# -- MailerLite's equality, pure ------------------------------------------------------------------
def _number(value: Any) -> Optional[float]:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    text = str(value).strip()
    return float(text) if _NUMBER_RE.match(text) else None


def _text(value: Any) -> Optional[str]:
    """Empty, missing and null are one thing; text is compared trimmed."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def same_value(wanted: Any, held: Any) -> bool:
    """Whether MailerLite's value `held` already is the value the sync would send (`wanted`,
    already cast: a number for a number field, `YYYY-MM-DD` for a date, text otherwise)."""
    wanted_text, held_text = _text(wanted), _text(held)
    if wanted_text is None or held_text is None:
        return wanted_text == held_text
    if isinstance(wanted, (int, float)) and not isinstance(wanted, bool):
        return _number(held) == _number(wanted)  # 42, "42" and "42.0" are one number
    wanted_date, held_date = _DATE_RE.match(wanted_text), _DATE_RE.match(held_text)
    if wanted_date and held_date:
        return wanted_date.group(1) == held_date.group(1)  # "2024-05-01" and "2024-05-01 00:00:00"
    if len(held_text) >= SHORTEST_TEXT_LIMIT and wanted_text.startswith(held_text):
        return True  # cut at the account's text limit: sending it again would be cut the same way
    return wanted_text == held_text


def compare(planned: Planned, held: Optional[Held], mapping: Mapping, group_ids: Dict[str, Optional[str]],
            previously_set: FrozenSet[str] = frozenset(), in_step: bool = False) -> Comparison:
    """What the upsert would change in MailerLite's copy. `group_ids`: the id of each planned group
    (None: the group does not exist yet). Fields the sync never set and HubSpot leaves empty are not
    ours to clear (a MailerLite form may have filled them); fields it set before (`previously_set`)
    and HubSpot now leaves empty must be empty there too. Consent: an unsubscribed, bounced or junk
    subscriber keeps its status (the upsert never names "active"); one the state already has
    (`in_step`) is not written to again, since MailerLite may refuse every write to it; an opt-out
    must reach an active one."""
    if held is None:
        return Comparison(None, (MISSING,))
    if held.status in INACTIVE and in_step:
        return Comparison(held, ())
    keys = set(planned.fields) | (set(previously_set) & set(mapping.managed_fields))
    differing = [key for key in sorted(keys) if not same_value(planned.fields.get(key), held.fields.get(key))]
    if planned.status == "unsubscribed" and held.status not in INACTIVE:
        differing.append("status")
    extra: FrozenSet[str] = frozenset()
    if held.groups is None:
        if planned.groups:
            differing.append("groups")  # membership unknown: sending it (adds only) loses nothing
    else:
        wanted = {group_ids.get(name) for name in planned.groups}
        extra = frozenset(name for gid, name in held.groups.items()
                          if gid not in wanted and name not in planned.groups and mapping.manages_group(name))
        if extra or None in wanted or not wanted <= held.groups.keys():
            differing.append("groups")
    return Comparison(held, tuple(differing), extra)


def log_differences(hubspot_id: str, comparison: Comparison) -> None:
    """--verbose: which fields of one contact differ from MailerLite's copy (names only, never values)."""
    if comparison.differing:
        log.debug("contact %s differs from MailerLite in: %s", hubspot_id, ", ".join(comparison.differing))


def listing_worth_reading(changed: Optional[int], mailerlite_total: Optional[int]) -> bool:
    """An incremental run with this many changed contacts: is reading the whole listing cheaper
    than sending them (a restored old state, a long outage)?"""
    if changed is None or changed < LISTING_FLOOR or mailerlite_total is None:
        return False
    return mailerlite_total <= changed * LISTING_WORTH_PER_CHANGE


def state_mismatch(state_contacts: int, held_of_them: int) -> bool:
    """The state lists far more subscribers than MailerLite holds of them."""
    return state_contacts >= MISMATCH_MIN and held_of_them * 2 < state_contacts
