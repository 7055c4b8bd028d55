"""One state per account: every run proves both credentials and checks that the state file is
this pair of accounts' own, before anything is written.

The HubSpot portal comes from the account details (one request); the MailerLite account from
the `x-account_id` header of the one cheap authenticated MailerLite request every run makes (the
subscriber count). Either may be unknown (not answered, no header): an unknown one is never
taken for a mismatch, and recorded once it is known.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

from .errors import ConfigError, SyncError
from .hubspot import HubSpotReader
from .mailerlite import MailerLiteClient
from .state import State

ACCOUNTS_KEY = "accounts"  # state meta: {"hubspot_portal": "...", "mailerlite_account": "..."}
NAMES = {"hubspot_portal": "HubSpot portal", "mailerlite_account": "MailerLite account"}


@dataclass(frozen=True)
class Accounts:
    hubspot_portal: Optional[str]
    mailerlite_account: Optional[str]

    def as_dict(self) -> Dict[str, Optional[str]]:
        return {"hubspot_portal": self.hubspot_portal, "mailerlite_account": self.mailerlite_account}


def prove_credentials(hubspot: HubSpotReader, mailerlite: MailerLiteClient) -> Accounts:
    """Both tokens used once: a refused one stops the run (exit 2), an unreachable host too (exit 3)."""
    portal = hubspot.portal_id()
    mailerlite.prove_key()
    return Accounts(portal, mailerlite.account_id)


def recorded_accounts(state: State) -> Dict[str, str]:
    stored = state.get_json(ACCOUNTS_KEY)
    if not isinstance(stored, dict):
        return {}
    return {k: str(v) for k, v in stored.items() if k in NAMES and v is not None}


def _describe(accounts: Dict[str, Optional[str]]) -> str:
    return " and ".join(f"{NAMES[k]} {v}" for k, v in accounts.items() if v is not None) or "unknown accounts"


def mismatch_message(path: Path, recorded: Dict[str, str], seen: Accounts) -> str:
    return (f"the state {path} belongs to {_describe(dict(recorded))}, but these settings reach "
            f"{_describe(seen.as_dict())}; nothing was done. Each client needs its own state: run each with its "
            f"own --env-file (its state is then kept beside that file, named after it) or set SYNC_STATE_DB in "
            f"its settings; if this client has moved to another account, point SYNC_STATE_DB at a new file")


def check_same_accounts(state: State, seen: Accounts, record: bool = True) -> None:
    """ConfigError (exit 2) when the state was written for other accounts; else record what is newly known."""
    recorded = recorded_accounts(state)
    seen_values = seen.as_dict()
    if any(recorded.get(k) not in (None, v) for k, v in seen_values.items() if v is not None):
        raise ConfigError(mismatch_message(state.path, recorded, seen))
    merged = {**{k: v for k, v in seen_values.items() if v is not None}, **recorded}
    if record and merged != recorded:
        state.set_json(ACCOUNTS_KEY, merged)


def state_problem(state_db: Path, hubspot: HubSpotReader, mailerlite: MailerLiteClient) -> Optional[str]:
    """For --check: why a run with these settings would stop on this state file (another pair of
    accounts' state), or None. Reads the state only when it exists; records nothing."""
    if not state_db.exists():
        return None
    state = State(state_db)
    try:
        check_same_accounts(state, prove_credentials(hubspot, mailerlite), record=False)
    except ConfigError as exc:
        return str(exc)
    except SyncError:
        return None  # a refused token or an outage: --check's own checks say so
    finally:
        state.close()
    return None
