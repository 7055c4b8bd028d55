"""What a dry run would do, contact by contact (--dry-run with --verbose, or as CSV with --output).

The engine and departures decide as for real and, in a dry run, hand each decision here instead
of to MailerLite. Nothing is kept in memory: each planned action is logged and/or written as one
CSV row as it is decided, so a dry run over 100,000 contacts costs no more than one without it.
When neither --verbose nor --output asks for it, no PlanReport exists and nothing is spent.

What "the fields that change" can say: the state keeps, per contact, a fingerprint of what was
last sent and the names of the fields it set, not their values. So a new subscriber lists every
field it gets; an update lists the fields newly set ("name (new)") and cleared ("name (cleared)"),
and when the same fields only change value it says "values changed" (which values, the state
cannot tell); what --force resends unchanged says "unchanged (resent by --force)". When the run
compared the contact with MailerLite's own listing (a first run, a lost state, --full: adoption.py),
the fields are exactly those that differ from what MailerLite holds.
"""

from __future__ import annotations

import csv
import logging
from typing import Iterable, Optional, TextIO

from .adoption import Comparison
from .mapping import Mapping, Planned
from .reports import _cell  # the one CSV cell guard (formulas, escape sequences, tokens)
from .state import ContactRecord

log = logging.getLogger("sync.plan")

PLAN_COLUMNS = ("action", "email", "hubspot_id", "fields", "groups_joined", "groups_left", "detail")
CREATE, UPDATE, UNSUBSCRIBE, LEAVE_GROUPS, LEAVE = "create", "update", "unsubscribe", "leave groups", "leave"
VALUES_CHANGED = "values changed"
RESENT = "unchanged (resent by --force)"


def field_changes(new_fields: Iterable[str], fields_set: Optional[Iterable[str]], managed: Iterable[str]) -> str:
    """The fields that change, as far as the state can tell (see the module's docstring).
    `fields_set` None: a new subscriber, every field is new."""
    new = sorted(new_fields)
    if fields_set is None:
        return ", ".join(new)
    before = set(fields_set)
    changes = [f"{name} (new)" for name in new if name not in before]
    changes += [f"{name} (cleared)" for name in sorted(before & set(managed)) if name not in new]
    return ", ".join(changes) or VALUES_CHANGED


class PlanReport:
    """The planned actions of one dry run, said as they are decided: log lines (`verbose`) and
    CSV rows (`out`, a file opened private by the caller)."""

    def __init__(self, verbose: bool = False, out: Optional[TextIO] = None) -> None:
        self.verbose = verbose
        self.writer = csv.writer(out, lineterminator="\n") if out is not None else None
        if self.writer is not None:
            self.writer.writerow(PLAN_COLUMNS)
        self.count = 0

    def add(self, action: str, email: str, hubspot_id: str, fields: str = "", joined: Iterable[str] = (),
            left: Iterable[str] = (), detail: str = "") -> None:
        """One planned action. Other passes (adoption, say) name their own `action` and `detail`."""
        self.count += 1
        joined_text, left_text = ", ".join(sorted(joined)), ", ".join(sorted(left))
        if self.verbose:
            parts = [f"fields: {fields}" if fields else "", f"joins {joined_text}" if joined_text else "",
                     f"leaves {left_text}" if left_text else "", detail]
            log.info("dry run: would %s %s (contact %s)%s", action, email, hubspot_id,
                     "".join(f"; {part}" for part in parts if part))
        if self.writer is not None:
            self.writer.writerow([_cell(action), _cell(email), hubspot_id, _cell(fields), _cell(joined_text),
                                  _cell(left_text), _cell(detail)])


def plan_upsert(report: PlanReport, hubspot_id: str, planned: Planned, known: Optional[ContactRecord],
                mapping: Mapping, held: Optional[Comparison] = None) -> None:
    """The create or update a dry run would send, with its field and group changes. `held`: the
    contact compared with MailerLite's listing (adoption.py), which names exactly what differs."""
    groups_before = known.groups_set if known else frozenset()
    left = [g for g in groups_before - set(planned.groups) if mapping.manages_group(g)]
    fields = field_changes(planned.fields, known.fields_set if known else None, mapping.managed_fields)
    if known and known.fingerprint == planned.fingerprint():
        fields = RESENT
    action = UPDATE if known else CREATE
    if held is not None and held.held is None:  # not in MailerLite (new, or deleted there): every field
        action, fields = CREATE, field_changes(planned.fields, None, mapping.managed_fields)
    elif held is not None:  # MailerLite's own copy was read: it tells what differs, better than the state
        action, fields = UPDATE, ", ".join(held.differing)
        left = sorted(set(left) | held.extra_groups)
    if planned.status == "unsubscribed":
        action = f"{action} as unsubscribed"  # opted out in HubSpot: the status goes with the data
    report.add(action, planned.email, hubspot_id, fields, set(planned.groups) - groups_before, left)
