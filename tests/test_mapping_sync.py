"""End-to-end runs with mapping files: typed custom fields, groups, scope, leaving scope, --check."""

from __future__ import annotations

import sqlite3
from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync.casting import PropertyInfo
from sync.mailerlite import MailerLiteClient
from sync.mapping import Planned, map_contact
from sync.mapping_file import load_mapping
from sync.sandbox.fakes.mailerlite import FakeMailerLite
from tests.conftest import FAST, ML_TOKEN, seed_contacts

TYPED = '''
create_missing_fields = {create}
[fields]
numemployees = {{ field = "employees", type = "number" }}
date_of_birth = {{ field = "birthday", type = "date" }}
lifecyclestage = {{ field = "lifecycle_stage", transform = "label" }}
jobtitle = "job_title"
'''


def mapping_file(run, text: str):
    path = run.tmp_path / "mapping.toml"
    path.write_text(text)
    return str(path)


def groups_of(ml, email):
    return sorted(ml.groups[g]["name"] for g in ml.subscriber(email)["groups"])


def test_custom_fields_arrive_with_real_types(run, hubspot_fake, mailerlite_fake):
    mailerlite_fake.add_field("Employees", "number")
    mailerlite_fake.add_field("Birthday", "date")
    mailerlite_fake.add_field("Lifecycle stage", "text")
    mailerlite_fake.add_field("Job title", "text")
    hubspot_fake.add_contact({"email": "t@example.com", "numemployees": "250", "date_of_birth": "1990-02-03",
                              "lifecyclestage": "marketingqualifiedlead", "jobtitle": "CTO"}, modified_ms=1)
    hubspot_fake.add_contact({"email": "bad@example.com", "numemployees": "lots"}, modified_ms=1)
    result = run("--mapping", mapping_file(run, TYPED.format(create="false")))
    assert result.summary["created"] == 1 and result.summary["rejected"] == 1 and result.code == 1
    fields = mailerlite_fake.subscriber("t@example.com")["fields"]
    assert fields["employees"] == 250 and fields["birthday"] == "1990-02-03"
    assert fields["lifecycle_stage"] == "Marketing Qualified Lead" and fields["job_title"] == "CTO"
    assert mailerlite_fake.subscriber("bad@example.com") is None
    db = sqlite3.connect(run.state_db)
    assert db.execute("SELECT email, kind, reason FROM problems").fetchall() == [
        ("bad@example.com", "rejected", "property numemployees value 'lots' is not a number")]


def test_missing_fields_are_created_with_their_types(run, hubspot_fake, mailerlite_fake):
    hubspot_fake.add_contact({"email": "t@example.com", "numemployees": "12", "date_of_birth": "1990-02-03"},
                             modified_ms=1)
    result = run("--mapping", mapping_file(run, TYPED.format(create="true")))
    assert result.code == 0, result.err
    types = {f["key"]: f["type"] for f in mailerlite_fake.fields}
    assert (types["employees"], types["birthday"], types["lifecycle_stage"], types["job_title"]) == \
        ("number", "date", "text", "text")
    assert mailerlite_fake.subscriber("t@example.com")["fields"]["employees"] == 12


def test_missing_fields_stop_the_run_before_any_write(run, hubspot_fake, mailerlite_fake):
    seed_contacts(hubspot_fake, 5)
    result = run("--mapping", mapping_file(run, TYPED.format(create="false")))
    assert result.code == 2
    lines = [line for line in result.err.splitlines() if line.startswith("ERROR")]
    assert len(lines) == 1 and "birthday, employees, job_title, lifecycle_stage" in lines[0]
    assert mailerlite_fake.subscribers == {} and not any(r.method == "POST" for r in mailerlite_fake.log)


def test_a_field_type_clash_is_a_configuration_error(run, hubspot_fake, mailerlite_fake):
    mailerlite_fake.add_field("Employees", "text")
    hubspot_fake.add_contact({"email": "t@example.com", "numemployees": "12"}, modified_ms=1)
    text = 'create_missing_fields = true\n[fields]\nnumemployees = { field = "employees", type = "number" }\n'
    result = run("--mapping", mapping_file(run, text))
    assert result.code == 2 and "employees is text in MailerLite but the mapping says number" in result.err


GROUPS = '''
[groups]
all = ["From HubSpot"]
property = { lifecyclestage = "Stage: {label}" }
lists = { "77" = "Webinar" }
'''


def test_groups_are_joined_and_left_as_rules_stop_matching(run, hubspot_fake, mailerlite_fake, monkeypatch):
    monkeypatch.setenv("MAILERLITE_GROUPS", "Newsletter, Everyone")
    handmade = mailerlite_fake.add_group("Hand-made")
    lead = hubspot_fake.add_contact({"email": "lead@example.com", "lifecyclestage": "lead"}, modified_ms=1)
    other = hubspot_fake.add_contact({"email": "other@example.com", "lifecyclestage": "customer"}, modified_ms=1)
    hubspot_fake.lists["77"] = [int(lead)]
    path = mapping_file(run, GROUPS)
    assert run("--mapping", path).code == 0
    assert groups_of(mailerlite_fake, "lead@example.com") == ["Everyone", "From HubSpot", "Newsletter",
                                                              "Stage: Lead", "Webinar"]
    assert groups_of(mailerlite_fake, "other@example.com") == ["Everyone", "From HubSpot", "Newsletter",
                                                               "Stage: Customer"]
    # Someone adds a group by hand; the stage changes; the contact leaves the list.
    mailerlite_fake.subscriber("lead@example.com")["groups"].append(handmade["id"])
    hubspot_fake.update_contact(lead, {"lifecyclestage": "customer"})
    hubspot_fake.lists["77"] = [int(other)]  # list membership changes do not modify contacts
    result = run("--mapping", path)
    assert result.code == 0 and result.summary["updated"] == 2
    assert groups_of(mailerlite_fake, "lead@example.com") == ["Everyone", "From HubSpot", "Hand-made", "Newsletter",
                                                              "Stage: Customer"]
    assert groups_of(mailerlite_fake, "other@example.com") == ["Everyone", "From HubSpot", "Newsletter",
                                                               "Stage: Customer", "Webinar"]
    assert sum(1 for g in mailerlite_fake.groups.values() if g["name"] == "Stage: Customer") == 1


SCOPED = '''
[groups]
lists = { "55" = "Members" }
[scope]
lists = ["55"]
'''


def test_list_scoped_sync_follows_membership(run, hubspot_fake, mailerlite_fake):
    ids = seed_contacts(hubspot_fake, 30)
    hubspot_fake.lists["55"] = [int(i) for i in ids[:10]]
    path = mapping_file(run, SCOPED)
    first = run("--mapping", path)
    assert first.summary["created"] == 10 and len(mailerlite_fake.subscribers) == 10
    assert not hubspot_fake.requests_to("GET", "/crm/objects/2026-09/contacts"), "members are read by id, not listed"
    hubspot_fake.lists["55"] = [int(i) for i in ids[2:12]]  # two leave, two join, none modified
    second = run("--mapping", path)
    s = second.summary
    assert (s["mode"], s["created"], s["left_scope"]) == ("incremental", 2, 2)
    assert groups_of(mailerlite_fake, "person0@example.com") == []  # left: out of the managed group
    assert groups_of(mailerlite_fake, "person11@example.com") == ["Members"]
    assert mailerlite_fake.subscriber("person0@example.com")["status"] == "active"  # never deleted


def test_property_scope_filter(run, hubspot_fake, mailerlite_fake):
    hubspot_fake.add_contact({"email": "c@example.com", "lifecyclestage": "customer"}, modified_ms=1)
    hubspot_fake.add_contact({"email": "l@example.com", "lifecyclestage": "lead"}, modified_ms=1)
    path = mapping_file(run, '[scope.where]\nlifecyclestage = ["customer"]\n')
    result = run("--mapping", path)
    assert (result.summary["created"], result.summary["skipped"]) == (1, 1)
    assert mailerlite_fake.subscriber("l@example.com") is None


def test_archived_contacts_leave_on_full_pass_and_daily_check(run, hubspot_fake, mailerlite_fake, monkeypatch):
    ids = seed_contacts(hubspot_fake, 6)
    path = mapping_file(run, '[groups]\nall = ["Synced"]\n')
    run("--mapping", path)
    hubspot_fake.archive_contact(ids[0])
    full = run("--mapping", path, "--full")
    assert full.summary["left_scope"] == 1 and groups_of(mailerlite_fake, "person0@example.com") == []
    assert groups_of(mailerlite_fake, "person1@example.com") == ["Synced"]
    hubspot_fake.archive_contact(ids[1])
    quiet = run("--mapping", path)
    assert quiet.summary["left_scope"] == 0  # the archived listing is checked once a day
    checked = run("--mapping", path, tunables=replace(FAST, archived_check_ms=0))
    assert checked.summary["left_scope"] == 1 and groups_of(mailerlite_fake, "person1@example.com") == []


def test_on_leave_unsubscribe_and_email_change(run, hubspot_fake, mailerlite_fake):
    cid = hubspot_fake.add_contact({"email": "old@example.com", "firstname": "Olga"}, modified_ms=1)
    path = mapping_file(run, 'on_leave = "unsubscribe"\n')
    run("--mapping", path)
    hubspot_fake.update_contact(cid, {"email": "new@example.com"})
    result = run("--mapping", path)
    assert (result.summary["created"], result.summary["left_scope"]) == (1, 1)
    assert mailerlite_fake.subscriber("old@example.com")["status"] == "unsubscribed"
    assert mailerlite_fake.subscriber("new@example.com")["fields"]["name"] == "Olga"
    assert mailerlite_fake.subscriber("new@example.com")["status"] == "active"


def test_merged_contacts_leave(run, hubspot_fake, mailerlite_fake):
    a = hubspot_fake.add_contact({"email": "a@example.com"}, modified_ms=1)
    b = hubspot_fake.add_contact({"email": "b@example.com"}, modified_ms=1)
    path = mapping_file(run, '[groups]\nall = ["Synced"]\n')
    run("--mapping", path)
    hubspot_fake.update_contact(b, {"hs_merged_object_ids": a, "hs_additional_emails": "a@example.com"})
    hubspot_fake.archive_contact(a)
    result = run("--mapping", path)
    assert result.summary["left_scope"] == 1
    assert groups_of(mailerlite_fake, "a@example.com") == [] and groups_of(mailerlite_fake, "b@example.com") == [
        "Synced"]


def test_check_passes_and_shows_samples(run, hubspot_fake, mailerlite_fake):
    hubspot_fake.add_contact({"email": "s@example.com", "firstname": "Sample", "numemployees": "40"}, modified_ms=1)
    path = mapping_file(run, TYPED.format(create="true"))
    result = run("--mapping", path, "--check")
    assert result.code == 0, result.out
    assert "All checks passed." in result.out and "Sample" in result.out and "numemployees" in result.out
    assert "MailerLite field employees (number) will be created" in result.out
    assert all(r.method == "GET" for r in mailerlite_fake.log) and mailerlite_fake.fields[-1]["key"] == "z_i_p"


def test_check_lists_every_problem(run, hubspot_fake, mailerlite_fake):
    text = TYPED.format(create="false") + 'no_such_property = "x_field"\n[scope]\nlists = ["404"]\n'
    result = run("--mapping", mapping_file(run, text), "--check")
    assert result.code == 2
    assert "HubSpot has no contact property 'no_such_property'" in result.out
    assert "MailerLite has no field 'employees'" in result.out
    assert "HubSpot has no list with id 404" in result.out


def test_check_without_the_schema_scope(run, hubspot_fake, mailerlite_fake, tmp_path):
    hubspot_fake.tokens["hs-test-token"] = {"crm.objects.contacts.read"}
    plain = run("--check")
    assert plain.code == 0 and "note: the HubSpot token lacks the scope crm.schemas.contacts.read: contacts still " \
                               "sync" in plain.out
    assert "rejected the access token" not in plain.out  # the token works: it only lacks an optional scope
    labelled = run("--check", "--mapping", mapping_file(run, '[fields]\nlifecyclestage = { field = "stage", '
                                                         'transform = "label" }\n'))
    assert labelled.code == 2
    assert "  - the HubSpot token lacks the scope crm.schemas.contacts.read, which this mapping needs for labels" \
        in labelled.out


def test_check_with_bad_tokens(run, hubspot_fake, mailerlite_fake, monkeypatch):
    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", "bad")
    monkeypatch.setenv("MAILERLITE_API_KEY", "bad")
    result = run("--check")
    assert result.code == 2
    assert "HubSpot rejected the access token" in result.out and "MailerLite rejected the API key" in result.out


_props = st.dictionaries(
    st.sampled_from(["email", "firstname", "zip", "numemployees", "date_of_birth", "lifecyclestage", "jobtitle",
                     "hs_email_optout"]),
    st.one_of(st.none(), st.text(max_size=200), st.sampled_from(["12", "1990-02-03", "lead;customer", "true", ""]),
              st.emails()))


def test_any_properties_give_an_accepted_payload_or_a_reason(tmp_path):
    (tmp_path / "m.toml").write_text(TYPED.format(create="true"))
    mapping = load_mapping(tmp_path / "m.toml")
    info = {"numemployees": PropertyInfo("number"), "date_of_birth": PropertyInfo("date"),
            "lifecyclestage": PropertyInfo("enumeration", {"lead": "Lead"})}
    with FakeMailerLite() as fake:
        fake.limits_enabled = False
        for name, kind in (("Employees", "number"), ("Birthday", "date"), ("Lifecycle stage", "text"),
                           ("Job title", "text")):
            fake.add_field(name, kind)
        client = MailerLiteClient(ML_TOKEN, fake.base_url, timeout=(2, 5), tunables=FAST)

        @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(_props)
        def check(props):
            out = map_contact({"id": "1", "properties": props}, mapping, info)
            if isinstance(out, Planned):
                answer = client.upsert(out.payload())
                assert answer.code in (200, 201), (out.payload(), answer.body)
            else:
                assert out.reason

        check()
