"""Pure-function tables for the mapping and the retry helpers."""

from __future__ import annotations

import pytest

from sync.mapping import TEXT_MAX, Mapping, Planned, Reject, Skip, map_contact
from sync.retrying import parse_retry_after

DEFAULT = Mapping.default()


def contact(**props):
    return {"id": "1", "properties": props}


@pytest.mark.parametrize("raw,expected", [
    ("a@example.com", "a@example.com"),
    ("  A@Example.COM\t", "a@example.com"),
    ("first.last+tag@sub.example.co.uk", "first.last+tag@sub.example.co.uk"),
    ("ünïcode@exämple.de", "ünïcode@exämple.de"),
])
def test_valid_emails_are_normalised(raw, expected):
    out = map_contact(contact(email=raw), DEFAULT)
    assert isinstance(out, Planned) and out.email == expected


@pytest.mark.parametrize("raw", [None, "", "   "])
def test_no_email_is_a_skip(raw):
    assert map_contact(contact(email=raw), DEFAULT) == Skip("no email address")


@pytest.mark.parametrize("raw", ["plain", "a@b", "a@@b.com", "a b@c.com", "a@b..com", "@b.com", "a@.com",
                                 "a\x00@b.com", "x" * 250 + "@b.com"])
def test_invalid_emails_are_rejected_with_a_reason(raw):
    out = map_contact(contact(email=raw), DEFAULT)
    assert isinstance(out, Reject) and out.reason


@pytest.mark.parametrize("props,fields", [
    ({"firstname": "Ana", "lastname": "Novak"}, {"name": "Ana", "last_name": "Novak"}),
    ({"firstname": "", "lastname": "  "}, {}),
    ({"zip": "1000", "state": "LJ", "country": "SI"}, {"z_i_p": "1000", "state": "LJ", "country": "SI"}),
    ({"firstname": "😀 Zoë", "city": "Škofja\u0000 Loka"}, {"name": "😀 Zoë", "city": "Škofja Loka"}),
    ({"firstname": "e\u0301"}, {"name": "é"}),  # NFC: one code point
    ({"jobtitle": "not mapped by default"}, {}),
    ({"firstname": None}, {}),
])
def test_default_field_mapping(props, fields):
    out = map_contact(contact(email="a@example.com", **props), DEFAULT)
    assert isinstance(out, Planned) and out.fields == fields


def test_long_text_is_truncated_with_a_warning():
    out = map_contact(contact(email="a@example.com", company="x" * (TEXT_MAX + 5)), DEFAULT)
    assert isinstance(out, Planned) and len(out.fields["company"]) == TEXT_MAX
    assert out.warnings and "truncated" in out.warnings[0]


@pytest.mark.parametrize("optout,status", [("true", "unsubscribed"), ("TRUE", "unsubscribed"), ("false", None),
                                           ("", None), (None, None), ("yes", None)])
def test_opt_out_becomes_unsubscribed_and_never_active(optout, status):
    out = map_contact(contact(email="a@example.com", hs_email_optout=optout), DEFAULT)
    assert out.status == status
    assert out.payload().get("status") == status


def test_payload_clears_only_what_is_asked_and_fingerprint_ignores_clears():
    planned = map_contact(contact(email="a@example.com", firstname="Ana"), DEFAULT)
    assert planned.payload() == {"email": "a@example.com", "fields": {"name": "Ana"}}
    assert planned.payload(frozenset({"city", "name"})) == {"email": "a@example.com",
                                                             "fields": {"city": None, "name": "Ana"}}
    other = map_contact(contact(email="a@example.com", firstname="Ann"), DEFAULT)
    assert planned.fingerprint() != other.fingerprint()
    same = map_contact(contact(email=" A@example.com", firstname="Ana "), DEFAULT)
    assert planned.fingerprint() == same.fingerprint()


def test_properties_to_read():
    assert {"email", "hs_email_optout", "lastmodifieddate", "firstname", "zip"} <= set(DEFAULT.properties())


@pytest.mark.parametrize("value,expected", [
    (None, None), ("", None), ("5", 5.0), ("0.25", 0.25), (" 30 ", 30.0), ("-3", 0.0), ("soon", None),
])
def test_parse_retry_after(value, expected):
    assert parse_retry_after(value) == expected


def test_parse_retry_after_http_date():
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
