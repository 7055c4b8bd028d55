"""The pure rules of companies and deals (sync/associated_values.py) and their mapping, as tables."""

from __future__ import annotations

import pytest

from sync.associated_values import (
    aggregates,
    contact_values,
    infos,
    is_primary,
    latest_deal,
    name_problem,
    primary_company,
)
from sync.casting import PropertyInfo
from sync.mapping import FieldRule, Mapping, Planned, PropertyGroupRule, map_contact


@pytest.mark.parametrize("links,expected", [
    ([], None),
    ([(7, False)], 7),
    ([(9, False), (3, False)], 3),  # no Primary label: the lowest id
    ([(3, False), (9, True)], 9),  # the Primary one, whatever its id
    ([(9, True), (4, True)], 4),  # two labelled (cannot happen in HubSpot): still one answer
])
def test_primary_company(links, expected):
    assert primary_company(links) == expected


@pytest.mark.parametrize("types,expected", [
    ([{"category": "HUBSPOT_DEFINED", "typeId": 1, "label": "Primary"}], True),
    ([{"category": "HUBSPOT_DEFINED", "typeId": "1"}], True),
    ([{"category": "HUBSPOT_DEFINED", "typeId": 279, "label": None}], False),
    ([{"category": "USER_DEFINED", "typeId": 1, "label": "Primary"}], False),  # a user's label of that id
    (None, False), ("Primary", False), ([None], False),
])
def test_is_primary(types, expected):
    assert is_primary(types) is expected


@pytest.mark.parametrize("deals,expected", [
    ({}, None),
    ({1: {"createdate": "2024-01-01T00:00:00Z"}, 2: {"createdate": "2023-01-01T00:00:00Z"}}, 1),
    ({1: {"createdate": "2024-01-01T00:00:00Z"}, 2: {"createdate": "2024-01-01T00:00:00Z"}}, 2),  # tie: higher id
    ({5: {"createdate": None}, 2: {"createdate": "1704067200000"}}, 2),  # epoch ms; a missing date is oldest
])
def test_latest_deal(deals, expected):
    assert latest_deal(deals) == expected


@pytest.mark.parametrize("deals,expected", [
    ({}, ("0", "0", "0", "0")),
    ({1: {"hs_is_closed": "true", "hs_is_closed_won": "true", "amount": "1000.50"},
      2: {"hs_is_closed": "true", "hs_is_closed_won": "true", "amount": ""},
      3: {"hs_is_closed": "false", "hs_is_closed_won": "false", "amount": "99"},
      4: {"hs_is_closed": "true", "hs_is_closed_won": "false", "amount": "5"}}, ("4", "1", "2", "1000.5")),
    ({1: {"hs_is_closed_won": "TRUE", "amount": "12"}, 2: {"hs_is_closed_won": "true", "amount": "abc"}},
     ("2", "2", "2", "12")),  # an unreadable amount counts 0; no hs_is_closed: open
    ({1: {"hs_is_closed_won": "true", "amount": "0.1"}, 2: {"hs_is_closed_won": "true", "amount": "0.2"}},
     ("2", "2", "2", "0.3")),  # decimal, not float, arithmetic
])
def test_aggregates(deals, expected):
    got = aggregates(deals)
    assert (got["deals.count"], got["deals.open_count"], got["deals.won_count"], got["deals.won_amount"]) == expected


def test_contact_values_without_company_or_deal_are_empty_and_counts_zero():
    names = ["company.name", "deal.dealstage", "deals.count", "deals.won_amount"]
    assert contact_values(names, None, {}) == {"company.name": None, "deal.dealstage": None,
                                               "deals.count": "0", "deals.won_amount": "0"}


def test_contact_values_take_the_latest_deal_and_the_primary_company():
    deals = {10: {"createdate": "2024-01-01T00:00:00Z", "dealstage": "closedwon"},
             11: {"createdate": "2024-06-01T00:00:00Z", "dealstage": "contractsent"}}
    got = contact_values(["company.industry", "deal.dealstage"], {"industry": "RETAIL"}, deals)
    assert got == {"company.industry": "RETAIL", "deal.dealstage": "contractsent"}


@pytest.mark.parametrize("name,problem", [
    ("jobtitle", None), ("company.industry", None), ("deal.dealstage", None), ("deals.won_amount", None),
    ("deals.total", "is not one of deals.count"), ("deals.wonamount", "did you mean deals.won_amount?"),
    ("company.", "give one company property"), ("deal.a.b", "give one deal property"),
    ("companies.industry", "is not a HubSpot property name"),
])
def test_name_problem(name, problem):
    found = name_problem(name)
    assert (found is None) if problem is None else (problem in str(found))


def test_infos_take_the_schemas_and_the_pipeline_labels():
    got = infos(["company.industry", "deal.dealstage", "deals.count", "company.nosuch"],
                {"industry": PropertyInfo("enumeration", {"RETAIL": "Retail"})},
                {"dealstage": PropertyInfo("enumeration", {"closedwon": "Closed Won"})},
                {"closedwon": "Won (pipeline)", "custom1": "Custom stage"})
    assert got["company.industry"].labels == {"RETAIL": "Retail"}
    assert got["deal.dealstage"].labels == {"closedwon": "Closed Won", "custom1": "Custom stage"}
    assert got["deals.count"].type == "number" and "company.nosuch" not in got


def test_mapping_names_associated_values_apart_from_contact_properties():
    mapping = Mapping((FieldRule("jobtitle", "job_title"), FieldRule("company.industry", "industry")),
                      property_groups=(PropertyGroupRule("deal.dealstage", "Deal: {label}"),),
                      scope_where=(("company.lifecyclestage", frozenset({"customer"})),))
    assert "company.industry" not in mapping.properties() and "jobtitle" in mapping.properties()
    assert mapping.associated_names() == ["company.industry", "company.lifecyclestage", "deal.dealstage"]


@pytest.mark.parametrize("props,fields,groups", [
    ({"company.industry": "RETAIL", "deals.count": "2", "deal.dealstage": "closedwon",
      "company.lifecyclestage": "customer"}, {"industry": "Retail", "deals": 2}, ("Deal: Closed Won",)),
    ({"company.industry": None, "deals.count": "0", "deal.dealstage": None, "company.lifecyclestage": "customer"},
     {"deals": 0}, ()),
])
def test_map_contact_reads_associated_values_like_properties(props, fields, groups):
    mapping = Mapping((FieldRule("company.industry", "industry", transform="label"),
                       FieldRule("deals.count", "deals")),
                      property_groups=(PropertyGroupRule("deal.dealstage", "Deal: {label}"),),
                      scope_where=(("company.lifecyclestage", frozenset({"customer"})),))
    info = {"company.industry": PropertyInfo("enumeration", {"RETAIL": "Retail"}),
            "deals.count": PropertyInfo("number"),
            "deal.dealstage": PropertyInfo("enumeration", {"closedwon": "Closed Won"})}
    planned = map_contact({"id": "1", "properties": {"email": "a@example.com", **props}}, mapping, info)
    assert isinstance(planned, Planned)
    assert planned.fields == fields and planned.groups == groups


def test_a_company_outside_the_scope_puts_the_contact_out_of_scope():
    mapping = Mapping((), scope_where=(("company.lifecyclestage", frozenset({"customer"})),))
    outcome = map_contact({"id": "1", "properties": {"email": "a@example.com", "company.lifecyclestage": "lead"}},
                          mapping)
    assert type(outcome).__name__ == "OutOfScope"


def test_opt_outs_are_never_read_from_a_company_or_deal(tmp_path):
    from sync.errors import ConfigError
    from sync.mapping_file import load_mapping
    path = tmp_path / "mapping.toml"
    path.write_text('[consent]\noptout_properties = ["hs_email_optout", "company.hs_email_optout"]\n')
    with pytest.raises(ConfigError, match="is not a contact property"):
        load_mapping(path)
