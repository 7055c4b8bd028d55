"""One state per account: every run proves both credentials and checks that the state file is
this pair of accounts' own, before anything is written.

The HubSpot portal comes from the account details (one request); the MailerLite account from
the `x-account_id` header of the one cheap authenticated MailerLite request every run makes (the
subscriber count). Either may be unknown (not answered, no header): an unknown one is never
taken for a mismatch, and recorded once it is known. But once the state has recorded an account,
a run that cannot confirm it stops before writing anything (exit 3, UnconfirmedAccount): HubSpot
ids are a portal's own, so a run reading another portal would record that portal's contacts under
this state's ids and take this state's contacts as gone (departures, unsubscribes), and creates
alone would still put another client's people on this mailing list. Nothing is lost by stopping:
the next run that confirms the account does everything this one would have.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

from .errors import AbortRun, ConfigError, SyncError
from .hubspot import HubSpotReader
from .mailerlite import MailerLiteClient
from .state import State

ACCOUNTS_KEY = "accounts"  # state meta: {"hubspot_portal": "...", "mailerlite_account": "..."}
NAMES = {"hubspot_portal": "HubSpot portal", "mailerlite_account": "MailerLite account"}
# Why a run may not know an account the state recorded.
UNKNOWN_WHY = {"hubspot_portal": "HubSpot did not answer the account details for this token",
               "mailerlite_account": "MailerLite's answers named no account (no x-account_id header)"}


class UnconfirmedAccount(AbortRun):
    """The state recorded an account this run cannot confirm: nothing is written (exit 3)."""


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


def unconfirmed_message(path: Path, key: str, recorded: str) -> str:
    return (f"the {NAMES[key]} {recorded} that the state {path} belongs to could not be confirmed "
            f"({UNKNOWN_WHY[key]}); nothing was done, so no contact of another account is written and nobody "
            f"leaves or is unsubscribed on its evidence. The next run tries again; if these settings are not this "
            f"client's, give them their own state (their own --env-file or SYNC_STATE_DB)")


def check_same_accounts(state: State, seen: Accounts, record: bool = True) -> None:
    """ConfigError (exit 2) when the state was written for other accounts; UnconfirmedAccount (exit 3)
    when it recorded an account this run cannot confirm; else record what is newly known."""
    recorded = recorded_accounts(state)
    seen_values = seen.as_dict()
    if any(recorded.get(k) not in (None, v) for k, v in seen_values.items() if v is not None):
        raise ConfigError(mismatch_message(state.path, recorded, seen))
    unconfirmed = [k for k in NAMES if k in recorded and seen_values[k] is None]
    if unconfirmed:
        raise UnconfirmedAccount(unconfirmed_message(state.path, unconfirmed[0], recorded[unconfirmed[0]]))
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
    except (ConfigError, UnconfirmedAccount) as exc:
        return str(exc)
    except SyncError:
        return None  # a refused token or an outage: --check's own checks say so
    finally:
        state.close()
    return None
