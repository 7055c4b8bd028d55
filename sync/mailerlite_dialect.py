"""What this MailerLite account accepts where the documentation is silent, learned from its answers.

Three points are unconfirmed (see mailerlite.md): whether `null` clears a field (or is ignored,
and "" clears), the longest text a field takes (1024 assumed), and whether a date field takes
"YYYY-MM-DD" (or wants a date and time). The writer sends the documented reading first; an
answer that shows the other reading teaches this object, and the contact is sent again in the
reading that works. Only the text limit is kept between runs (the engine stores it in the state, so
adoption can take a value held cut there as equal); the rest starts from the documented reading.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Dict, Optional, Set

log = logging.getLogger(__name__)

TOO_LONG = re.compile(r"(\d+) characters", re.I)  # "may not be greater than 255 characters"
PLAIN_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
FIELD_ERROR = "fields."


class Dialect:
    def __init__(self) -> None:
        self.clear_with_empty = False  # send "" instead of null to clear a field
        self.text_limit: Optional[int] = None  # a limit smaller than the one assumed, as MailerLite named it
        self.datetime_fields: Set[str] = set()  # date fields that want "YYYY-MM-DD 00:00:00"

    def adapt(self, payload: Dict[str, Any]) -> Dict[str, Any]:
        """The payload in the reading this account accepts (a copy; the original stays as planned)."""
        fields = payload.get("fields")
        if not isinstance(fields, dict) or not (self.clear_with_empty or self.text_limit or self.datetime_fields):
            return payload
        adapted: Dict[str, Any] = {}
        for key, value in fields.items():
            if value is None and self.clear_with_empty:
                value = ""
            elif isinstance(value, str) and key in self.datetime_fields and PLAIN_DATE.match(value):
                value = f"{value} 00:00:00"
            elif isinstance(value, str) and self.text_limit is not None and len(value) > self.text_limit:
                value = value[:self.text_limit]
            adapted[key] = value
        return {**payload, "fields": adapted}

    def learn_from_refusal(self, sent: Dict[str, Any], errors: Any) -> bool:
        """A 422's field errors. True when, with what they teach (now or from an earlier answer
        of the same batch), this payload would go differently: send it again."""
        fields = sent.get("fields")
        if not isinstance(errors, dict) or not isinstance(fields, dict):
            return False
        for name, reasons in errors.items():
            key = str(name)[len(FIELD_ERROR):] if str(name).startswith(FIELD_ERROR) else None
            value = fields.get(key) if key is not None else None
            if key is None or not isinstance(value, str):
                continue
            text = " ".join(str(r) for r in reasons) if isinstance(reasons, list) else str(reasons)
            if "date" in text.lower() and PLAIN_DATE.match(value) and key not in self.datetime_fields:
                self.datetime_fields.add(key)
                log.warning("MailerLite wants a date and time in field %s; sending dates as YYYY-MM-DD 00:00:00", key)
            match = TOO_LONG.search(text)
            limit = int(match.group(1)) if match else 0
            if 0 < limit < len(value) and (self.text_limit is None or limit < self.text_limit):
                self.text_limit = limit
                log.warning("MailerLite takes at most %d characters in a text field; longer values are cut", limit)
        return self.adapt(sent) != sent  # never a loop: what was sent adapted stays as it is

    def learn_from_success(self, sent: Dict[str, Any], subscriber: Dict[str, Any]) -> bool:
        """An accepted upsert. A field sent as null to clear it that came back still filled means
        MailerLite ignores null here: True when this payload should go again, clearing with ""."""
        fields = sent.get("fields")
        echoed = subscriber.get("fields")
        if not isinstance(fields, dict) or not isinstance(echoed, dict):
            return False
        if any(value is None and echoed.get(key) not in (None, "") for key, value in fields.items()):
            if not self.clear_with_empty:
                log.warning("MailerLite ignores null in a field; clearing fields with an empty value instead")
            self.clear_with_empty = True
        return self.adapt(sent) != sent
