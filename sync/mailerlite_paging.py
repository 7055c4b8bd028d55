"""The shape checks of MailerLite's two kinds of listing, in one place.

Subscribers page by cursor (`meta.next_cursor`), fields and groups by number (`meta.last_page`).
A page that does not look like a page is an error, never the end of the listing: a half-read
listing would otherwise look like subscribers or groups that are gone. The error is `Transient`,
so the page is asked for again and, when it stays wrong, the run stops (exit 3).
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Set, Tuple

from .retrying import Transient

MAX_PAGES = 1000  # numbered listings: an account holds at most 1000 groups; more pages is a loop
LIMIT_TOO_BIG = re.compile(r"not be greater than (\d+)|at most (\d+)|maximum[^0-9]*(\d+)", re.I)


class BadPage(Transient):
    """A listing page that is not what MailerLite documents."""


def _items(data: Any, what: str) -> List[Dict[str, Any]]:
    if not isinstance(data, dict):
        raise BadPage(f"a page of the {what} that is not an object")
    items = data.get("data")
    if not isinstance(items, list):
        raise BadPage(f"a page of the {what} without a data list")
    if not all(isinstance(item, dict) for item in items):
        raise BadPage(f"a page of the {what} with an entry that is not an object")
    return items


def _meta(data: Dict[str, Any], what: str) -> Dict[str, Any]:
    meta = data.get("meta")
    if not isinstance(meta, dict):
        raise BadPage(f"a page of the {what} without a meta object")
    return meta


def _number(value: Any) -> Optional[int]:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def cursor_page(data: Any, cursor: Optional[str], seen: Set[str], what: str) -> Tuple[List[Dict[str, Any]],
                                                                                       Optional[str]]:
    """(entries, next cursor or None at the end). `seen` holds the cursors already followed."""
    items = _items(data, what)
    next_cursor = _meta(data, what).get("next_cursor")
    if next_cursor in (None, ""):
        return items, None
    if not isinstance(next_cursor, str):
        raise BadPage(f"a page of the {what} whose next cursor is not text")
    if next_cursor == cursor or next_cursor in seen:
        raise BadPage(f"the {what} leads back to a page already read")
    return items, next_cursor


def numbered_page(data: Any, page: int, what: str) -> Tuple[List[Dict[str, Any]], int]:
    """(entries, last page number)."""
    items = _items(data, what)
    meta = _meta(data, what)
    last = _number(meta.get("last_page"))
    if last is None or last < 1:
        raise BadPage(f"a page of the {what} whose last page is not a number")
    if last > MAX_PAGES:
        raise BadPage(f"the {what} claims {last} pages")
    current = meta.get("current_page")
    if current is not None and _number(current) != page:
        raise BadPage(f"the {what} answered page {current!r} when asked for page {page}")
    return items, last


def smaller_limit(data: Any, asked: int) -> Optional[int]:
    """When a listing refused a `limit` as too big, the largest one it names (else 100);
    None when the refusal is about something else."""
    errors = data.get("errors") if isinstance(data, dict) else None
    reasons = errors.get("limit") if isinstance(errors, dict) else None
    message = str(data.get("message", "")) if isinstance(data, dict) else ""
    if reasons is None and "limit" not in message.lower():
        return None
    text = " ".join(str(r) for r in reasons) if isinstance(reasons, list) else str(reasons or message)
    match = LIMIT_TOO_BIG.search(text)
    named = int(next(g for g in match.groups() if g)) if match else 100
    smaller = named if named < asked else 100  # a limit it names that is no smaller: try the common one
    return smaller if 0 < smaller < asked else None  # strictly smaller, so this never loops
