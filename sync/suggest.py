"""The one "did you mean ...?" for every name a user types: settings, mapping keys, HubSpot
properties, MailerLite fields."""

from __future__ import annotations

import difflib
from typing import Iterable, Sequence


def closest(name: str, known: Iterable[str], cutoff: float = 0.6) -> str:
    """The known name nearest to `name` (case aside), or "" when none is near enough."""
    by_folded = {k.lower(): k for k in known}
    found = difflib.get_close_matches(name.lower(), list(by_folded), n=1, cutoff=cutoff)
    return by_folded[found[0]] if found else ""


def did_you_mean(name: str, known: Iterable[str], cutoff: float = 0.6) -> str:
    """ "did you mean X?" for the nearest known name, or "" when none is near enough."""
    near = closest(name, known, cutoff)
    return f"did you mean {near}?" if near else ""


def unknown_names_message(what: str, names: Sequence[str], known: Iterable[str], todo: str) -> str:
    """One line: "WHAT a (did you mean b?), c; TODO"."""
    known = list(known)
    named = []
    for name in names:
        hint = did_you_mean(name, known)
        named.append(f"{name} ({hint})" if hint else name)
    return f"{what} {', '.join(named)}; {todo}"
