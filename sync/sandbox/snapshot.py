"""The sandbox's fake accounts saved between runs, so a second `--sandbox` run finds HubSpot and
MailerLite as the first one left them (and the sync's state agrees with both)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict

from .fakes.hubspot import FakeHubSpot
from .fakes.mailerlite import FakeMailerLite

FORMAT = 1
# The data the fakes hold (not their limits, faults or request log).
HUBSPOT_DATA = ("contacts", "_ids", "_next_id", "properties", "lists", "property_groups", "_clock_ms",
                "address_consent", "objects", "company_links", "deal_links", "_next_object_id")
# Kept since a later release: an older snapshot loads without them.
HUBSPOT_ADDED = ("address_consent", "objects", "company_links", "deal_links", "_next_object_id")
MAILERLITE_DATA = ("subscribers", "by_email", "_sub_ids", "_next_sub", "fields", "_next_field", "groups",
                   "_next_group")


def save(hubspot: FakeHubSpot, mailerlite: FakeMailerLite, path: Path) -> None:
    data: Dict[str, Any] = {
        "format": FORMAT,
        "hubspot": {name: getattr(hubspot, name) for name in HUBSPOT_DATA},
        "mailerlite": {name: getattr(mailerlite, name) for name in MAILERLITE_DATA},
    }
    data["hubspot"]["contacts"] = {str(k): v for k, v in hubspot.contacts.items()}  # JSON keys are text
    data["hubspot"]["objects"] = {kind: {str(k): v for k, v in store.items()}
                                  for kind, store in hubspot.objects.items()}
    for links in ("company_links", "deal_links"):  # (contact, company) keys as [contact, company, primary]
        data["hubspot"][links] = [[c, o, p] for (c, o), p in getattr(hubspot, links).items()]
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(data), encoding="utf-8")
    os.replace(temporary, path)  # a killed run leaves the old snapshot, never half a new one


def load(hubspot: FakeHubSpot, mailerlite: FakeMailerLite, path: Path) -> bool:
    """Restore both fakes; False when there is no usable snapshot (then the caller starts afresh)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != FORMAT:
            return False
        hs, ml = data["hubspot"], data["mailerlite"]
        hs["contacts"] = {int(k): v for k, v in hs["contacts"].items()}
        if "objects" in hs:
            hs["objects"] = {kind: {int(k): v for k, v in store.items()} for kind, store in hs["objects"].items()}
        for links in ("company_links", "deal_links"):
            if links in hs:
                hs[links] = {(int(c), int(o)): bool(p) for c, o, p in hs[links]}
        if set(hs) | set(HUBSPOT_ADDED) != set(HUBSPOT_DATA) or set(ml) != set(MAILERLITE_DATA):
            return False
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False
    for name, value in hs.items():
        setattr(hubspot, name, value)
    hubspot.reindex()
    for name, value in ml.items():
        setattr(mailerlite, name, value)
    return True
