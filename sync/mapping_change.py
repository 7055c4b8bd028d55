"""A changed mapping is applied by itself: the state keeps the fingerprint of the mapping its last
full pass applied, and the first run after the mapping changes compares every contact once (a
full pass: only what differs from MailerLite's listing is sent, as with --full).

What counts as a change is whatever can change what is sent or to whom: the fields and how they
are typed and transformed, the groups (static, per list, per property value, MAILERLITE_GROUPS),
the scope and the opt-out properties. The settings that change nothing a contact is sent
(write-back, engagement, the mass-leave guard, on_leave, create_missing_fields) are left out,
so turning engagement on does not re-read every contact. A setting added to the mapping later
counts unless it is named here: a needless full pass costs reads, a missed change costs a list
that silently disagrees with the mapping.

A state without a fingerprint was made by an earlier version, or by a first run that has not
finished its full pass yet. The first case gets one full pass too: nothing tells whether the
mapping was edited since that version's last --full (the advice was to run one by hand), and
a full pass only sends what differs; so the list ends in step with the mapping either way.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, Optional

from .mapping import Mapping
from .state import State

FINGERPRINT_KEY = "mapping_fingerprint"  # state meta: the mapping the last full pass applied
# Mapping attributes that change nothing a contact is sent, nor who is sent.
NOT_SENT = frozenset({"write_back", "engagement", "mass_leave_percent", "mass_leave_min", "on_leave",
                      "create_missing_fields"})
CHANGED = "the mapping changed"
UNRECORDED = "no mapping recorded yet"  # a state an earlier version made
APPLYING = "every contact is compared once"
WOULD_APPLY = "the next run compares every contact once"  # a dry run's words (it compares them too)


def _canonical(value: Any) -> Any:
    """A JSON-able form in which sets are sorted, so the same mapping gives the same fingerprint."""
    if isinstance(value, (set, frozenset)):
        return sorted(_canonical(v) for v in value)
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    return value


def fingerprint(mapping: Mapping) -> str:
    """What of the mapping decides what is sent, hashed."""
    sent = {f.name: getattr(mapping, f.name) for f in dataclasses.fields(mapping) if f.name not in NOT_SENT}
    nested = {name: [dataclasses.asdict(v) if dataclasses.is_dataclass(v) and not isinstance(v, type) else v
                     for v in value]
              if isinstance(value, tuple) else value for name, value in sent.items()}
    text = json.dumps(_canonical(nested), sort_keys=True, ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def needs_full_pass(state: State, mapping: Mapping) -> Optional[str]:
    """Why this run must compare every contact, when no full pass applied this mapping yet, else
    None. A state with no bookmark does a full pass anyway (a first run): nothing to say then."""
    if state.bookmark() is None:
        return None
    recorded = state.get_json(FINGERPRINT_KEY)
    if recorded == fingerprint(mapping):
        return None
    return UNRECORDED if recorded is None else CHANGED


def announcement(reason: str, dry_run: bool) -> str:
    """The one line a run says when it compares every contact because of the mapping."""
    return f"{reason}: {WOULD_APPLY if dry_run else APPLYING}"


def applied(state: State, mapping: Mapping) -> None:
    """A full pass finished with this mapping: every contact was compared with it."""
    state.set_json(FINGERPRINT_KEY, fingerprint(mapping))
