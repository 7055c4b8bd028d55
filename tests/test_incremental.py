"""Incremental runs over the durable state: only what changed, exactly once."""

from __future__ import annotations

import sqlite3

import pytest

from sync.engine import Engine, RunOptions
from sync.hubspot import HubSpotReader
from sync.mailerlite import MailerLiteClient
from sync.mapping import FieldRule, Mapping
from sync.state import SCHEMA_VERSION, State
from sync.tunables import DEFAULTS
from tests.conftest import FAST, HS_TOKEN, ML_TOKEN, seed_contacts


def ml_writes(ml) -> int:
    return sum(1 for r in ml.log if r.method in ("POST", "PUT", "DELETE"))


def upserted_emails(ml, since: int = 0):
    emails = []
    for r in ml.log[since:]:
        if r.method == "POST" and r.path == "/api/subscribers" and r.status in (200, 201):
            emails.append(r.body["email"])
        elif r.path == "/api/batch" and r.status == 200:
            emails += [i["body"]["email"] for i in r.body["requests"]]
    return emails


def _ml_besides_key_check(ml, since):
    """MailerLite requests after `since` other than the one key check (one field) every run makes."""
    return [r for r in ml.log[since:] if (r.method, r.path, r.query.get("limit")) != ("GET", "/api/fields", ["1"])]


def test_unchanged_rerun_costs_nothing_on_5000_contacts(run, hubspot_fake, mailerlite_fake):
    mailerlite_fake.limits_enabled = False
    seed_contacts(hubspot_fake, 5000)
    first = run()
    assert first.code == 0 and first.summary["created"] == 5000
    hs_before, ml_before = len(hubspot_fake.log), len(mailerlite_fake.log)
    again = run()
    assert again.code == 0 and again.summary["mode"] == "incremental"
    # The idle run's whole cost: the search and the account details in HubSpot, the key check
    # (one field, no write) in MailerLite.
    idle_ml = mailerlite_fake.log[ml_before:]
    assert [(r.method, r.path) for r in idle_ml] == [("GET", "/api/fields")], "one MailerLite read, no write"
    assert len(hubspot_fake.log) - hs_before <= 2
    assert again.summary["hubspot_requests"] <= 2 and again.summary["mailerlite_requests"] == 1


def test_seven_modified_and_three_new_make_exactly_ten_upserts(run, hubspot_fake, mailerlite_fake):
    ids = seed_contacts(hubspot_fake, 300)
    assert run().summary["created"] == 300
    for cid in ids[10:17]:
        hubspot_fake.update_contact(cid, {"firstname": "Changed"})
    hubspot_fake.update_contact(ids[20], {"hs_email_optout": "false"})  # touched, but maps the same
    new = seed_contacts(hubspot_fake, 3, start=1000, age_ms=0)
    mark = len(mailerlite_fake.log)
    result = run()
    s = result.summary
    assert (s["mode"], s["updated"], s["created"], s["unchanged"]) == ("incremental", 7, 3, 1)
    assert sorted(upserted_emails(mailerlite_fake, mark)) == sorted(
        [f"person{i}@example.com" for i in range(10, 17)] + [f"person{i}@example.com" for i in (1000, 1001, 1002)])
    assert mailerlite_fake.subscriber("person12@example.com")["fields"]["name"] == "Changed"
    assert len(new) == 3
    # The changed contacts are inside the search-lag margin, so the next run reads them again,
    # finds nothing new and writes nothing.
    mark = len(mailerlite_fake.log)
    third = run()
    assert third.summary["unchanged"] == 11 and _ml_besides_key_check(mailerlite_fake, mark) == []


# The client never pages by offset, so a fake whose cap is lowered (search_result_cap) takes the same
# path as HubSpot's 10,000 at a fifteenth of the cost; `-m slow` runs it at the real cap.
@pytest.mark.parametrize("cap,changes", [(400, 700), pytest.param(10_000, 10_300, marks=pytest.mark.slow)],
                         ids=["cap-400", "cap-10000"])
def test_more_changes_than_the_search_cap_get_through(run, hubspot_fake, mailerlite_fake, cap, changes):
    hubspot_fake.search_result_cap = cap
    mailerlite_fake.limits_enabled = False
    seed_contacts(hubspot_fake, 50)
    assert run().summary["created"] == 50
    seed_contacts(hubspot_fake, changes, start=100, age_ms=0)
    result = run()
    assert result.code == 0, result.err
    assert result.summary["mode"] == "incremental" and result.summary["created"] == changes
    assert len(mailerlite_fake.subscribers) == 50 + changes
    searches = hubspot_fake.requests_to("POST", "/crm/objects/2026-09/contacts/search")
    assert all(r.status == 200 for r in searches), "never paged past the cap"
    assert len({r.body["filterGroups"][0]["filters"][0]["value"] for r in searches}) >= 2, "a second query ran"


def test_an_instant_shared_by_more_than_a_page_is_walked_by_id(run, hubspot_fake, mailerlite_fake, monkeypatch):
    # A bulk import can give thousands of contacts the same lastmodifieddate: more than a page
    # at one instant is walked by hs_object_id. With the fake's cap lowered to 400, paging by
    # offset would also be refused past it; keyset requests never page by offset at all.
    hubspot_fake.search_result_cap = 400
    mailerlite_fake.limits_enabled = False
    seed_contacts(hubspot_fake, 5)
    run()
    instant = hubspot_fake.now_ms() + 10
    for i in range(1000):
        hubspot_fake.add_contact({"email": f"bulk{i}@example.com"}, modified_ms=instant)
    hubspot_fake.add_contact({"email": "after@example.com"}, modified_ms=instant + 5)
    result = run()
    # (created + updated: a MailerLite batch retried after a slow answer on a busy machine counts
    # its subscribers as updated)
    s = result.summary
    assert result.code == 0 and s["read"] == 1001 and s["created"] + s["updated"] == 1001
    assert len(mailerlite_fake.subscribers) == 1006
    searches = hubspot_fake.requests_to("POST", "/crm/objects/2026-09/contacts/search")
    assert all(r.status == 200 and r.body["after"] == "0" for r in searches)
    walked = [r for r in searches if r.body["sorts"] == ["hs_object_id"]]
    assert walked and all(f["operator"] == "EQ" for r in walked for f in r.body["filterGroups"][0]["filters"]
                          if f["propertyName"] == "lastmodifieddate")


def test_cleared_values_are_cleared_but_foreign_fields_untouched(run, hubspot_fake, mailerlite_fake):
    mailerlite_fake.add_field("Favourite colour")
    cid = hubspot_fake.add_contact({"email": "c@example.com", "firstname": "Cleo", "city": "Bled"}, modified_ms=1)
    run()
    mailerlite_fake.subscriber("c@example.com")["fields"]["favourite_colour"] = "green"  # set by a form
    hubspot_fake.update_contact(cid, {"city": ""})
    mark = len(mailerlite_fake.log)
    result = run()
    assert result.summary["updated"] == 1
    [body] = [r.body for r in mailerlite_fake.log[mark:] if (r.method, r.path) == ("POST", "/api/subscribers")] or \
        [i["body"] for r in mailerlite_fake.log[mark:] if r.path == "/api/batch" for i in r.body["requests"]]
    assert body["fields"] == {"city": None, "name": "Cleo"}
    fields = mailerlite_fake.subscriber("c@example.com")["fields"]
    assert fields["city"] is None and fields["name"] == "Cleo" and fields["favourite_colour"] == "green"
    # The field is now empty on both sides: nothing more to send.
    assert run("--full").summary["unchanged"] == 1


def test_full_and_force(run, hubspot_fake, mailerlite_fake):
    seed_contacts(hubspot_fake, 120)
    run()
    full = run("--full")
    assert (full.summary["mode"], full.summary["unchanged"], full.summary["updated"]) == ("full", 120, 0)
    forced = run("--full", "--force")
    assert forced.summary["updated"] == 120
    bad = run("--force")
    assert bad.code == 2 and "--force only makes sense with --full" in bad.err


def _engine(hs, ml, state_path, mapping, **options):
    reader = HubSpotReader(HS_TOKEN, hs.url, timeout=(2, 2), tunables=FAST)
    client = MailerLiteClient(ML_TOKEN, ml.base_url, timeout=(2, 2), tunables=FAST)
    return Engine(reader, client, State(state_path), mapping, RunOptions(**options), tunables=FAST)


def test_a_mapping_change_sends_exactly_the_affected_contacts(hubspot_fake, mailerlite_fake, tmp_path):
    for i in range(40):
        props = {"email": f"m{i}@example.com", "firstname": f"M{i}"}
        if i % 4 == 0:
            props["jobtitle"] = "Engineer"
        hubspot_fake.add_contact(props, modified_ms=1)
    state = tmp_path / "state.db"
    assert _engine(hubspot_fake, mailerlite_fake, state, Mapping.default()).run().counts["created"] == 40
    mailerlite_fake.add_field("Job title")
    wider = Mapping(Mapping.default().rules + (FieldRule("jobtitle", "job_title"),))
    summary = _engine(hubspot_fake, mailerlite_fake, state, wider, full=True).run()
    assert (summary.counts["updated"], summary.counts["unchanged"]) == (10, 30)
    assert mailerlite_fake.subscriber("m8@example.com")["fields"]["job_title"] == "Engineer"


def test_rejected_contacts_wait_for_a_change(run, hubspot_fake, mailerlite_fake):
    mailerlite_fake.undeliverable_domains.add("blocked.example")
    cid = hubspot_fake.add_contact({"email": "r@blocked.example"}, modified_ms=1)
    first = run()
    assert first.code == 1 and first.summary["rejected"] == 1
    writes = ml_writes(mailerlite_fake)
    again = run("--full")  # reads MailerLite's listing (drift repair), writes nothing
    assert again.code == 0 and again.summary["unchanged"] == 1 and ml_writes(mailerlite_fake) == writes
    mailerlite_fake.undeliverable_domains.clear()
    hubspot_fake.update_contact(cid, {"firstname": "Fixed"})
    fixed = run()
    assert fixed.code == 0 and fixed.summary["created"] == 1


def test_run_history_and_problems_are_recorded_without_secrets(run, hubspot_fake, mailerlite_fake):
    seed_contacts(hubspot_fake, 10)
    hubspot_fake.add_contact({"email": "bad"}, modified_ms=1)
    run()
    run()
    db = sqlite3.connect(run.state_db)
    rows = db.execute("SELECT mode, read, created, rejected, exit_code FROM runs ORDER BY id").fetchall()
    assert rows == [("full", 11, 10, 1, 1), ("incremental", 0, 0, 0, 0)]
    assert db.execute("SELECT email, kind FROM problems").fetchall() == [("bad", "rejected")]
    raw = run.state_db.read_bytes() + b"".join(p.read_bytes() for p in run.state_db.parent.glob("*-wal"))
    assert b"hs-test-token" not in raw and b"ml-test-token" not in raw


def test_recent_changes_hidden_by_search_lag_are_picked_up_next_time(run, hubspot_fake, mailerlite_fake,
                                                                     monkeypatch):
    seed_contacts(hubspot_fake, 5)
    run()
    hubspot_fake.search_lag_ms = 60_000  # search does not see the change yet
    hubspot_fake.add_contact({"email": "late@example.com"})
    first = run()
    assert first.summary["created"] == 0
    hubspot_fake.search_lag_ms = 0  # now it does
    second = run()
    assert second.summary["created"] == 1


def test_bookmark_never_passes_run_start_minus_lag(run, hubspot_fake, mailerlite_fake):
    seed_contacts(hubspot_fake, 3, age_ms=0)
    run()
    db = sqlite3.connect(run.state_db)
    bookmark = int(db.execute("SELECT value FROM meta WHERE key='bookmark_ms'").fetchone()[0])
    started = db.execute("SELECT started_at FROM runs").fetchone()[0] * 1000
    assert bookmark <= started + 1000 - DEFAULTS.search_lag_ms


def test_an_interrupted_full_pass_is_finished_first(run, hubspot_fake, mailerlite_fake):
    seed_contacts(hubspot_fake, 400)
    run()
    hubspot_fake.daily_limit = len(hubspot_fake.log) + 2  # the next full pass stops after two pages
    stopped = run("--full", "--force")
    assert stopped.code == 3
    hubspot_fake.daily_limit = 10**9
    resumed = run()
    assert resumed.summary["mode"] == "full"
    assert run().summary["mode"] == "incremental"


def test_corrupt_state_file_is_a_clear_error(run, hubspot_fake, mailerlite_fake):
    run.state_db.parent.mkdir(parents=True)
    run.state_db.write_bytes(b"this is not a database at all" * 100)
    result = run()
    assert result.code == 2 and "damaged" in result.err and "move it aside" in result.err
    assert "Traceback" not in result.err and hubspot_fake.log == []


def test_state_from_a_newer_version_is_refused(run, hubspot_fake, mailerlite_fake):
    run()
    db = sqlite3.connect(run.state_db)
    db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION + 1),))
    db.commit()
    db.close()
    result = run()
    assert result.code == 2 and "newer version" in result.err and "Traceback" not in result.err


@pytest.mark.parametrize("count", [0, 1])
def test_schema_is_created_and_versioned(tmp_path, count):
    path = tmp_path / "s.db"
    for _ in range(count + 1):
        State(path).close()
    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == (str(SCHEMA_VERSION),)
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
