"""Pure mapping: a HubSpot contact in, a MailerLite subscriber plan (or a reason not to) out.

No I/O here, so every rule can be checked with tables of cases.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Dict, FrozenSet, List, Optional, Tuple, Union

# HubSpot property -> MailerLite field key (MailerLite's default fields).
DEFAULT_FIELD_MAP: Dict[str, str] = {
    "firstname": "name",
    "lastname": "last_name",
    "company": "company",
    "phone": "phone",
    "city": "city",
    "state": "state",
    "zip": "z_i_p",
    "country": "country",
}
EMAIL_PROPERTY = "email"
OPTOUT_PROPERTY = "hs_email_optout"
ALWAYS_READ = (EMAIL_PROPERTY, OPTOUT_PROPERTY, "lastmodifieddate")
TEXT_MAX = 1024  # MailerLite's text limit is unconfirmed; longer values are truncated, with a warning
EMAIL_MAX = 254
# Deliberately loose: one @, no spaces or control characters, a dot in the domain. MailerLite
# makes the final call (its 422 is kept as the reason); this only stops what can never work.
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$")
_CONTROL = {c for c in range(32) if c not in (9, 10)} | {127}


@dataclass(frozen=True)
class FieldRule:
    """One HubSpot property copied into one MailerLite field."""

    prop: str
    field: str


@dataclass(frozen=True)
class Mapping:
    rules: Tuple[FieldRule, ...]

    @classmethod
    def default(cls) -> Mapping:
        return cls(tuple(FieldRule(p, f) for p, f in DEFAULT_FIELD_MAP.items()))

    def properties(self) -> List[str]:
        """The HubSpot properties a run must ask for."""
        return sorted(set(ALWAYS_READ) | {r.prop for r in self.rules})

    @property
    def managed_fields(self) -> FrozenSet[str]:
        return frozenset(r.field for r in self.rules)


@dataclass(frozen=True)
class Planned:
    """What the subscriber should look like; `fields` holds only non-empty values."""

    email: str
    fields: Dict[str, Any]
    status: Optional[str] = None  # only ever "unsubscribed": the sync never sends "active"
    warnings: Tuple[str, ...] = ()

    def fingerprint(self) -> str:
        """Stable hash of the wanted state: equal fingerprints need no write."""
        canonical = json.dumps({"email": self.email, "fields": self.fields, "status": self.status},
                               sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]

    def payload(self, cleared: FrozenSet[str] = frozenset()) -> Dict[str, Any]:
        """The POST /subscribers body. `cleared` are fields the sync set before and must now empty."""
        fields: Dict[str, Any] = {key: None for key in sorted(cleared) if key not in self.fields}
        # null clears a field (MailerLite's docs; unconfirmed whether "" does too, so null it is).
        fields.update(self.fields)
        body: Dict[str, Any] = {"email": self.email}
        if fields:
            body["fields"] = fields
        if self.status:
            body["status"] = self.status
        return body


@dataclass(frozen=True)
class Skip:
    reason: str


@dataclass(frozen=True)
class Reject:
    reason: str
    email: str = ""

    def fingerprint(self) -> str:
        return hashlib.sha256(f"reject\0{self.email}\0{self.reason}".encode()).hexdigest()[:32]


Outcome = Union[Planned, Skip, Reject]


@dataclass
class _Cleaner:
    warnings: List[str] = field(default_factory=list)

    def text(self, prop: str, value: Any) -> Optional[str]:
        if value is None:
            return None
        text = unicodedata.normalize("NFC", str(value))
        text = "".join(ch for ch in text if ord(ch) not in _CONTROL).strip()
        if not text:
            return None
        if len(text) > TEXT_MAX:
            self.warnings.append(f"{prop} truncated from {len(text)} to {TEXT_MAX} characters")
            text = text[:TEXT_MAX]
        return text


def normalise_email(value: Any) -> str:
    return unicodedata.normalize("NFC", str(value or "")).strip().lower()


def email_problem(email: str) -> Optional[str]:
    """Why an address can never be accepted, or None."""
    if len(email) > EMAIL_MAX:
        return f"email is longer than {EMAIL_MAX} characters"
    if any(ord(ch) in _CONTROL or ord(ch) == 9 or ord(ch) == 10 for ch in email):
        return "email contains control characters"
    if not _EMAIL_RE.match(email):
        return f"invalid email address {email[:100]!r}"
    return None


def map_contact(contact: Dict[str, Any], mapping: Mapping) -> Outcome:
    """Map one contact; never raises for any property values."""
    props = contact.get("properties") or {}
    if not isinstance(props, dict):
        props = {}
    email = normalise_email(props.get(EMAIL_PROPERTY))
    if not email:
        return Skip("no email address")
    problem = email_problem(email)
    if problem:
        return Reject(problem, email)
    cleaner = _Cleaner()
    fields: Dict[str, Any] = {}
    for rule in mapping.rules:
        value = cleaner.text(rule.prop, props.get(rule.prop))
        if value is not None:
            fields[rule.field] = value
    opted_out = str(props.get(OPTOUT_PROPERTY) or "").strip().lower() == "true"
    return Planned(email, fields, "unsubscribed" if opted_out else None, tuple(cleaner.warnings))
