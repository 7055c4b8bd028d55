"""What a MailerLite answer means: ONE classifier for single requests and for batch items.

`transport_verdict` decides what no caller may ignore (retry, a bad key, a refused account, the
import limit); `classify_upsert` adds what an upsert's answer says about one contact. The client
raises on the first kind of verdict, the writer records the second, so the retry rule and the
account rule are written once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Dict, Iterable, Optional

from .redaction import clip

# Verdicts, in the words the writer records.
WRITTEN = "written"  # created or updated: the answer names the subscriber
NOT_REACTIVATED = "not_reactivated"  # MailerLite keeps an unsubscribed/bounced/junk subscriber as it is
REJECTED = "rejected"  # a refusal of this contact's data (a 422 naming its fields)
RETRY = "retry"  # 429, 5xx, 408, 409, a garbled body: ask again
IMPORT_LIMITED = "import_limited"  # the 429 of the import limit (all-upsert batches)
AUTH = "auth"  # 401: the key is wrong (exit 2, as always)
ACCOUNT = "account"  # the account may not do this (402, 403, plan or subscriber limit, suspended)
REFUSED = "refused"  # any other refusal of one contact: failed, tried again on later runs
NOT_UNDERSTOOD = "not_understood"  # a batch item in a shape we do not know: send it on its own

# The statuses MailerLite never lets an upsert reactivate, and the sync never makes active again: the
# one list (the consent ledger keeps an address seen so; write-back reads these; adoption keeps them).
INACTIVE_STATUSES = ("unsubscribed", "bounced", "junk")
INACTIVE = frozenset(INACTIVE_STATUSES)
_STATUS_WORDS = re.compile(r"\b(unsubscribed|bounced|junk)\b", re.I)

IMPORT_LIMIT_HINT = "import"  # the import limit's 429 says "rate limited on import creation"
# Account-level wording in a refusal's message (never in field errors: a field may be called "plan").
ACCOUNT_WORDS = re.compile(r"\b(plan|upgrade|suspended|billing|payment|quota|subscribers? limit|"
                           r"limit of subscribers|account (is|has been) (disabled|inactive|closed))\b", re.I)
# The refusal to reactivate, in either wording seen or plausible: "... is unsubscribed and cannot be
# imported", "... cannot be reactivated/resubscribed", naming the status. Looked for only in the
# address's and status's errors and the message, never in a field's error.
REACTIVATION_WORDS = re.compile(r"unsubscribed|bounced|junk|spam|reactivat|resubscrib|cannot be imported", re.I)
GENERIC_MESSAGE = "the given data was invalid."
ANOTHER_ADDRESS = "an answer about another address than the one sent"


@dataclass(frozen=True)
class Answer:
    """One classified answer. `subscriber` is the subscriber object of a WRITTEN answer."""

    kind: str
    code: int
    reason: str = ""
    subscriber: Optional[Dict[str, Any]] = None
    retry_after: Optional[float] = None

    @property
    def created(self) -> bool:
        return self.code == 201


def _message(body: Any) -> str:
    return str(body.get("message") or "") if isinstance(body, dict) else ""


def _errors(body: Any) -> Dict[str, Any]:
    errors = body.get("errors") if isinstance(body, dict) else None
    return errors if isinstance(errors, dict) else {}


def _texts(value: Any) -> Iterable[str]:
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def describe_error(data: Any) -> str:
    """MailerLite's reason in one line: the field errors if any, else the message."""
    errors = _errors(data)
    if errors:
        return clip(" | ".join(f"{key}: {'; '.join(_texts(reasons))}" for key, reasons in errors.items()), 500)
    return clip(_message(data) or "no reason given", 500)


def _is_account_refusal(code: int, body: Any) -> bool:
    if code in (402, 403):
        return True
    return 400 <= code < 500 and code not in (401, 408, 409, 429) and bool(ACCOUNT_WORDS.search(_message(body)))


def _is_reactivation_refusal(body: Any) -> bool:
    errors = _errors(body)
    texts = [t for key in ("email", "status") for t in _texts(errors.get(key, []))]
    message = _message(body)
    if message.strip().lower() != GENERIC_MESSAGE:
        texts.append(message)
    return any(REACTIVATION_WORDS.search(t) for t in texts)


def transport_verdict(code: int, body: Any, garbled: bool = False) -> Optional[str]:
    """RETRY, IMPORT_LIMITED, AUTH or ACCOUNT when the answer must not reach the caller as an
    answer; None when it should (success, or a refusal the caller judges)."""
    if code == 401:
        return AUTH
    if code == 429:
        return IMPORT_LIMITED if IMPORT_LIMIT_HINT in _message(body).lower() else RETRY
    if code >= 500 or code in (408, 409):
        return RETRY
    if garbled and (200 <= code < 300 or code == 422):
        return RETRY  # a body that is not JSON where one is promised: proxies, truncation
    if 200 <= code < 300 and body is not None and not isinstance(body, dict):
        return RETRY
    if _is_account_refusal(code, body):
        return ACCOUNT
    return None


def _canonical_address(email: str) -> str:
    """An address compared across spellings MailerLite may answer with: case, and an international
    domain in Unicode or in its ASCII (punycode) form."""
    local, _, domain = email.strip().lower().rpartition("@")
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        pass  # not a domain IDNA can spell: compared as it is
    return f"{local}@{domain}"


def named_address(body: Any) -> Optional[str]:
    """The address a success answer's subscriber carries, canonical; None when it names none."""
    data = body.get("data") if isinstance(body, dict) else None
    email = data.get("email") if isinstance(data, dict) else None
    return _canonical_address(email) if isinstance(email, str) and email.strip() else None


def classify_upsert(code: int, body: Any, batch_item: bool = False, email: Optional[str] = None) -> Answer:
    """What one upsert's answer (a single request's, or one item of a batch) says about the contact.

    A batch item whose code is missing or unknown, or a success that names no subscriber, is
    NOT_UNDERSTOOD (the import-path answers are undocumented); the same from a single request is
    garbled, so RETRY. With `email` (the address sent), a success must be about that address: one
    naming another is someone else's subscriber, never recorded as this contact's (a batch item
    must name it; a single answer that names no address is taken, its request being the only one)."""
    verdict = transport_verdict(code, body)
    if verdict is not None:
        return Answer(verdict, code, describe_error(body))
    if code in (200, 201):
        data = body.get("data") if isinstance(body, dict) else None
        sid = data.get("id") if isinstance(data, dict) else None
        if not (isinstance(sid, (str, int)) and not isinstance(sid, bool) and str(sid).strip()):
            return Answer(NOT_UNDERSTOOD if batch_item else RETRY, code, "a success that names no subscriber")
        named = named_address(body)
        if email is not None and named != _canonical_address(email) and (named is not None or batch_item):
            return Answer(NOT_UNDERSTOOD if batch_item else RETRY, code, ANOTHER_ADDRESS)
        return Answer(WRITTEN, code, subscriber=data)
    if not 400 <= code < 500:
        return Answer(NOT_UNDERSTOOD if batch_item else RETRY, code, f"an answer with code {code or 'missing'}")
    reason = describe_error(body)
    if code in (400, 422):
        if _is_reactivation_refusal(body):
            return Answer(NOT_REACTIVATED, code, reason)
        if _errors(body):
            return Answer(REJECTED, code, reason)
    return Answer(REFUSED, code, reason)


def refused_status(reason: str) -> str:
    """The status a refusal to reactivate names ("This subscriber is bounced and cannot be imported");
    "unsubscribed" when it names none (it is one of the inactive ones either way)."""
    found = _STATUS_WORDS.search(reason or "")
    return found.group(1).lower() if found else "unsubscribed"


def answered_status(answer: Answer) -> Optional[str]:
    """The subscriber's status an upsert's answer tells: a success's subscriber object, or the status a
    refusal to reactivate names; None when it tells none."""
    if answer.kind == WRITTEN and answer.subscriber is not None:
        status = answer.subscriber.get("status")
        return status.strip().lower() if isinstance(status, str) and status.strip() else None
    if answer.kind == NOT_REACTIVATED:
        return refused_status(answer.reason)
    return None


def item_code(item: Any) -> int:
    """A batch item's HTTP code; 0 when it is missing or not a number."""
    code = item.get("code") if isinstance(item, dict) else None
    if isinstance(code, bool):
        return 0
    try:
        return int(code)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0
