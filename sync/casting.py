"""Turning HubSpot's string values into MailerLite field values of the right type. Pure.

HubSpot sends every value as a string; what it means depends on the property's declared
type (string, number, date, datetime, enumeration, bool). MailerLite fields are text, number
or date (`YYYY-MM-DD`; other formats are unconfirmed, so only that one is sent).
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional, Tuple

TEXT_MAX = 1024  # MailerLite's text limit is unconfirmed; longer values are truncated, with a warning
# Control characters except tab and newline (a regex runs in C: this is on the hot path).
_CONTROL_RE = re.compile("[\x00-\x08\x0b-\x1f\x7f]")
_SURROGATE_RE = re.compile("[\ud800-\udfff]")
_NUMBER_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_TRUE = {"true", "1", "yes", "y", "on"}
_FALSE = {"false", "0", "no", "n", "off"}


class CastError(ValueError):
    """A value that cannot become the wanted type; the message names property and value."""


@dataclass(frozen=True)
class PropertyInfo:
    """What HubSpot declares about a property (GET /crm/properties/{version}/contacts)."""

    type: str = "string"
    labels: Dict[str, str] = field(default_factory=dict)  # enumeration value -> label


EPOCH_MS_MAX = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z: beyond it no date is real


def property_options(definition: Dict[str, Any]) -> List[Dict[str, Any]]:
    """A property definition's options; anything but a list of objects counts as none."""
    options = definition.get("options")
    return [o for o in options if isinstance(o, dict)] if isinstance(options, list) else []


def property_infos(definitions: Dict[str, Dict[str, Any]]) -> Dict[str, PropertyInfo]:
    """PropertyInfo by name from GET /crm/properties/{version}/contacts results (every field optional)."""
    return {name: PropertyInfo(str(d.get("type") or "string"),
                               {str(o.get("value")): str(o.get("label")) for o in property_options(d)})
            for name, d in definitions.items() if isinstance(d, dict)}


def to_epoch_ms(value: Any) -> Optional[int]:
    """A HubSpot datetime (ISO 8601, or epoch milliseconds as digits or a JSON number) as epoch
    milliseconds; None for anything else, or outside 1970..9999 (a bookmark must never jump there)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            return None
        ms: Optional[int] = int(value)
    elif isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"[0-9]{1,16}", text):
            ms = int(text)
        else:
            try:
                moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                return None
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=timezone.utc)
            try:
                ms = int(moment.timestamp() * 1000)
            except (OverflowError, OSError, ValueError):
                return None
    else:
        return None
    return ms if ms is not None and 0 <= ms <= EPOCH_MS_MAX else None


def clean_text(value: Any) -> str:
    """NFC, no control characters (tabs and newlines kept), trimmed. A lone surrogate (invalid
    text) becomes U+FFFD: it could be neither hashed nor sent. Bidi and zero-width characters
    are kept (names need them); logs and the terminal show them escaped (redaction.py)."""
    text = str(value)
    if not text.isascii():
        text = unicodedata.normalize("NFC", _SURROGATE_RE.sub("\ufffd", text))
    return _CONTROL_RE.sub("", text).strip()


def _shown(raw: str) -> str:
    return repr(raw if len(raw) <= 60 else raw[:57] + "...")


def infer_field_type(hubspot_type: str) -> str:
    """The MailerLite field type a HubSpot property type naturally becomes."""
    return {"number": "number", "date": "date", "datetime": "date"}.get(hubspot_type, "text")


def to_number(prop: str, raw: str, info: PropertyInfo) -> Any:
    text = raw.strip()
    if info.type == "bool" and text.lower() in _TRUE | _FALSE:
        return 1 if text.lower() in _TRUE else 0
    if not _NUMBER_RE.match(text):
        raise CastError(f"property {prop} value {_shown(raw)} is not a number")
    number = float(text)
    if not math.isfinite(number) or abs(number) > 1e15:
        raise CastError(f"property {prop} value {_shown(raw)} is out of range for a number field")
    return int(number) if number.is_integer() else number


def to_date(prop: str, raw: str) -> str:
    """HubSpot date/datetime (ISO 8601 or epoch milliseconds) as YYYY-MM-DD (UTC)."""
    text = raw.strip()
    try:
        if re.fullmatch(r"-?\d{9,}", text):
            moment = datetime.fromtimestamp(int(text) / 1000, tz=timezone.utc)
        else:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            if moment.tzinfo is not None:
                moment = moment.astimezone(timezone.utc)
    except (ValueError, OverflowError, OSError):
        raise CastError(f"property {prop} value {_shown(raw)} is not a date") from None
    if not 1 <= moment.year <= 9999:
        raise CastError(f"property {prop} value {_shown(raw)} is not a date")
    return moment.strftime("%Y-%m-%d")


def to_text(prop: str, raw: str, info: PropertyInfo, transform: Optional[str],
            true_value: Optional[str], false_value: Optional[str],
            warnings: list) -> Optional[str]:
    text = raw  # already cleaned by cast()
    if info.type == "bool" and text.lower() in _TRUE | _FALSE:
        chosen = true_value if text.lower() in _TRUE else false_value
        if chosen is not None:
            text = chosen
    elif info.type == "enumeration":
        values = [v.strip() for v in text.split(";") if v.strip()]  # multi-select: a;b;c
        if transform == "label":
            values = [info.labels.get(v, v) for v in values]
        text = ", ".join(values)
    if not text:
        return None
    if len(text) > TEXT_MAX:
        warnings.append(f"{prop} truncated from {len(text)} to {TEXT_MAX} characters")
        text = text[:TEXT_MAX]
    return text


def cast(prop: str, raw: Any, field_type: str, info: PropertyInfo, transform: Optional[str] = None,
         true_value: Optional[str] = None, false_value: Optional[str] = None,
         warnings: Optional[list] = None) -> Tuple[Optional[Any], list]:
    """(value or None for empty, warnings). Raises CastError with a reason naming prop and value."""
    notes: list = [] if warnings is None else warnings
    if raw is None:
        return None, notes
    text = clean_text(raw)
    if not text:
        return None, notes
    if field_type == "number":
        return to_number(prop, text, info), notes
    if field_type == "date":
        return to_date(prop, text), notes
    return to_text(prop, text, info, transform, true_value, false_value, notes), notes
