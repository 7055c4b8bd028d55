"""Values from a contact's associated companies and deals, under the mapping's source names. Pure.

The fixed names (issue 30): `company.<property>` is that property of the contact's primary company,
`deal.<property>` that of its most recently created deal, and `deals.count`, `deals.open_count`,
`deals.won_count`, `deals.won_amount` aggregate its deals. Archived deals are never handed in:
HubSpot's association and batch reads do not answer them.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from .casting import PropertyInfo, to_epoch_ms

COMPANY_PREFIX = "company."
DEAL_PREFIX = "deal."
DEALS_PREFIX = "deals."
AGGREGATES = ("deals.count", "deals.open_count", "deals.won_count", "deals.won_amount")
# The deal properties the aggregates and the choice of the latest deal read.
DEAL_BASICS = ("amount", "createdate", "hs_is_closed", "hs_is_closed_won")
PRIMARY_TYPE_ID = 1  # the contact->company "Primary" label, category HUBSPOT_DEFINED
NUMBER = PropertyInfo("number")

# One association: (the associated record's id, whether it carries the Primary label).
Link = Tuple[int, bool]


def is_associated(name: str) -> bool:
    """Whether a mapping source name reads an associated record rather than the contact."""
    return name.startswith((COMPANY_PREFIX, DEAL_PREFIX, DEALS_PREFIX))


def name_problem(name: str) -> Optional[str]:
    """Why a source name with a dot cannot be read (None when it can)."""
    if "." not in name:
        return None
    prefix, _, rest = name.partition(".")
    if prefix == "deals":
        if name in AGGREGATES:
            return None
        from .suggest import did_you_mean
        hint = did_you_mean(name, AGGREGATES)
        return f"{name!r} is not one of {', '.join(AGGREGATES)}{' (' + hint + ')' if hint else ''}"
    if prefix in ("company", "deal"):
        if rest and "." not in rest:
            return None
        example = "industry" if prefix == "company" else "dealstage"
        return f"{name!r}: give one {prefix} property after {prefix}., like {prefix}.{example}"
    return (f"{name!r} is not a HubSpot property name (associated values are named company.<property>, "
            f"deal.<property> or deals.count, deals.open_count, deals.won_count, deals.won_amount)")


def is_primary(association_types: Any) -> bool:
    """Whether an association carries HubSpot's Primary label (HUBSPOT_DEFINED, typeId 1)."""
    if not isinstance(association_types, list):
        return False
    return any(isinstance(t, dict) and str(t.get("category") or "").upper() == "HUBSPOT_DEFINED"
               and str(t.get("typeId")) == str(PRIMARY_TYPE_ID) for t in association_types)


def primary_company(links: Sequence[Link]) -> Optional[int]:
    """The company carrying the Primary label; without one, the lowest id; None without companies."""
    labelled = sorted(oid for oid, primary in links if primary)
    if labelled:
        return labelled[0]
    return min((oid for oid, _ in links), default=None)


def latest_deal(deals: Mapping[int, Mapping[str, Any]]) -> Optional[int]:
    """The most recently created deal (highest createdate, ties by the higher id)."""
    def key(oid: int) -> Tuple[int, int]:
        created = to_epoch_ms(deals[oid].get("createdate"))
        return (-1 if created is None else created, oid)
    return max(deals, key=key, default=None)


def _amount(value: Any) -> Decimal:
    try:
        number = Decimal(str(value).strip()) if value not in (None, "") else Decimal(0)
    except InvalidOperation:
        return Decimal(0)
    return number if number.is_finite() else Decimal(0)


def _true(value: Any) -> bool:
    return str(value or "").strip().lower() == "true"


def aggregates(deals: Mapping[int, Mapping[str, Any]]) -> Dict[str, str]:
    """deals.count, open_count (hs_is_closed not "true"), won_count (hs_is_closed_won "true"),
    won_amount (the won deals' amounts, an empty one counting 0), as HubSpot writes numbers."""
    won = [props for props in deals.values() if _true(props.get("hs_is_closed_won"))]
    total = sum((_amount(p.get("amount")) for p in won), Decimal(0))
    text = format(total.normalize(), "f") if total != total.to_integral_value() else str(int(total))
    return {"deals.count": str(len(deals)),
            "deals.open_count": str(sum(1 for p in deals.values() if not _true(p.get("hs_is_closed")))),
            "deals.won_count": str(len(won)),
            "deals.won_amount": text}


def contact_values(names: Sequence[str], company: Optional[Mapping[str, Any]],
                   deals: Mapping[int, Mapping[str, Any]]) -> Dict[str, Optional[str]]:
    """The value of each associated source name for one contact: `company` is its primary
    company's properties (None without one), `deals` its live deals' by id. No company or deal:
    the value is None (its field is cleared); the aggregates are 0."""
    latest = latest_deal(deals)
    counted = aggregates(deals) if any(n in AGGREGATES for n in names) else {}
    out: Dict[str, Optional[str]] = {}
    for name in names:
        if name.startswith(COMPANY_PREFIX):
            value = company.get(name[len(COMPANY_PREFIX):]) if company is not None else None
        elif name.startswith(DEAL_PREFIX):
            value = deals[latest].get(name[len(DEAL_PREFIX):]) if latest is not None else None
        else:
            value = counted.get(name)
        out[name] = None if value is None else str(value)
    return out


def infos(names: Sequence[str], companies: Mapping[str, PropertyInfo], deals: Mapping[str, PropertyInfo],
          stage_labels: Mapping[str, str]) -> Dict[str, PropertyInfo]:
    """PropertyInfo by source name, from the company and deal schemas; deal.dealstage's labels
    are the pipelines' stage labels where the property's options lack one."""
    out: Dict[str, PropertyInfo] = {}
    for name in names:
        if name in AGGREGATES:
            out[name] = NUMBER
        elif name.startswith(COMPANY_PREFIX) and name[len(COMPANY_PREFIX):] in companies:
            out[name] = companies[name[len(COMPANY_PREFIX):]]
        elif name.startswith(DEAL_PREFIX) and name[len(DEAL_PREFIX):] in deals:
            info = deals[name[len(DEAL_PREFIX):]]
            if name == "deal.dealstage" and stage_labels:
                info = PropertyInfo(info.type, {**stage_labels, **info.labels})
            out[name] = info
    return out


def split_names(names: Sequence[str]) -> Tuple[List[str], List[str]]:
    """The company properties and the deal properties behind these source names."""
    companies = sorted({n[len(COMPANY_PREFIX):] for n in names if n.startswith(COMPANY_PREFIX)})
    deals = sorted({n[len(DEAL_PREFIX):] for n in names if n.startswith(DEAL_PREFIX)})
    return companies, deals
