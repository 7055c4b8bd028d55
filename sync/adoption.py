"""Start from what MailerLite already holds: its subscriber listing, compared per contact.

A first run (or a lost or restored state, or `--full`) reads MailerLite's listing into the state
keyed by address, across runs when it is long (adoption_listing.py; memory stays flat at any size),
then each mapped HubSpot contact is compared with its copy there using MailerLite's own equality: equal means
"record as synced, write nothing"; different means the contact is sent as usual (the full mapped
payload). See docs/adoption.md for the rules and which side wins.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from typing import Any, Dict, FrozenSet, Optional, Tuple

from .adoption_listing import Held
from .casting import TEXT_MAX
from .mailerlite_answers import INACTIVE
from .mapping import Mapping, Planned

log = logging.getLogger(__name__)

__all__ = ["INACTIVE", "Held", "compare"]  # INACTIVE: the one list, mailerlite_answers.py's
MISSING = "subscriber"  # the difference named when MailerLite does not hold the address at all
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
_DATE_RE = re.compile(r"^(\d{4}-\d{2}-\d{2})(?:[ T]00:00(?::00(?:\.0+)?)?(?:Z|[+-]00:?00)?)?$")
_NUMBER_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


@dataclass(frozen=True)
class Comparison:
    """A mapped contact against MailerLite's copy: what differs (empty: nothing to send)."""

    held: Optional[Held]
    differing: Tuple[str, ...]  # field keys, "status", "groups", or MISSING
    extra_groups: FrozenSet[str] = frozenset()  # managed groups it is in and should not be
    covered: bool = True  # False: the listing, still being read, has not reached this address yet

    @property
    def same(self) -> bool:
        return not self.differing


NOT_COVERED = Comparison(None, (MISSING,), covered=False)


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


def same_value(wanted: Any, held: Any, text_limit: int = TEXT_MAX) -> bool:
    """Whether MailerLite's value `held` already is the value the sync would send (`wanted`,
    already cast: a number for a number field, `YYYY-MM-DD` for a date, text otherwise).
    `text_limit`: where the sync cuts text, casting.TEXT_MAX (1024, MailerLite's limit being
    unconfirmed), or a smaller limit this account named in a refusal (mailerlite_dialect.py)."""
    wanted_text, held_text = _text(wanted), _text(held)
    if wanted_text is None or held_text is None:
        return wanted_text == held_text
    if isinstance(wanted, (int, float)) and not isinstance(wanted, bool):
        return _number(held) == _number(wanted)  # 42, "42" and "42.0" are one number
    wanted_date, held_date = _DATE_RE.match(wanted_text), _DATE_RE.match(held_text)
    if wanted_date and held_date:
        return wanted_date.group(1) == held_date.group(1)  # "2024-05-01" and "2024-05-01 00:00:00"
    # Text is equal, or exactly the cut the sync itself makes (text_limit): a held value that is merely
    # a prefix of HubSpot's, of whatever length, is stale and is sent again.
    return held_text in (wanted_text, wanted_text[:text_limit])


def compare(planned: Planned, held: Optional[Held], mapping: Mapping, group_ids: Dict[str, Optional[str]],
            previously_set: FrozenSet[str] = frozenset(), in_step: bool = False,
            text_limit: int = TEXT_MAX) -> Comparison:
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
    differing = [key for key in sorted(keys)
                 if not same_value(planned.fields.get(key), held.fields.get(key), text_limit)]
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
