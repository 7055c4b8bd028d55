"""Email engagement in HubSpot: MailerLite's emails sent, opens, clicks and rates on each contact."""

from __future__ import annotations

import sqlite3

import pytest

from sync import engagement as module
from sync.engagement import figures_of, rate_percent
from sync.sandbox.fakes.hubspot import SCHEMA_WRITE_SCOPE, WRITE_SCOPE
from tests.conftest import FAST, seed_contacts

UPDATE = "/crm/objects/2026-09/contacts/batch/update"
NUMBERS = ("mailerlite_emails_sent", "mailerlite_opens", "mailerlite_clicks", "mailerlite_open_rate",
           "mailerlite_click_rate")


@pytest.fixture
def engage(run, hubspot_fake, monkeypatch):
    hubspot_fake.tokens["hs-test-token"] |= {WRITE_SCOPE, SCHEMA_WRITE_SCOPE}
    monkeypatch.setenv("SYNC_ENGAGEMENT", "true")
    return run


def engagement_updates(hs):
    """Batch updates carrying engagement figures, as lists of their inputs."""
    return [r.body["inputs"] for r in hs.requests_to("POST", UPDATE)
            if r.body.get("inputs") and "mailerlite_emails_sent" in r.body["inputs"][0]["properties"]]


def listings(ml):
    return len(ml.requests_to("GET", "/api/subscribers"))


def interval_passes(runner):
    """The stored due time is moved to the past, as when SYNC_ENGAGEMENT_HOURS have gone by."""
    db = sqlite3.connect(runner.state_db)
    db.execute("UPDATE meta SET value='0' WHERE key=?", (module.DUE_KEY,))
    db.commit()
    db.close()


def figures(hs, cid):
    props = hs.contacts[int(cid)]["properties"]
    return tuple(props.get(name) for name in NUMBERS)


def test_first_pass_writes_then_nothing_within_the_interval_then_only_changes(engage, hubspot_fake,
                                                                                mailerlite_fake):
    ids = seed_contacts(hubspot_fake, 10)
    first = engage()
    assert first.code == 0 and first.summary["created"] == 10
    assert first.summary["engagement_updated"] == 10 and first.summary["engagement_unmatched"] == 0
    assert figures(hubspot_fake, ids[0]) == ("0", "0", "0", "0", "0")
    assert hubspot_fake.contacts[int(ids[0])]["properties"]["mailerlite_engagement_updated_at"].endswith("Z")
    assert hubspot_fake.contacts[int(ids[0])]["properties"]["hs_email_optout"] == "false"
    created = {p["name"]: p for p in hubspot_fake.properties if p.get("groupName") == "mailerlite"}
    assert {name: created[name]["type"] for name in NUMBERS} == dict.fromkeys(NUMBERS, "number")
    assert created["mailerlite_open_rate"]["label"] == "MailerLite open rate %"
    assert created["mailerlite_engagement_updated_at"]["type"] == "datetime"
    assert all(created[name]["description"] for name in NUMBERS)
    assert any(g["name"] == "mailerlite" and g["label"] == "MailerLite" for g in hubspot_fake.property_groups)

    mailerlite_fake.set_engagement("person1@example.com", sent=4, opens=3, clicks=1)
    mailerlite_fake.set_engagement("person2@example.com", sent=4, opens=0, clicks=0)
    before = listings(mailerlite_fake), len(engagement_updates(hubspot_fake))
    quiet = engage()
    assert quiet.summary["engagement_updated"] == 0 and quiet.summary["engagement_requests"] == 0
    assert (listings(mailerlite_fake), len(engagement_updates(hubspot_fake))) == before, "not due yet"

    interval_passes(engage)
    later = engage()
    assert later.code == 0 and later.summary["engagement_updated"] == 2
    assert figures(hubspot_fake, ids[1]) == ("4", "3", "1", "75", "25")
    assert figures(hubspot_fake, ids[2]) == ("4", "0", "0", "0", "0")
    assert [len(batch) for batch in engagement_updates(hubspot_fake)[before[1]:]] == [2]


def test_one_percent_changed_costs_one_listing_and_one_batch(engage, hubspot_fake, mailerlite_fake):
    ids = seed_contacts(hubspot_fake, 200)
    first = engage()
    assert first.summary["engagement_updated"] == 200
    assert [len(batch) for batch in engagement_updates(hubspot_fake)] == [100, 100]
    for i in (17, 150):  # 1% of 200
        mailerlite_fake.set_engagement(f"person{i}@example.com", sent=10, opens=5, clicks=2)
    interval_passes(engage)
    pages, batches = listings(mailerlite_fake), len(engagement_updates(hubspot_fake))
    second = engage()
    assert second.summary["engagement_updated"] == 2
    assert listings(mailerlite_fake) - pages == 1  # 200 subscribers fit one page of the largest size
    assert [len(b) for b in engagement_updates(hubspot_fake)[batches:]] == [2]
    assert figures(hubspot_fake, ids[17]) == ("10", "5", "2", "50", "20")
    # Property groups, definitions, the listing page, the one batch update.
    assert second.summary["engagement_requests"] == 4


def test_subscribers_without_a_hubspot_contact_are_counted_never_created(engage, hubspot_fake, mailerlite_fake):
    seed_contacts(hubspot_fake, 3)
    mailerlite_fake.add_subscriber("stranger@example.com")
    mailerlite_fake.set_engagement("stranger@example.com", sent=5, opens=5, clicks=5)
    contacts = len(hubspot_fake.contacts)
    result = engage()
    assert result.code == 0 and result.summary["engagement_unmatched"] == 1
    assert result.summary["engagement_updated"] == 3
    assert len(hubspot_fake.contacts) == contacts
    assert not hubspot_fake.requests_to("POST", "/crm/objects/2026-09/contacts/search")  # matched from the state


def test_a_refused_update_is_retried_next_run_without_reading_mailerlite(engage, hubspot_fake, mailerlite_fake):
    # (A contact HubSpot says does not exist is dropped instead: tests/test_engagement_of_deleted_contacts.py.)
    ids = seed_contacts(hubspot_fake, 5)
    hubspot_fake.validation_rules[ids[1]] = "Company must be filled in"
    first = engage()
    assert first.code == 0, "the forward sync's result does not depend on the engagement pass"
    assert first.summary["created"] == 5 and first.summary["engagement_updated"] == 4
    assert "HubSpot did not take the MailerLite engagement of contact" in first.err
    assert figures(hubspot_fake, ids[1]) == (None,) * 5
    hubspot_fake.validation_rules.clear()
    pages = listings(mailerlite_fake)
    retried = engage()
    assert retried.summary["engagement_updated"] == 1
    assert figures(hubspot_fake, ids[1]) == ("0", "0", "0", "0", "0")
    assert listings(mailerlite_fake) == pages, "figures kept in the state, MailerLite not read again"
    assert engage().summary["engagement_updated"] == 0


def test_missing_scopes_stop_before_anything_is_written(run, hubspot_fake, mailerlite_fake, monkeypatch):
    seed_contacts(hubspot_fake, 3)
    monkeypatch.setenv("SYNC_ENGAGEMENT", "true")
    result = run()
    lines = [line for line in result.err.splitlines() if line.startswith("ERROR")]
    assert result.code == 2 and len(lines) == 1
    assert "missing scope crm.objects.contacts.write, crm.schemas.contacts.write" in lines[0]
    assert "SYNC_ENGAGEMENT" in lines[0]
    assert not mailerlite_fake.subscribers, "stopped before the forward sync wrote anything"
    check = run("--check")
    assert check.code == 2 and "engagement is on, but the HubSpot token lacks the scope" in check.out


def test_unknown_scopes_the_first_refused_write_stops_with_exit_2(run, hubspot_fake, mailerlite_fake, monkeypatch):
    hubspot_fake.token_info_answers = False  # a service key, perhaps: scopes cannot be learnt
    seed_contacts(hubspot_fake, 3)
    monkeypatch.setenv("SYNC_ENGAGEMENT", "true")
    result = run()
    assert result.code == 2 and "crm.schemas.contacts.write" in result.err
    assert len(mailerlite_fake.subscribers) == 3, "the forward sync's work is kept"
    assert not engagement_updates(hubspot_fake)


def test_check_says_what_engagement_will_create_and_what_is_in_the_way(engage, hubspot_fake, tmp_path):
    check = engage("--check")
    assert check.code == 0 and "note: engagement creates 6 HubSpot properties (group MailerLite)" in check.out
    hubspot_fake.add_property("mailerlite_opens", "string", "Opens (someone else's)")
    check = engage("--check")
    assert check.code == 2 and "mailerlite_opens exists with type 'string'" in check.out
    assert engage().code == 2  # a run says the same, after the forward sync


def test_engagement_can_be_turned_on_in_the_mapping_file(run, hubspot_fake, tmp_path):
    hubspot_fake.tokens["hs-test-token"] |= {WRITE_SCOPE, SCHEMA_WRITE_SCOPE}
    seed_contacts(hubspot_fake, 2)
    mapping = tmp_path / "m.toml"
    mapping.write_text("engagement = true\n")
    assert run("--mapping", str(mapping)).summary["engagement_updated"] == 2
    mapping.write_text('engagement = "yes"\n')
    bad = run("--mapping", str(mapping))
    assert bad.code == 2 and "engagement must be true or false" in bad.err


def test_a_dry_run_writes_nothing(engage, hubspot_fake, mailerlite_fake, monkeypatch):
    seed_contacts(hubspot_fake, 4)
    monkeypatch.setenv("SYNC_ENGAGEMENT", "false")
    engage()
    monkeypatch.setenv("SYNC_ENGAGEMENT", "true")
    properties = len(hubspot_fake.properties)
    dry = engage("--dry-run")
    assert dry.code == 0 and dry.summary["engagement_updated"] == 0
    assert not hubspot_fake.requests_to("POST", UPDATE)
    assert len(hubspot_fake.properties) == properties
    real = engage()  # the dry run did not move the interval on
    assert real.summary["engagement_updated"] == 4


@pytest.mark.parametrize("style", ["fraction", "percent", "object"])
def test_both_readings_of_the_rates_publish_percentages(engage, hubspot_fake, mailerlite_fake, style):
    mailerlite_fake.rate_style = style
    ids = seed_contacts(hubspot_fake, 3)
    engage()
    mailerlite_fake.set_engagement("person0@example.com", sent=8, opens=3, clicks=1)
    mailerlite_fake.set_engagement("person1@example.com", sent=200, opens=1, clicks=0)  # 0.5%, not 50%
    mailerlite_fake.set_engagement("person2@example.com", sent=1, opens=1, clicks=1)  # 100%, not 1%
    interval_passes(engage)
    assert engage().summary["engagement_updated"] == 3
    assert figures(hubspot_fake, ids[0])[3:] == ("37.5", "12.5")
    assert figures(hubspot_fake, ids[1])[3:] == ("0.5", "0")
    assert figures(hubspot_fake, ids[2])[3:] == ("100", "100")


def test_no_ping_pong_across_three_runs(engage, hubspot_fake, mailerlite_fake):
    seed_contacts(hubspot_fake, 10)
    engage()  # creates the subscribers, writes every contact's figures
    mailerlite_fake.set_engagement("person4@example.com", sent=3, opens=1, clicks=0)
    mailerlite_fake.set_engagement("person5@example.com", sent=3, opens=2, clicks=1)
    results, ml_writes = [], []
    for _ in range(3):
        interval_passes(engage)
        mark = len(mailerlite_fake.log)
        results.append(engage())
        ml_writes.append(sum(1 for r in mailerlite_fake.log[mark:] if r.method != "GET"))
    assert [r.summary["engagement_updated"] for r in results] == [2, 0, 0]
    assert ml_writes == [0, 0, 0], "contacts the engagement pass touched are read again, unchanged, not sent"
    assert all(r.summary["unchanged"] >= 2 and r.summary["updated"] == 0 for r in results[1:])


def test_an_outage_in_the_pass_leaves_the_forward_result_alone(engage, hubspot_fake, mailerlite_fake):
    seed_contacts(hubspot_fake, 5)
    hubspot_fake.faults.only_paths = ("/crm/properties/2026-09/contacts/groups",)
    hubspot_fake.faults.rate = 1.0
    hubspot_fake.faults.kinds = ("503",)
    first = engage()
    assert first.code == 0 and first.summary["created"] == 5 and first.summary["engagement_updated"] == 0
    assert "the engagement pass stopped" in first.err
    hubspot_fake.faults.rate = 0.0
    again = engage()  # the pass was not done: due at once
    assert again.code == 0 and again.summary["engagement_updated"] == 5


def test_engagement_and_write_back_share_the_group(engage, hubspot_fake, mailerlite_fake, monkeypatch):
    monkeypatch.setenv("SYNC_WRITE_BACK", "true")
    seed_contacts(hubspot_fake, 2)
    result = engage()
    assert result.code == 0 and result.summary["engagement_updated"] == 2
    assert [g["name"] for g in hubspot_fake.property_groups].count("mailerlite") == 1


@pytest.mark.parametrize("raw, count, sent, expected", [
    (0.25, 1, 4, 25.0),  # a fraction, as the counts say
    (25, 1, 4, 25.0),  # a percentage (above 1: it cannot be a fraction)
    (0.5, 1, 200, 0.5),  # 0.5 and 1 of 200: a percentage
    (0.5, 100, 200, 50.0),  # 0.5 and 100 of 200: a fraction
    (1, 1, 1, 100.0),
    (1, 1, 100, 1.0),
    ({"float": 0.875, "string": "87.5%"}, None, None, 87.5),  # as group answers carry it
    ({"float": 1, "string": "100%"}, None, None, 100.0),
    ({"float": 0.2}, None, None, 20.0),  # no text: the float is a fraction
    (0.3, None, 0, 30.0),  # nothing to compare with: a fraction, as group answers give the float
    (25, None, 0, 25.0),  # nothing to compare with, but above 1: a percentage
    ("garbled", 1, 4, 25.0),  # no usable rate: from the counts
    (None, None, None, None),
    (150, 1, 1, 100.0),  # never above 100
    (0, 0, 0, 0.0),
    (True, 1, 2, 50.0),  # a boolean is no rate
])
def test_rate_readings(raw, count, sent, expected):
    assert rate_percent(raw, count, sent) == expected


def test_subscribers_without_usable_counts_are_skipped():
    assert figures_of({"email": "a@example.com", "sent": None, "opens_count": 1, "clicks_count": 0}) is None
    assert figures_of({"sent": 3, "opens_count": "2", "clicks_count": 0, "open_rate": 0.6667,
                       "click_rate": 0})["mailerlite_open_rate"] == "66.67"


def test_the_sandbox_shows_engagement_as_hubspot_holds_it(monkeypatch, tmp_path, capsys):
    import json
    import os
    import re

    from sync import cli
    from sync import sandbox as sandbox_module
    for key in list(os.environ):
        if key.startswith(("HUBSPOT_", "MAILERLITE_", "SYNC_", "HEALTHCHECK_")):
            monkeypatch.delenv(key)
    # Engagement is off by default, in the sandbox as for real: a mapping turns it on.
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(sandbox_module.EXAMPLE_MAPPING.read_text().replace("# engagement = true", "engagement = true"))
    cli.main(["--sandbox", "--mapping", str(mapping)], FAST, sandbox_dir=tmp_path / "sandbox")
    out = capsys.readouterr().out
    assert "contacts carry their MailerLite engagement" in out
    shown = re.findall(r"sent (\d+), opens (\d+), clicks (\d+), open rate ([\d.]+)%, click rate ([\d.]+)%", out)
    assert len(shown) == sandbox_module.ENGAGEMENT_SHOWN
    for sent, opens, clicks, open_rate, click_rate in shown:  # the percentages agree with the counts
        assert float(open_rate) == round(100 * int(opens) / int(sent), 2)
        assert float(click_rate) == round(100 * int(clicks) / int(sent), 2)
    cli.main(["--sandbox", "--json", "--mapping", str(mapping)], FAST, sandbox_dir=tmp_path / "sandbox")
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (again["engagement_updated"], again["engagement_requests"]) == (0, 0)  # not due for a day


def test_with_write_back_the_scopes_are_learnt_once(engage, hubspot_fake, monkeypatch):
    monkeypatch.setenv("SYNC_WRITE_BACK", "true")
    seed_contacts(hubspot_fake, 2)
    assert engage().code == 0
    assert len(hubspot_fake.requests_to("POST", "/oauth/v2/private-apps/get/access-token-info")) == 1
