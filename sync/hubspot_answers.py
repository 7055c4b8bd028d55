"""What a HubSpot answer means, decided in one place. Pure.

The same rules serve a whole answer (its HTTP status and error body) and one item of a batch
answer's `errors` (no HTTP status of its own, only a category): a rate limit is a wait, an
outage is a retry, a missing scope or a bad token stops the run, anything else is a refusal of
that request or that one record. Every field of HubSpot's error shape is optional.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

from .hubspot_schema import LOCKED_WAIT_S
from .redaction import clip
from .retrying import parse_retry_after

OK = "ok"
RETRY = "retry"  # 5xx, 408, 423 Locked, 477 Migration in progress
RATE_LIMITED = "rate_limited"  # 429 of a rolling window: wait, then go on
DAILY_LIMIT = "daily_limit"  # 429 of the daily limit: nothing to do before midnight
AUTH = "auth"  # a bad or revoked token
MISSING_SCOPES = "missing_scopes"
REFUSED = "refused"  # this request (or this record) was refused; retrying it would not help

_RATE_CATEGORIES = ("RATE_LIMIT", "RATE_LIMITS")
_LOCKED_STATUSES = (423, 477)
_REASON_MAX = 300
# A record refused for not existing (deleted, archived, merged away), in the words of a refusal
# that names it alone: "Object not found", "resource not found", "... does not exist".
NOT_FOUND_WORDS = re.compile(r"not found|does not exist", re.I)


@dataclass(frozen=True)
class Verdict:
    kind: str
    reason: str = ""
    status: int = 0
    retry_after: Optional[float] = None
    scopes: Tuple[str, ...] = ()
    policy: str = ""


def parse_body(raw: Any) -> Dict[str, Any]:
    """An error body as a dict; anything else (not JSON, a list, empty) as {}."""
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    if isinstance(raw, dict):
        return raw
    try:
        data = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _scopes(data: Mapping[str, Any]) -> Tuple[str, ...]:
    found: List[str] = []
    errors = data.get("errors")
    for err in errors if isinstance(errors, list) else []:
        context = err.get("context") if isinstance(err, dict) else None
        if not isinstance(context, dict):
            continue
        for key in ("requiredGranularScopes", "requiredScopes"):
            values = context.get(key)
            if isinstance(values, list):
                found.extend(str(s) for s in values if str(s) not in found)
    return tuple(found)


def _item_status(data: Mapping[str, Any]) -> int:
    """A batch item's own status, when it carries a number ("error" is what HubSpot usually sends)."""
    value = str(data.get("status") or "")
    return int(value) if value.isdigit() and len(value) == 3 else 0


def classify(status: int, body: Any, headers: Optional[Mapping[str, str]] = None) -> Verdict:
    """An answer's meaning. `status` 0 means a batch item (judged by its category alone)."""
    data = parse_body(body)
    headers = headers or {}
    status = status or _item_status(data)
    category = str(data.get("category") or data.get("errorType") or "").upper()
    message = clip(str(data.get("message") or "").strip(), _REASON_MAX)
    if 200 <= status < 300 and not category:
        return Verdict(OK, status=status)
    retry_after = parse_retry_after(headers.get("Retry-After"))
    if status == 429 or category in _RATE_CATEGORIES:
        policy = str(data.get("policyName") or "").upper()
        kind = DAILY_LIMIT if policy == "DAILY" else RATE_LIMITED
        return Verdict(kind, f"rate limited ({policy or status or category})", status, retry_after, policy=policy)
    if status in _LOCKED_STATUSES:
        wait = LOCKED_WAIT_S if retry_after is None else retry_after
        what = "locked" if status == 423 else "migration in progress"
        return Verdict(RETRY, f"HubSpot answered {status} ({what})", status, wait)
    scopes = _scopes(data)
    if category == "MISSING_SCOPES" or (status == 403 and scopes):
        return Verdict(MISSING_SCOPES, message or "missing scopes", status, scopes=scopes)
    if status in (401, 403) or category == "INVALID_AUTHENTICATION":
        return Verdict(AUTH, message or f"HTTP {status}", status)
    if status >= 500 or status == 408:
        return Verdict(RETRY, f"HubSpot answered {status}", status, retry_after)
    return Verdict(REFUSED, message or "no reason given", status)
