"""Hostile contact data end to end: whatever HubSpot holds, a valid subscriber, a skip, or a
reported rejection; never a crash, never a silent drop."""

from __future__ import annotations

import csv
import io

import pytest

from tests.conftest import seed_contacts


def test_hostile_values_arrive_clean(run, hubspot_fake, mailerlite_fake):
    cases = {
        "rtl@example.com": {"firstname": "مرحبا", "lastname": "שלום"},
        "nul@example.com": {"firstname": "Ze\x00ro\x07", "city": "\x00"},
        "huge@example.com": {"company": "A" * 1_000_000},
        "first.last+newsletter@example.com": {"firstname": "Plus"},
        "unicode@exämple.de": {"firstname": "IDN"},
        "emoji@example.com": {"firstname": "🎉 Party", "lastname": "Zoe\u0308"},  # decomposed umlaut
        "  SHOUTING@EXAMPLE.COM  ": {"firstname": "Loud"},
    }
    ids = {email: hubspot_fake.add_contact({"email": email, **props}, modified_ms=1) for email, props in cases.items()}
    result = run()
    assert result.code == 0, result.err
    assert mailerlite_fake.subscriber("rtl@example.com")["fields"]["name"] == "مرحبا"
    nul = mailerlite_fake.subscriber("nul@example.com")["fields"]
    assert nul["name"] == "Zero" and nul["city"] is None
    assert len(mailerlite_fake.subscriber("huge@example.com")["fields"]["company"]) == 1024
    # The one warning names the contact and the property, so a person can shorten it in HubSpot.
    assert result.err.splitlines() == [f"WARNING: contact {ids['huge@example.com']}: company truncated from "
                                       f"1000000 to 1024 characters"]
    assert mailerlite_fake.subscriber("first.last+newsletter@example.com") is not None
    assert mailerlite_fake.subscriber("unicode@exämple.de")["fields"]["name"] == "IDN"
    assert mailerlite_fake.subscriber("emoji@example.com")["fields"]["last_name"] == "Zoë"
    assert mailerlite_fake.subscriber("shouting@example.com") is not None
    assert run("--full").summary["unchanged"] == len(cases)  # cleaned values are stable


def test_one_address_in_two_contacts_first_synced_wins_other_reported(run, hubspot_fake, mailerlite_fake):
    seed_contacts(hubspot_fake, 3)
    first = hubspot_fake.add_contact({"email": "shared@example.com", "firstname": "First"}, modified_ms=1)
    second = hubspot_fake.add_contact({"email": "Shared@Example.com", "firstname": "Second"}, modified_ms=2)
    result = run()
    assert result.code == 1 and result.summary["rejected"] == 1 and result.summary["created"] == 4
    assert mailerlite_fake.subscriber("shared@example.com")["fields"]["name"] == "First"
    rows = list(csv.DictReader(io.StringIO(run("--rejected").out)))
    assert [(r["hubspot_id"], r["reason"]) for r in rows] == [
        (second, f"email shared@example.com is already synced from HubSpot contact {first}")]
    # Changing the second contact does not let it take the address over.
    hubspot_fake.update_contact(second, {"firstname": "Second again"})
    again = run()
    assert (again.summary["rejected"], again.summary["unchanged"]) == (0, 1)  # known, not reported twice
    assert mailerlite_fake.subscriber("shared@example.com")["fields"]["name"] == "First"
    assert len(list(csv.DictReader(io.StringIO(run("--rejected").out)))) == 1
    # Once the first one is gone from HubSpot, the second one gets the address.
    hubspot_fake.archive_contact(first)
    run("--full")
    freed = run("--full")
    assert freed.code == 0 and freed.summary["updated"] == 1
    assert mailerlite_fake.subscriber("shared@example.com")["fields"]["name"] == "Second again"


# -- invalid text: one contact rejected, never the run (issue 15 item 1) ------------------------------

def _rejected_rows(run):
    return list(csv.DictReader(io.StringIO(run("--rejected").out)))


@pytest.mark.parametrize("props", [
    {"email": "bad\ud800x@example.com"},
    {"email": "lone@example.com", "firstname": "bad\ud800x"},
    {"email": "lone@example.com", "city": "\udfff"},
], ids=["in-email", "in-name", "alone"])
def test_a_lone_surrogate_rejects_that_contact_and_everything_else_syncs(run, hubspot_fake, mailerlite_fake, props):
    seed_contacts(hubspot_fake, 3)
    hubspot_fake.add_contact(props, modified_ms=1)  # JSON carries it as "\ud800": valid JSON
    check = run("--check")
    assert "unexpected" not in check.err and "Traceback" not in check.err
    dry = run("--dry-run")
    assert dry.code == 1 and dry.summary["would_send"] == 3, dry.err
    result = run()
    assert result.code == 1, result.err
    assert (result.summary["created"], result.summary["rejected"]) == (3, 1)
    [row] = _rejected_rows(run)
    assert "invalid text" in row["reason"]
    assert run().code == 0  # recorded: not reported again until the contact changes


def _rewrite(fake, old: bytes, new: bytes):
    """A fault that answers as usual, with some bytes of the body replaced."""
    def action(request):
        response = fake._dispatch(request)
        response.set_data(response.get_data().replace(old, new))
        return response
    return action


@pytest.mark.parametrize("field,value", [("email", b"bad\xff@example.com"), ("firstname", b"Ren\xe9")])
def test_invalid_utf8_in_one_contact_rejects_only_that_contact(run, hubspot_fake, mailerlite_fake, field, value):
    seed_contacts(hubspot_fake, 3)
    hubspot_fake.add_contact({"email": "latin1@example.com", field: "MARKER-BYTES"}, modified_ms=1)
    hubspot_fake.faults.rate, hubspot_fake.faults.kinds = 1.0, (_rewrite(hubspot_fake, b"MARKER-BYTES", value),)
    result = run()
    assert result.code == 1, result.err
    assert (result.summary["created"], result.summary["rejected"]) == (3, 1)
    assert "invalid text" in _rejected_rows(run)[0]["reason"]


@pytest.mark.parametrize("email", ["zero\u200bwidth@example.com", "rtl\u202eoverride@example.com",
                                   "joiner\u2060@example.com", "bom\ufeff@example.com"])
def test_invisible_and_bidi_characters_make_an_email_invalid(run, hubspot_fake, mailerlite_fake, email):
    hubspot_fake.add_contact({"email": email}, modified_ms=1)
    hubspot_fake.add_contact({"email": "plain@example.com"}, modified_ms=2)
    result = run()
    assert (result.code, result.summary["created"], result.summary["rejected"]) == (1, 1, 1)
    assert "invisible or direction-changing" in _rejected_rows(run)[0]["reason"]


# -- terminal and log injection (item 7) -------------------------------------------------------------

ESCAPES = ("\x1b]0;pwned\x07", "\x1b[2J", "\u202e", "\r")


def test_escape_sequences_in_data_never_reach_the_terminal_or_the_log_raw(run, hubspot_fake, mailerlite_fake,
                                                                        tmp_path):
    hubspot_fake.add_contact({"email": "evil\x1b]0;pwned\x07@example.com"}, modified_ms=1)
    hubspot_fake.add_contact({"email": "name@example.com", "firstname": "Bob\u202eevil", "lastname": "x" * 2000},
                             modified_ms=2)
    log_file = tmp_path / "sync.log"
    outputs = [run("--verbose", "--log-file", str(log_file)), run("--check"), run("--rejected"),
               run("--history")]
    assert outputs[0].code == 1 and "\\x1b" in outputs[0].err  # shown, escaped
    for result in outputs:
        for raw in ESCAPES:
            assert raw not in result.out + result.err
    for raw in ESCAPES:
        assert raw not in log_file.read_text(encoding="utf-8")
    # The name itself is kept as HubSpot has it: only its display is escaped.
    assert mailerlite_fake.subscriber("name@example.com")["fields"]["name"] == "Bob\u202eevil"
