"""Pure mapping: a HubSpot contact in, a MailerLite subscriber plan (or a reason not to) out.

No I/O here, so every rule can be checked with tables of cases. What HubSpot declares about
its properties and which lists a contact is in are passed in by the engine.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Dict, FrozenSet, List, Optional, Sequence, Set, Tuple, Union
from typing import Mapping as MappingType

from .associated_values import is_associated
from .casting import TEXT_MAX, CastError, PropertyInfo, cast, clean_text, infer_field_type
from .redaction import INVISIBLE_RE, SURROGATE_RE

__all__ = ["TEXT_MAX", "DEFAULT_FIELD_MAP", "DEFAULT_OPTOUT_PROPERTIES",
           "FieldRule", "PropertyGroupRule", "Mapping", "Planned", "Skip",
           "Reject", "OutOfScope", "map_contact", "email_problem", "normalise_email"]

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
OPTOUT_PROPERTY = "hs_email_optout"  # "Unsubscribed from all email"
# Per-subscription opt-outs are hs_email_optout_<subscription type id>; the mapping file lists them.
DEFAULT_OPTOUT_PROPERTIES = (OPTOUT_PROPERTY,)
ALWAYS_READ = (EMAIL_PROPERTY, "lastmodifieddate")
FIELD_TYPES = ("text", "number", "date")
TRANSFORMS = ("label",)
ON_LEAVE = ("remove_from_groups", "unsubscribe", "leave")
GROUP_NAME_MAX = 255
EMAIL_MAX = 254
# Deliberately loose: one @, no spaces or control characters, a dot in the domain. MailerLite
# makes the final call (its 422 is kept as the reason); this only stops what can never work.
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$")
_CONTROL_RE = re.compile("[\x00-\x1f\x7f]")
_PLAIN = PropertyInfo()  # for properties HubSpot did not describe


@dataclass(frozen=True)
class FieldRule:
    """One HubSpot property copied into one MailerLite field."""

    prop: str
    field: str
    type: Optional[str] = None  # text | number | date; None: follow HubSpot's property type
    transform: Optional[str] = None  # "label": an enumeration's label instead of its internal value
    true_value: Optional[str] = None  # for bool properties sent to text fields
    false_value: Optional[str] = None


@dataclass(frozen=True)
class PropertyGroupRule:
    """A MailerLite group per value of a HubSpot property ("Lifecycle: Customer", ...)."""

    prop: str
    template: str = "{label}"  # {value} is the internal value, {label} what people read
    only: FrozenSet[str] = frozenset()  # make groups for these values only (empty: every value)

    def pattern(self) -> re.Pattern[str]:
        """Matches the names this rule can produce, to know which groups it manages."""
        parts = re.split(r"(\{value\}|\{label\})", self.template)
        return re.compile("^" + "".join(".+" if p in ("{value}", "{label}") else re.escape(p) for p in parts) + "$")


@dataclass(frozen=True)
class Mapping:
    rules: Tuple[FieldRule, ...]
    static_groups: Tuple[str, ...] = ()
    property_groups: Tuple[PropertyGroupRule, ...] = ()
    list_groups: Tuple[Tuple[str, str], ...] = ()  # (HubSpot list id, group name)
    scope_lists: Tuple[str, ...] = ()  # only members of these lists (empty: everyone)
    scope_where: Tuple[Tuple[str, FrozenSet[str]], ...] = ()  # property must hold one of the values
    create_missing_fields: bool = False
    on_leave: str = "remove_from_groups"
    write_back: bool = False  # also settable with SYNC_WRITE_BACK
    # Properties whose true value means "unsubscribed in MailerLite"; always read.
    optout_properties: Tuple[str, ...] = DEFAULT_OPTOUT_PROPERTIES
    # The mass-leave guard: a pass making more than this share AND more than this number of the
    # synced contacts leave stops before anyone leaves (--allow-mass-leave confirms, for one run).
    mass_leave_percent: float = 10.0
    mass_leave_min: int = 25
    engagement: bool = False  # also settable with SYNC_ENGAGEMENT

    @classmethod
    def default(cls, **changes: Any) -> Mapping:
        return cls(tuple(FieldRule(p, f) for p, f in DEFAULT_FIELD_MAP.items()), **changes)

    def _source_names(self) -> Set[str]:
        names = {r.prop for r in self.rules} | {g.prop for g in self.property_groups}
        return names | {prop for prop, _ in self.scope_where}

    def properties(self) -> List[str]:
        """The HubSpot contact properties a run must ask for (associated names are not the contact's)."""
        wanted = set(ALWAYS_READ) | set(self.optout_properties)
        return sorted(wanted | {name for name in self._source_names() if not is_associated(name)})

    def associated_names(self) -> List[str]:
        """The source names read from the contact's companies and deals (company.x, deal.x, deals.count...)."""
        return sorted(name for name in self._source_names() if is_associated(name))

    def list_ids(self) -> List[str]:
        return sorted(set(self.scope_lists) | {lid for lid, _ in self.list_groups})

    @property
    def managed_fields(self) -> FrozenSet[str]:
        return frozenset(r.field for r in self.rules)

    def field_type(self, rule: FieldRule, props: MappingType[str, PropertyInfo],
                   known: Optional[MappingType[str, str]] = None) -> str:
        """The type to send: the mapping's, else the MailerLite field's, else HubSpot's natural one."""
        if rule.type:
            return rule.type
        if known and rule.field in known:
            return known[rule.field]
        info = props.get(rule.prop)
        return infer_field_type(info.type) if info else "text"

    def field_types(self, props: MappingType[str, PropertyInfo],
                    known: Optional[MappingType[str, str]] = None) -> Dict[str, str]:
        return {rule.field: self.field_type(rule, props, known) for rule in self.rules}

    def opted_out(self, props: MappingType[str, Any]) -> bool:
        """Whether any opt-out property is true: the person must be unsubscribed in MailerLite."""
        return any(str(props.get(p) or "").strip().lower() == "true" for p in self.optout_properties)

    def manages_group(self, name: str) -> bool:
        """Whether a rule here decides membership of this group (only such groups are ever left)."""
        if name in self.static_groups or any(name == g for _, g in self.list_groups):
            return True
        return any(rule.pattern().match(name) for rule in self.property_groups)


@dataclass(frozen=True)
class Planned:
    """What the subscriber should look like; `fields` holds only non-empty values."""

    email: str
    fields: Dict[str, Any]
    status: Optional[str] = None  # only ever "unsubscribed": the sync never sends "active"
    groups: Tuple[str, ...] = ()  # group names, sorted
    warnings: Tuple[str, ...] = ()

    @property
    def opted_out(self) -> bool:
        """The contact's opt-out, which the payload carries as the status."""
        return self.status == "unsubscribed"

    def fingerprint(self) -> str:
        """Stable hash of the wanted state: equal fingerprints need no write."""
        canonical = json.dumps({"email": self.email, "fields": self.fields, "status": self.status,
                                "groups": list(self.groups)},
                               sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]

    def payload(self, cleared: FrozenSet[str] = frozenset(), group_ids: Sequence[str] = ()) -> Dict[str, Any]:
        """The POST /subscribers body. `cleared` are fields the sync set before and must now empty."""
        fields: Dict[str, Any] = {key: None for key in sorted(cleared) if key not in self.fields}
        # null clears a field (MailerLite's docs; unconfirmed whether "" does too, so null it is).
        fields.update(self.fields)
        body: Dict[str, Any] = {"email": self.email}
        if fields:
            body["fields"] = fields
        if group_ids:
            body["groups"] = list(group_ids)  # adds only; leaving a group is a separate call
        if self.status:
            body["status"] = self.status
        return body


@dataclass(frozen=True)
class Skip:
    """Nothing to sync (no address). An opt-out is carried: the address the contact held before
    gets it (unless another live contact holds it)."""

    reason: str
    opted_out: bool = False


@dataclass(frozen=True)
class OutOfScope:
    """Not to be synced (not in the lists, filtered out by a property). An opt-out is carried:
    consent does not depend on scope."""

    reason: str
    email: str = ""
    opted_out: bool = False


@dataclass(frozen=True)
class Reject:
    """The data cannot be sent. An opt-out is carried, so it is delivered on its own."""

    reason: str
    email: str = ""
    opted_out: bool = False

    def fingerprint(self) -> str:
        # The opt-out is part of it: opting out later is a change, never "rejected as before".
        optout = "\0optout" if self.opted_out else ""
        return hashlib.sha256(f"reject\0{self.email}\0{self.reason}{optout}".encode()).hexdigest()[:32]


Outcome = Union[Planned, Skip, Reject, OutOfScope]


def normalise_email(value: Any) -> str:
    """NFC, trimmed, lower case. Invalid text (a lone surrogate: bad UTF-8 or a broken JSON
    escape) becomes U+FFFD, so the address can be stored, looked up and rejected, never crash."""
    text = str(value or "")
    if not text.isascii() and SURROGATE_RE.search(text):
        text = SURROGATE_RE.sub("\ufffd", text)
    return unicodedata.normalize("NFC", text).strip().lower()


def email_problem(email: str) -> Optional[str]:
    """Why an address can never be accepted, or None."""
    if len(email) > EMAIL_MAX:
        return f"email is longer than {EMAIL_MAX} characters"
    if _CONTROL_RE.search(email):
        return "email contains control characters"
    if email.isascii():
        pass  # the usual case: nothing below can apply
    elif "\ufffd" in email or SURROGATE_RE.search(email):
        return "email contains invalid text (bad UTF-8 or a lone surrogate); fix it in HubSpot"
    elif INVISIBLE_RE.search(email):
        # They make one address look like another; no mail system accepts them.
        return "email contains invisible or direction-changing characters (zero-width, bidi); fix it in HubSpot"
    if not _EMAIL_RE.match(email):
        return f"invalid email address {email[:100]!r}"
    return None


def _property_values(raw: Any) -> List[str]:
    """A property's values: multi-select enumerations hold several, separated by ';'."""
    if raw is None:
        return []
    return [v for v in (clean_text(part) for part in str(raw).split(";")) if v]


def _scope_problem(props: MappingType[str, Any], mapping: Mapping, lists: FrozenSet[str]) -> Optional[str]:
    if mapping.scope_lists and not lists.intersection(mapping.scope_lists):
        return "not in the synced HubSpot lists"
    for prop, allowed in mapping.scope_where:
        if not set(_property_values(props.get(prop))) & allowed:
            return f"{prop} is not one of the synced values"
    return None


def _contact_groups(props: MappingType[str, Any], mapping: Mapping, info: MappingType[str, PropertyInfo],
            lists: FrozenSet[str]) -> Tuple[str, ...]:
    names = set(mapping.static_groups)
    for rule in mapping.property_groups:
        labels = info.get(rule.prop, _PLAIN).labels
        for value in _property_values(props.get(rule.prop)):
            if rule.only and value not in rule.only:
                continue
            name = clean_text(rule.template.replace("{value}", value).replace("{label}", labels.get(value, value)))
            if name:
                names.add(name[:GROUP_NAME_MAX])
    names.update(name for list_id, name in mapping.list_groups if list_id in lists)
    return tuple(sorted(names))


def _invalid_text(props: MappingType[str, Any]) -> Optional[str]:
    """A property holding a lone surrogate cannot be stored or sent: this contact is rejected, not the run."""
    for name, value in props.items():
        if isinstance(value, str) and not value.isascii() and SURROGATE_RE.search(value):
            return f"property {str(name)[:100]!r} holds invalid text (bad UTF-8 or a lone surrogate); fix it in HubSpot"
    return None


def map_contact(contact: Dict[str, Any], mapping: Mapping,
                info: Optional[MappingType[str, PropertyInfo]] = None,
                lists: FrozenSet[str] = frozenset(),
                field_types: Optional[MappingType[str, str]] = None) -> Outcome:
    """Map one contact; never raises for any property values."""
    info = info or {}
    props = contact.get("properties") or {}
    if not isinstance(props, dict):
        props = {}
    email = normalise_email(props.get(EMAIL_PROPERTY))
    opted_out = mapping.opted_out(props)
    if not email:
        return Skip("no email address", opted_out)
    out_of_scope = _scope_problem(props, mapping, lists)
    if out_of_scope:
        return OutOfScope(out_of_scope, email, opted_out)
    problem = email_problem(email) or _invalid_text(props)
    if problem:
        return Reject(problem, email, opted_out)
    warnings: List[str] = []
    fields: Dict[str, Any] = {}
    for rule in mapping.rules:
        try:
            value, _ = cast(rule.prop, props.get(rule.prop), mapping.field_type(rule, info, field_types),
                            info.get(rule.prop, _PLAIN), rule.transform, rule.true_value,
                            rule.false_value, warnings)
        except CastError as exc:
            return Reject(str(exc), email, opted_out)
        if value is not None:
            fields[rule.field] = value
    return Planned(email, fields, "unsubscribed" if opted_out else None, _contact_groups(props, mapping, info, lists),
                   tuple(warnings))
