"""Reading mapping files: the fixed format, the documented extras, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
    ('[fields]\nnumemployees = { type = "number" }', '[fields] numemployees: the table needs field = "..."'),
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
    with pytest.raises(ConfigError, match="mapping file .* is not UTF-8 text"):
        load_mapping(bad)


# -- hostile mapping files: any document gives a Mapping or a one-line ConfigError ------------------

_scalars = st.one_of(st.text(max_size=30), st.integers(-5, 5), st.booleans(),
                     st.sampled_from(["text", "number", "date", "label", "{label}", "x_y", "123", ""]))
_values = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                         st.dictionaries(st.text(max_size=12), inner, max_size=3)),
                       max_leaves=8)
_keys = st.one_of(st.sampled_from(["fields", "groups", "scope", "create_missing_fields", "on_leave", "all",
                                   "property", "lists", "where", "field", "type", "transform", "jobtitle"]),
                  st.text(max_size=12))


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON string escapes are valid TOML basic strings
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_keys, _values, max_size=5))
def test_any_mapping_document_is_a_mapping_or_a_one_line_error(tmp_path_factory, doc):
    path = tmp_path_factory.mktemp("m") / "mapping.toml"
    path.write_text("\n".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in doc.items()), encoding="utf-8")
    try:
        mapping = load_mapping(path)
    except ConfigError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)
    else:
        assert mapping.rules and all(r.field for r in mapping.rules)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_any_text_is_a_mapping_or_a_one_line_error(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("m") / "mapping.toml"
    path.write_text(text, encoding="utf-8")
    try:
        load_mapping(path)
    except ConfigError as exc:
        assert "\n" not in str(exc)
