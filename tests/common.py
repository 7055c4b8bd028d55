"""Setup shared by several test files: settings files, MailerLite accounts, sandbox runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import HS_TOKEN, ML_TOKEN

# A mapping with one group for everyone and one per lifecycle stage.
GROUPS = '[groups]\nall = ["Synced"]\nproperty = { lifecyclestage = "Stage: {value}" }\n'
HUBSPOT_BATCH_UPDATE = "/crm/objects/2026-09/contacts/batch/update"


class ManualClock:
    """A fake's rate-limit clock that moves only when told (FakeAPI.clock): a test of where a
    window ends cannot be moved into the next window by a busy machine."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def matching_subscribers(ml, n: int, unsubscribed: int) -> None:
    """What MailerLite already holds for seed_contacts' first n contacts; one of them unsubscribed."""
    for i in range(n):
        ml.add_subscriber(f"person{i}@example.com", status="unsubscribed" if i == unsubscribed else "active",
                          fields={"name": f"First{i}", "last_name": f"Last{i}", "company": f"Company {i % 7}",
                                  "city": "Ljubljana", "z_i_p": f"{1000 + i % 50}"})


def client_env_file(folder: Path, hubspot, mailerlite, name: str = "clientB.env") -> Path:
    """A client's own settings file, with no SYNC_STATE_DB: its state follows the file."""
    folder.mkdir(exist_ok=True)
    env_file = folder / name
    env_file.write_text(f"HUBSPOT_ACCESS_TOKEN={HS_TOKEN}\nMAILERLITE_API_KEY={ML_TOKEN}\n"
                        f"HUBSPOT_BASE_URL={hubspot.url}\nMAILERLITE_BASE_URL={mailerlite.base_url}\n")
    env_file.chmod(0o600)
    return env_file


def run_sandbox(main_py: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HUBSPOT_", "MAILERLITE_", "SYNC_"))}
    env.update(TMPDIR=str(tmp_path / "tmp"), COLUMNS="200")
    return subprocess.run([sys.executable, str(main_py), "--sandbox", *args], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
