"""Reading mapping files: the fixed format, the documented extras, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from sync.errors import ConfigError
from sync.mapping import DEFAULT_FIELD_MAP, FieldRule, PropertyGroupRule
from sync.mapping_file import load_mapping

EXAMPLE = Path(__file__).resolve().parents[1] / "mapping.example.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mapping.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_fixed_format_from_the_issue(tmp_path):
    mapping = load_mapping(write(tmp_path, '''
create_missing_fields = true

[fields]
jobtitle = "job_title"
num_employees = { field = "employees", type = "number" }
date_of_birth = { field = "birthday", type = "date" }
lifecyclestage = { field = "lifecycle_stage", transform = "label" }
'''))
    assert mapping.create_missing_fields is True
    rules = {r.prop: r for r in mapping.rules}
    assert rules["jobtitle"] == FieldRule("jobtitle", "job_title")
    assert rules["num_employees"] == FieldRule("num_employees", "employees", "number")
    assert rules["date_of_birth"].type == "date" and rules["lifecyclestage"].transform == "label"
    assert {p for p in DEFAULT_FIELD_MAP} <= set(rules)  # the defaults stay


def test_false_drops_a_default_and_entries_override(tmp_path):
    mapping = load_mapping(write(tmp_path, '[fields]\nphone = false\ncity = "town"\n'))
    rules = {r.prop: r.field for r in mapping.rules}
    assert "phone" not in rules and rules["city"] == "town"


def test_the_shipped_example_is_valid():
    mapping = load_mapping(EXAMPLE, env_groups=("Env group",))
    assert mapping.static_groups == ("Env group", "From HubSpot")
    assert mapping.property_groups == (PropertyGroupRule("lifecyclestage", "Stage: {label}",
                                                         frozenset({"lead", "marketingqualifiedlead", "customer"})),)
    assert mapping.on_leave == "remove_from_groups" and mapping.create_missing_fields


def test_groups_and_scope(tmp_path):
    mapping = load_mapping(write(tmp_path, '''
on_leave = "unsubscribe"
[groups]
all = ["A", "B"]
lists = { "123" = "Webinar" }
property = { lifecyclestage = "Stage: {label}" }
[scope]
lists = ["123", "456"]
where = { lifecyclestage = ["customer"] }
'''))
    assert mapping.static_groups == ("A", "B") and mapping.list_groups == (("123", "Webinar"),)
    assert mapping.scope_lists == ("123", "456") and mapping.list_ids() == ["123", "456"]
    assert mapping.scope_where == (("lifecyclestage", frozenset({"customer"})),)
    assert mapping.on_leave == "unsubscribe"


@pytest.mark.parametrize("text,message", [
    ("[fields\njobtitle = 1", "is not valid TOML"),
    ("[fields]\njobtitle = 1", "[fields] jobtitle: give a field key"),
    ('[fields]\njobtitle = { field = "Job Title" }', "field must be a MailerLite field key"),
    ('[fields]\nx = { field = "x", type = "boolean" }', "type must be one of text, number, date"),
    ('[fields]\nx = { field = "x", transform = "upper" }', "transform must be one of label"),
    ('[fields]\nx = { field = "x", colour = "red" }', "unknown setting 'colour'"),
    ('[fields]\nemail = "email"', "email is always synced"),
    ('[fields]\njobtitle = "name"', "both fill field name"),
    ('create_missing_fields = "yes"', "create_missing_fields must be true or false"),
    ('on_leave = "delete"', "on_leave must be one of"),
    ('colour = "red"', "unknown setting 'colour'"),
    ('[groups]\nall = "A"', "[groups] all must be a list"),
    ('[groups]\nlists = { abc = "X" }', "is not a HubSpot list id"),
    ('[groups.property]\nlifecyclestage = "Fixed name"', "must contain {label} or {value}"),
    ('[scope]\nlists = ["x1"]', "is not a HubSpot list id"),
    ('[groups]\nall = ["' + "x" * 300 + '"]', "1 to 255 characters"),
])
def test_bad_files_give_one_line_errors(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_mapping(path)
    text = str(err.value)
    assert message in text and str(path) in text and "\n" not in text


def test_toml_errors_name_the_line(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_mapping(write(tmp_path, 'create_missing_fields = true\n[fields]\njobtitle = "job_title\n'))
    assert "line 3" in str(err.value)


def test_missing_and_undecodable_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_mapping(tmp_path / "nope.toml")
    bad = tmp_path / "binary.toml"
    bad.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="cannot read mapping file"):
        load_mapping(bad)
