"""What the sandbox shows about its data."""

from __future__ import annotations

import json

from tests.common import run_sandbox
from tests.test_cli_subprocess import MAIN


def test_the_sandbox_says_what_its_data_holds_and_keeps_accents(tmp_path):
    (tmp_path / "tmp").mkdir()
    first = run_sandbox(MAIN, tmp_path)
    assert "300 made-up HubSpot contacts" in first.stdout and "without an email address" in first.stdout
    assert "soren." in first.stdout and "Søren" in first.stdout and "sren." not in first.stdout
    assert "The most opens" not in first.stdout and "Engagement" in first.stdout and "is off" in first.stdout
    again = run_sandbox(MAIN, tmp_path, "--json")
    summary = json.loads(again.stdout.splitlines()[-1])
    assert (summary["created"], summary["updated"]) == (0, 0)
    if summary["read"]:  # within the search-lag margin of the first run: said why
        assert "minutes of HubSpot changes again" in again.stderr + again.stdout


def test_the_sandbox_shows_engagement_when_the_mapping_turns_it_on(tmp_path):
    (tmp_path / "tmp").mkdir()
    mapping = tmp_path / "mapping.toml"
    mapping.write_text((MAIN.parent / "mapping.example.toml").read_text().replace("# engagement = true",
                                                                                   "engagement = true"))
    done = run_sandbox(MAIN, tmp_path, "--mapping", str(mapping))
    assert "The most opens" in done.stdout and "is off" not in done.stdout
