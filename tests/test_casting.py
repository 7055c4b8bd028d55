"""Tables for typed casting and transforms, hostile values included."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.casting import TEXT_MAX, CastError, PropertyInfo, cast
from sync.mapping import FieldRule, Mapping, OutOfScope, Planned, PropertyGroupRule, Reject, Skip, map_contact

NUMBER = PropertyInfo("number")
DATE = PropertyInfo("date")
DATETIME = PropertyInfo("datetime")
BOOL = PropertyInfo("bool")
STRING = PropertyInfo("string")
STAGE = PropertyInfo("enumeration", {"lead": "Lead", "marketingqualifiedlead": "Marketing Qualified Lead",
                                     "customer": "Customer"})


@pytest.mark.parametrize("raw,info,expected", [
    ("12", NUMBER, 12), ("12.0", NUMBER, 12), ("12.5", NUMBER, 12.5), (" 7 ", NUMBER, 7), ("-3", NUMBER, -3),
    ("1e3", NUMBER, 1000), (".5", NUMBER, 0.5), ("true", BOOL, 1), ("false", BOOL, 0), ("0", STRING, 0),
    ("", NUMBER, None), ("   ", NUMBER, None), (None, NUMBER, None),
])
def test_numbers(raw, info, expected):
    assert cast("p", raw, "number", info)[0] == expected


@pytest.mark.parametrize("raw", ["many", "12 people", "1,5", "NaN", "inf", "1e400", "1" * 40, "😀", "true"])
def test_bad_numbers_name_property_and_value(raw):
    with pytest.raises(CastError) as err:
        cast("numemployees", raw, "number", NUMBER)
    assert "numemployees" in str(err.value) and repr(raw[:20])[:10] in str(err.value)


@pytest.mark.parametrize("raw,info,expected", [
    ("1990-02-03", DATE, "1990-02-03"),
    ("634003200000", DATE, "1990-02-03"),  # HubSpot dates can come as epoch ms at midnight UTC
    ("2024-01-05T23:30:00.000Z", DATETIME, "2024-01-05"),
    ("2024-01-05T23:30:00+02:00", DATETIME, "2024-01-05"),
    ("2024-01-06T01:30:00+02:00", DATETIME, "2024-01-05"),  # UTC date
    ("1704497400000", DATETIME, "2024-01-05"),
    ("", DATE, None),
])
def test_dates(raw, info, expected):
    assert cast("d", raw, "date", info)[0] == expected


@pytest.mark.parametrize("raw", ["next week", "31/12/2000", "2024-13-01", "99999999999999999999", "🙂"])
def test_bad_dates(raw):
    with pytest.raises(CastError):
        cast("date_of_birth", raw, "date", DATE)


@pytest.mark.parametrize("raw,info,transform,expected", [
    ("marketingqualifiedlead", STAGE, "label", "Marketing Qualified Lead"),
    ("marketingqualifiedlead", STAGE, None, "marketingqualifiedlead"),
    ("lead;customer", STAGE, "label", "Lead, Customer"),
    ("lead;;customer;", STAGE, None, "lead, customer"),
    ("unknownvalue", STAGE, "label", "unknownvalue"),
    ("  padded  ", STRING, None, "padded"),
    ("line\nbreak", STRING, None, "line\nbreak"),
    ("nul\x00byte\x07bell", STRING, None, "nulbytebell"),
    ("שלום עולם", STRING, None, "שלום עולם"),
    ("cafe\u0301", STRING, None, "café"),
    ("🎉🎉", STRING, None, "🎉🎉"),
    ("true", BOOL, None, "true"),
])
def test_text_and_labels(raw, info, transform, expected):
    assert cast("p", raw, "text", info, transform)[0] == expected


def test_booleans_to_chosen_text():
    assert cast("vip", "true", "text", BOOL, None, "Yes", "No")[0] == "Yes"
    assert cast("vip", "false", "text", BOOL, None, "Yes", "No")[0] == "No"


def test_huge_text_is_truncated_with_a_warning():
    value, warnings = cast("notes", "x" * 1_000_000, "text", STRING)
    assert len(value) == TEXT_MAX and warnings == [f"notes truncated from 1000000 to {TEXT_MAX} characters"]


def test_wrong_python_types_are_stringified_not_crashing():
    assert cast("p", 42, "text", STRING)[0] == "42"
    assert cast("p", 42, "number", NUMBER)[0] == 42


MAPPING = Mapping(
    rules=Mapping.default().rules + (FieldRule("numemployees", "employees"),
                                     FieldRule("lifecyclestage", "stage", transform="label")),
    property_groups=(PropertyGroupRule("lifecyclestage", "Stage: {label}"),),
    static_groups=("All",),
    list_groups=(("7", "Webinar"),),
)
INFO = {"numemployees": NUMBER, "lifecyclestage": STAGE}


def test_groups_from_property_static_and_lists():
    out = map_contact({"id": "1", "properties": {"email": "a@example.com", "lifecyclestage": "lead;customer"}},
                      MAPPING, INFO, frozenset({"7"}))
    assert isinstance(out, Planned)
    assert out.groups == ("All", "Stage: Customer", "Stage: Lead", "Webinar")
    assert MAPPING.manages_group("Stage: Whatever") and MAPPING.manages_group("Webinar")
    assert not MAPPING.manages_group("Hand-made group")


def test_scope_filters():
    scoped = Mapping.default(scope_lists=("9",), scope_where=(("lifecyclestage", frozenset({"customer"})),))
    contact = {"id": "1", "properties": {"email": "a@example.com", "lifecyclestage": "customer"}}
    assert isinstance(map_contact(contact, scoped, INFO, frozenset({"9"})), Planned)
    assert isinstance(map_contact(contact, scoped, INFO, frozenset()), OutOfScope)
    contact["properties"]["lifecyclestage"] = "lead"
    assert isinstance(map_contact(contact, scoped, INFO, frozenset({"9"})), OutOfScope)


def test_a_bad_value_rejects_with_the_reason():
    out = map_contact({"id": "1", "properties": {"email": "a@example.com", "numemployees": "lots"}}, MAPPING, INFO)
    assert isinstance(out, Reject) and "numemployees" in out.reason and "'lots'" in out.reason


# Any property values at all: a plan, a skip, a scope exclusion or a rejection with a reason.
_values = st.one_of(st.none(), st.text(max_size=300), st.integers().map(str), st.floats().map(str),
                    st.sampled_from(["", " ", "true", "false", "lead;customer", "2024-01-05", "1e309", "\x00"]))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["email", "firstname", "lastname", "zip", "numemployees",
                                        "lifecyclestage", "hs_email_optout", "city"]), _values))
def test_any_properties_map_without_exceptions(props):
    out = map_contact({"id": "1", "properties": props}, MAPPING, INFO, frozenset())
    assert isinstance(out, (Planned, Skip, Reject, OutOfScope))
    if isinstance(out, (Reject, Skip, OutOfScope)):
        assert out.reason
    else:
        assert out.status in (None, "unsubscribed")
        assert all(v is not None and v != "" for v in out.fields.values())
