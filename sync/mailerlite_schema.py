"""The MailerLite account's fields and groups, looked up once per run and only when writing.

An hourly run with nothing to send makes no MailerLite request at all, so this is lazy.
"""

from __future__ import annotations

import logging
from typing import Dict, List, Optional

from .errors import ConfigError
from .mailerlite import MailerLiteClient, NameTaken, oldest
from .mapping import Mapping
from .suggest import unknown_names_message

log = logging.getLogger(__name__)


class MailerLiteSchema:
    def __init__(self, mailerlite: MailerLiteClient, mapping: Mapping) -> None:
        self.mailerlite = mailerlite
        self.mapping = mapping
        self._groups: Optional[Dict[str, str]] = None  # exact name -> id

    def ensure_fields(self, planned: Dict[str, str]) -> Dict[str, str]:
        """Check that every mapped field exists with the planned type; create the missing ones
        when the mapping allows. Returns the account's field types. Raises ConfigError, before
        anything is written, when the account and the mapping disagree."""
        existing = {str(f.get("key")): str(f.get("type") or "text") for f in self.mailerlite.list_fields()
                    if isinstance(f, dict) and f.get("key")}
        missing = {key: kind for key, kind in planned.items() if key not in existing}
        if missing and not self.mapping.create_missing_fields:
            raise ConfigError(unknown_names_message("MailerLite has no field", sorted(missing), existing,
                                                    "fix the mapping file, create the field in MailerLite, or set "
                                                    "create_missing_fields = true in the mapping file"))
        for key, kind in sorted(missing.items()):
            made = self.mailerlite.create_field(key, kind)
            if made.get("key") != key:
                raise ConfigError(f"MailerLite made field {key!r} with key {made.get('key')!r}; "
                                  f"name the field {made.get('key')!r} in the mapping file")
            existing[key] = str(made.get("type") or kind)
            log.info("created MailerLite field %s (%s)", key, kind)
        explicit = {r.field: r.type for r in self.mapping.rules if r.type}
        clashes = [f"{key} is {existing[key]} in MailerLite but the mapping says {kind}"
                   for key, kind in explicit.items() if existing.get(key) not in (None, kind)]
        if clashes:
            raise ConfigError("field types disagree: " + "; ".join(clashes) + " (fix the type in one of them)")
        return {key: existing[key] for key in planned}

    def group_id(self, name: str, create: bool = True) -> Optional[str]:
        """The id of the group with exactly this name, created if missing (when allowed)."""
        if self._groups is None:
            by_name: Dict[str, List[Dict[str, str]]] = {}
            for group in self.mailerlite.list_groups():
                if isinstance(group, dict) and group.get("name") and group.get("id"):
                    by_name.setdefault(str(group["name"]), []).append(group)
            self._groups = {}
            for group_name, same in by_name.items():
                chosen = oldest(same)
                if chosen is not None:
                    self._groups[group_name] = str(chosen["id"])
                if len(same) > 1 and self.mapping.manages_group(group_name):
                    log.warning("MailerLite has %d groups named %r; the sync uses the oldest (id %s)",
                                len(same), group_name, self._groups.get(group_name))
        gid = self._groups.get(name)
        if gid is None and create:
            gid = self._create_group(name)
            self._groups[name] = gid
        return gid

    def _create_group(self, name: str) -> str:
        try:
            made = self.mailerlite.create_group(name)
        except NameTaken:
            # Whether MailerLite tells group names apart by case is unconfirmed: where it does
            # not, the group that holds the name in another case is the one to use.
            same = [g for g in self.mailerlite.list_groups()
                    if isinstance(g, dict) and str(g.get("name", "")).lower() == name.lower()]
            chosen = oldest(same)
            if chosen is None:
                raise
            log.warning("MailerLite refused a group %r because group %r exists (names are unique regardless of "
                        "case there); the sync uses %r", name, chosen.get("name"), chosen.get("name"))
            return str(chosen["id"])
        log.info("created MailerLite group %r", name)
        return str(made["id"])

    def group_ids(self, names: List[str]) -> List[str]:
        return [gid for gid in (self.group_id(n) for n in names) if gid]
