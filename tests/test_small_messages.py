"""Smaller things a person reads: a TOML syntax error says the file, the line and what to fix;
--rejected's times are ISO 8601 in UTC; after a --full, --history's rejected count agrees with
what --rejected lists."""

from __future__ import annotations

import csv
import io
import re

import pytest

from sync import toml_errors
from tests.conftest import seed_contacts


@pytest.mark.parametrize("text, line, fix", [
    ('create_missing_fields = true\n[fields]\njobtitle = "job_title\ncity = "city"\n', 3, "not closed"),
    ('[fields]\njobtitle = job_title\n', 2, 'text in quotes ("job_title")'),
    ('[fields\njobtitle = "job_title"\n', 1, "closing ]"),
    ('[fields]\njob title = "job_title"\n', 2, "name with blanks"),
    ('[fields]\njobtitle = "a"\njobtitle = "b"\n', 3, "there twice"),
    ('[groups]\nall = ["A", "B"\n', 2, "closing ]"),
])
def test_a_toml_syntax_error_names_the_file_the_line_and_what_to_fix(run, tmp_path, text, line, fix):
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(text)
    result = run("--mapping", str(mapping))
    assert result.code == 2
    said = result.err.strip().splitlines()
    assert len(said) == 1 and f"mapping file {mapping} is not valid TOML at line {line}" in said[0], result.err
    assert fix in said[0]
    for raw in ("Illegal character", "Invalid value", "(at line", "Expected", "Unclosed"):
        assert raw not in said[0]  # the parser's own words


def test_the_line_is_read_from_the_parser_message_of_either_parser():
    assert toml_errors.place("Illegal character '\\n' (at line 54, column 22)") == 54
    assert toml_errors.place("Unclosed array (at end of document)") is None


def test_rejected_times_are_iso_8601_utc(run, hubspot_fake):
    hubspot_fake.add_contact({"email": "not-an-email"}, modified_ms=1)
    run()
    rows = list(csv.DictReader(io.StringIO(run("--rejected").out)))
    assert len(rows) == 1
    for column in ("first_seen", "last_seen"):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", rows[0][column]), rows[0]


def test_after_full_history_and_rejected_agree(run, hubspot_fake):
    seed_contacts(hubspot_fake, 3)
    hubspot_fake.add_contact({"email": "not-an-email"}, modified_ms=1)
    assert run().summary["rejected"] == 1
    again = run("--full")
    listed = list(csv.DictReader(io.StringIO(run("--rejected").out)))
    assert again.summary["rejected"] == len(listed) == 1 and again.code == 1
    history = run("--history", "--json").out
    assert '"rejected": 1' in history.split("},", 1)[0]  # the newest run first
    assert run().summary["rejected"] == 0  # an hourly run after it: said, not said again
