"""What the repository ships for a user: .gitignore covers what they create, the README stays short."""

from __future__ import annotations

import re
import subprocess

from tests.test_cli_subprocess import MAIN


def test_gitignore_covers_what_a_user_creates():
    ignored = subprocess.run(["git", "check-ignore", "--no-index", "mapping.toml", "sync.log", "sync.log.1",
                              "sync_state.db", "sync_state.db-journal", "sync_state.db-wal", "sync_state.db-shm",
                              "sync_state.db.lock", ".env", "clientB.env.db"],
                             cwd=MAIN.parent, capture_output=True, text=True).stdout.split()
    assert set(ignored) == {"mapping.toml", "sync.log", "sync.log.1", "sync_state.db", "sync_state.db-journal",
                            "sync_state.db-wal", "sync_state.db-shm", "sync_state.db.lock", ".env", "clientB.env.db"}
    kept = subprocess.run(["git", "check-ignore", "--no-index", "mapping.example.toml", ".env.example"],
                          cwd=MAIN.parent, capture_output=True, text=True).stdout.split()
    assert kept == []


def test_the_readme_is_short_and_says_what_a_cron_user_needs():
    readme = (MAIN.parent / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 300
    assert "OWNER" not in readme and "github.com/" not in readme  # no address to guess
    headings = re.findall(r"^#+ (.+)$", readme, flags=re.M)
    assert "Rotating a token" in headings
    # The Python version is said before the first install command.
    assert readme.index("3.9 or newer") < readme.index("pip install") and "Setup Python App" in readme
    for page, heading in (("consent.md", "Consent"), ("write-back.md", "Write-back (optional)"),
                          ("engagement.md", "Engagement (optional)")):
        assert heading in headings and f"](docs/{page})" in readme
        assert len((MAIN.parent / "docs" / page).read_text(encoding="utf-8").splitlines()) > 10
