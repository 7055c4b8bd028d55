"""Advice worth one warning, not one every hour.

Cron mails whatever a job prints, so a condition that does not stop the sync (a token without
an optional scope, a .env file other users can read, a misspelt setting) is said once, on the
first run that meets it, and remembered in the state file; `--check` says it every time. When
the condition goes away it is forgotten, so that it is said again if it comes back."""

from __future__ import annotations

import logging
from typing import List, Sequence, Tuple

from . import invocation
from .columns import INDENT, PERSON, wrap
from .state import State

log = logging.getLogger("sync")
SHOWN_KEY = "advisories_shown"

ENV_FILE_SHARED = "env-file-shared:"  # + the file's path
UNKNOWN_SETTING = "unknown-setting:"  # + the name
SETTINGS_ADVICE = (ENV_FILE_SHARED, UNKNOWN_SETTING)
SCHEMA_SCOPE_ADVICE = "hubspot-schema-scope"
SCHEMA_SCOPE_MESSAGE = ("the HubSpot token lacks the scope crm.schemas.contacts.read: contacts still sync, but "
                        "property types and labels are unknown, so values go as text unless the mapping gives a "
                        "type; add the scope to the service key or private app")


class Advisories:
    def __init__(self, state: State, record: bool = True) -> None:
        self.state = state
        self.record = record  # False in a dry run: it says what the real run would, and remembers nothing

    def _remember(self, shown: List[str]) -> None:
        if self.record:
            self.state.set_json(SHOWN_KEY, shown)

    def _shown(self) -> List[str]:
        value = self.state.get_json(SHOWN_KEY)
        return [str(k) for k in value] if isinstance(value, list) else []

    def once(self, key: str, message: str) -> None:
        """A WARNING the first time `key` comes up; a debug line after that."""
        shown = self._shown()
        if key in shown:
            log.debug("%s", message)
            return
        command = f"{invocation.command()} --check"
        # The log file keeps one line; stderr (cron mail) the words within 80 columns, continued on
        # indented lines, then the command on a line of its own (long, and pasted from there).
        log.warning("%s (said once; %s repeats it)", message, command,
                    extra={PERSON: f"{wrap(message + ' (said once; repeated by:)', first=len('WARNING: '))}\n"
                                   f"{INDENT}{command}"})
        self._remember(sorted(shown + [key]))

    def gone(self, key: str) -> None:
        """The condition is over: say it again should it come back."""
        shown = self._shown()
        if key in shown:
            self._remember([k for k in shown if k != key])

    def settle(self, found: Sequence[Tuple[str, str]], families: Sequence[str] = SETTINGS_ADVICE) -> None:
        """Say each (key, message) found once; forget the keys of these families no longer found."""
        for key, message in found:
            self.once(key, message)
        current = {key for key, _ in found}
        for key in self._shown():
            if key.startswith(tuple(families)) and key not in current:
                self.gone(key)
