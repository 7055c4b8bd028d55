"""Issue 24: start from what MailerLite already holds (adoption), repair drift with --full, survive a
lost or restored state. Runs main.py against the fakes; the comparison rules as tables."""

from __future__ import annotations

import shutil

import pytest

from sync.adoption import Held, compare, listing_worth_reading, same_value, state_mismatch
from sync.mapping import Mapping, Planned
from tests.conftest import seed_contacts

KEY_CHECK = 1  # every run proves the MailerLite key with one cheap request (accounts.py), idle ones too

GROUPS = '[groups]\nall = ["Synced"]\nproperty = { lifecyclestage = "Stage: {value}" }\n'


def upserted(ml, since: int = 0):
    """Addresses sent to MailerLite (single upserts and batch items) since log position `since`."""
    emails = []
    for r in ml.log[since:]:
        if r.method == "POST" and r.path == "/api/subscribers":
            emails.append(r.body["email"])
        elif r.method == "POST" and r.path == "/api/batch":
            emails += [item["body"]["email"] for item in r.body["requests"]]
    return emails


def writes(ml, since: int = 0) -> int:
    return sum(1 for r in ml.log[since:] if r.method in ("POST", "PUT", "DELETE"))


def fill_mailerlite(ml, n: int, start: int = 0) -> None:
    """What an earlier integration left: the subscribers seed_contacts' contacts map to, in forms
    MailerLite's equality takes as the same (padding, a number for a text zip, a null field)."""
    for i in range(start, start + n):
        ml.add_subscriber(f"person{i}@example.com", fields={
            "name": f"First{i} " if i % 3 == 0 else f"First{i}", "last_name": f"Last{i}",
            "company": f"Company {i % 7}", "city": "Ljubljana", "z_i_p": 1000 + i % 50 if i % 2 else f"{1000 + i % 50}",
            "phone": None})


def groups_of(ml, email):
    return sorted(ml.groups[g]["name"] for g in ml.subscriber(email)["groups"])


def mapping_file(run, text: str) -> str:
    path = run.tmp_path / "mapping.toml"
    path.write_text(text)
    return str(path)


@pytest.fixture(params=[(1000, "clamp"), (100, "clamp"), (100, "422")], ids=["max-1000", "max-100-clamped",
                                                                               "max-100-refused"])
def page_reading(request, mailerlite_fake):
    """Both readings of the listing's undocumented largest page (and the generous one)."""
    mailerlite_fake.subscriber_list_max, mailerlite_fake.limit_too_big = request.param
    return request.param


# -- adoption on a first run ----------------------------------------------------------------------------------

def test_first_run_adopts_an_account_that_already_matches(run, hubspot_fake, mailerlite_fake, page_reading):
    maximum, _ = page_reading
    ids = seed_contacts(hubspot_fake, 250)
    fill_mailerlite(mailerlite_fake, 250)
    first = run()
    assert first.code == 0, first.err
    s = first.summary
    assert (s["mode"], s["adopted"], s["created"], s["updated"]) == ("full", 250, 0, 0)
    assert writes(mailerlite_fake) == 0, "nothing MailerLite already holds is written"
    listing = [r for r in mailerlite_fake.requests_to("GET", "/api/subscribers") if r.query["limit"] != ["0"]]
    assert all(r.query.get("include") == ["groups"] for r in listing)
    assert len([r for r in listing if r.status == 200]) == -(-250 // maximum)  # the largest page it takes
    # Recorded as synced: the next hourly run costs nothing, a real change sends exactly that contact.
    mark = len(mailerlite_fake.log)
    again = run()
    assert again.code == 0 and again.summary["mailerlite_requests"] == KEY_CHECK
    assert len(mailerlite_fake.log) == mark + KEY_CHECK
    hubspot_fake.update_contact(ids[7], {"firstname": "Seven"})
    changed = run()
    assert changed.summary["updated"] == 1 and upserted(mailerlite_fake, mark) == ["person7@example.com"]
    assert mailerlite_fake.subscriber("person7@example.com")["fields"]["name"] == "Seven"


def test_first_run_sends_only_the_differences_on_each_side(run, hubspot_fake, mailerlite_fake):
    ids = seed_contacts(hubspot_fake, 60)
    fill_mailerlite(mailerlite_fake, 60)
    hubspot_fake.update_contact(ids[1], {"city": "Maribor"})  # HubSpot's side changed
    mailerlite_fake.subscriber("person2@example.com")["fields"]["company"] = "Edited in MailerLite"
    mailerlite_fake.delete_subscriber("person3@example.com")  # never made it to MailerLite
    hubspot_fake.update_contact(ids[4], {"hs_email_optout": "true"})  # opted out in HubSpot: unsubscribe
    mailerlite_fake.subscriber("person5@example.com")["status"] = "unsubscribed"  # opted out there: stands
    mailerlite_fake.subscriber("person6@example.com")["fields"]["country"] = "Slovenia"  # not mapped: kept
    result = run()
    assert result.code == 0, result.err
    assert sorted(upserted(mailerlite_fake)) == [f"person{i}@example.com" for i in (1, 2, 3, 4)]
    s = result.summary
    assert (s["adopted"], s["not_reactivated"], s["created"], s["updated"]) == (55, 1, 1, 3)
    assert mailerlite_fake.subscriber("person1@example.com")["fields"]["city"] == "Maribor"
    assert mailerlite_fake.subscriber("person2@example.com")["fields"]["company"] == "Company 2"  # HubSpot wins
    assert mailerlite_fake.subscriber("person3@example.com") is not None
    assert mailerlite_fake.subscriber("person4@example.com")["status"] == "unsubscribed"
    assert mailerlite_fake.subscriber("person5@example.com")["status"] == "unsubscribed"  # never reactivated
    assert mailerlite_fake.reactivation_attempts == []
    assert mailerlite_fake.subscriber("person6@example.com")["fields"]["country"] == "Slovenia"
    assert run().summary["mailerlite_requests"] == KEY_CHECK  # everything recorded: the hour after is free


def test_first_run_adopts_group_memberships_and_leaves_only_wrong_managed_groups(run, hubspot_fake,
                                                                                 mailerlite_fake):
    seed_contacts(hubspot_fake, 12, lifecyclestage="lead")
    fill_mailerlite(mailerlite_fake, 12)
    synced = mailerlite_fake.add_group("Synced")["id"]
    lead = mailerlite_fake.add_group("Stage: lead")["id"]
    customer = mailerlite_fake.add_group("Stage: customer")["id"]  # managed by the mapping's pattern
    hand = mailerlite_fake.add_group("Hand-made")["id"]  # not managed
    for sub in mailerlite_fake.subscribers.values():
        sub["groups"] = [synced, lead, hand]
    mailerlite_fake.subscriber("person0@example.com")["groups"] = [synced, hand]  # not yet in its stage group
    mailerlite_fake.subscriber("person1@example.com")["groups"].append(customer)  # in a stage it is not in
    result = run("--mapping", mapping_file(run, GROUPS))
    assert result.code == 0, result.err
    assert (result.summary["adopted"], result.summary["updated"]) == (10, 2)
    assert sorted(upserted(mailerlite_fake)) == ["person0@example.com", "person1@example.com"]
    assert groups_of(mailerlite_fake, "person0@example.com") == ["Hand-made", "Stage: lead", "Synced"]
    assert groups_of(mailerlite_fake, "person1@example.com") == ["Hand-made", "Stage: lead", "Synced"]
    assert groups_of(mailerlite_fake, "person5@example.com") == ["Hand-made", "Stage: lead", "Synced"]


def test_dry_run_of_an_adoption_counts_and_names_the_differing_fields(run, hubspot_fake, mailerlite_fake):
    seed_contacts(hubspot_fake, 40)
    fill_mailerlite(mailerlite_fake, 40)
    mailerlite_fake.subscriber("person9@example.com")["fields"]["city"] = "Koper"
    mailerlite_fake.delete_subscriber("person8@example.com")
    result = run("--dry-run", "--verbose")
    s = result.summary
    assert (s["dry_run"], s["adopted"], s["would_send"]) == (True, 38, 2)
    assert writes(mailerlite_fake) == 0
    assert "differs from MailerLite in: city" in result.err and "differs from MailerLite in: subscriber" in result.err
    assert "Koper" not in result.err, "names, never values"
    planned = [line for line in result.err.splitlines() if "dry run: would" in line]
    assert len(planned) == 2
    assert any("would update person9@example.com" in line and "fields: city" in line for line in planned)
    assert any("would create person8@example.com" in line for line in planned)  # deleted in MailerLite
    real = run()  # the dry run recorded nothing: the real run adopts the same ones
    assert (real.summary["adopted"], real.summary["created"], real.summary["updated"]) == (38, 1, 1)


# -- --full repairs drift -----------------------------------------------------------------------------------

def test_full_repairs_edits_group_moves_and_deletions_made_in_mailerlite(run, hubspot_fake, mailerlite_fake):
    seed_contacts(hubspot_fake, 30, lifecyclestage="lead")
    path = mapping_file(run, GROUPS)
    assert run("--mapping", path).summary["created"] == 30
    lead = next(g["id"] for g in mailerlite_fake.groups.values() if g["name"] == "Stage: lead")
    customer = mailerlite_fake.add_group("Stage: customer")["id"]  # a managed group (the mapping's pattern)
    hand = mailerlite_fake.add_group("Hand-made")["id"]  # not managed: never touched
    mailerlite_fake.subscriber("person1@example.com")["fields"]["name"] = "Edited"
    mailerlite_fake.subscriber("person2@example.com")["groups"].remove(lead)
    mailerlite_fake.subscriber("person3@example.com")["groups"] += [customer, hand]
    mailerlite_fake.delete_subscriber("person4@example.com")
    hourly = run("--mapping", path)
    assert hourly.summary["mailerlite_requests"] == KEY_CHECK, "the hourly run does not read the listing"
    mark = len(mailerlite_fake.log)
    full = run("--mapping", path, "--full")
    assert full.code == 0, full.err
    s = full.summary
    assert (s["repaired"], s["created"], s["updated"], s["unchanged"], s["left_scope"]) == (4, 1, 3, 26, 0)
    assert sorted(upserted(mailerlite_fake, mark)) == [f"person{i}@example.com" for i in (1, 2, 3, 4)]
    assert mailerlite_fake.subscriber("person1@example.com")["fields"]["name"] == "First1"
    assert groups_of(mailerlite_fake, "person2@example.com") == ["Stage: lead", "Synced"]
    assert groups_of(mailerlite_fake, "person3@example.com") == ["Hand-made", "Stage: lead", "Synced"]
    assert groups_of(mailerlite_fake, "person4@example.com") == ["Stage: lead", "Synced"]
    again = run("--mapping", path, "--full")
    assert (again.summary["repaired"], writes(mailerlite_fake, len(mailerlite_fake.log))) == (0, 0)
    assert again.summary["unchanged"] == 30


def test_full_force_still_resends_everything(run, hubspot_fake, mailerlite_fake):
    seed_contacts(hubspot_fake, 20)
    fill_mailerlite(mailerlite_fake, 20)
    assert run().summary["adopted"] == 20
    mark = len(mailerlite_fake.log)
    forced = run("--full", "--force")
    assert forced.summary["updated"] == 20 and len(upserted(mailerlite_fake, mark)) == 20
    assert not mailerlite_fake.requests_to("GET", "/api/subscribers")[mark:] or all(
        r.query.get("limit") == ["0"] for r in mailerlite_fake.log[mark:] if r.method == "GET"
        and r.path == "/api/subscribers"), "--force compares nothing: no listing"


# -- a lost, mismatched or restored state -------------------------------------------------------------------

def test_a_state_file_deleted_between_runs_resends_nothing(run, hubspot_fake, mailerlite_fake):
    seed_contacts(hubspot_fake, 120)
    assert run().summary["created"] == 120
    shutil.rmtree(run.state_db.parent)
    mark = len(mailerlite_fake.log)
    again = run()
    assert again.code == 0 and again.summary["adopted"] == 120 and writes(mailerlite_fake, mark) == 0


def test_an_old_state_restored_from_a_backup_resends_nothing_already_there(run, hubspot_fake, mailerlite_fake):
    ids = seed_contacts(hubspot_fake, 700)
    assert run().summary["created"] == 700
    backup = run.tmp_path / "backup.db"
    shutil.copy(run.state_db, backup)
    for cid in ids[:600]:  # a busy day, synced...
        hubspot_fake.update_contact(cid, {"city": "Celje"})
    newer = run()
    assert newer.summary["updated"] == 600
    for extra in ("-wal", "-shm"):
        (run.state_db.parent / (run.state_db.name + extra)).unlink(missing_ok=True)
    shutil.copy(backup, run.state_db)  # ...then the server is rebuilt from last night's backup
    mark = len(mailerlite_fake.log)
    restored = run()
    assert restored.code == 0, restored.err
    assert restored.summary["mode"] == "incremental" and restored.summary["adopted"] == 600
    assert writes(mailerlite_fake, mark) == 0, "what MailerLite already holds is not sent again"
    assert run().summary["mailerlite_requests"] == KEY_CHECK


def test_a_state_that_does_not_match_mailerlite_is_not_believed(run, hubspot_fake, mailerlite_fake):
    ids = seed_contacts(hubspot_fake, 50)
    assert run().summary["created"] == 50
    for email in [s["email"] for s in list(mailerlite_fake.subscribers.values())]:
        mailerlite_fake.delete_subscriber(email)  # the account was emptied (or the state is another account's)
    hubspot_fake.update_contact(ids[0], {"city": "Kranj"})
    first = run()
    assert first.code == 0, first.err
    assert first.summary["created"] == 1 and "MailerLite holds 0" in first.err
    second = run()  # the full pass the mismatch asked for: everyone back, as repairs, none as departures
    s = second.summary
    assert second.code == 0 and s["mode"] == "full"
    assert (s["created"], s["repaired"], s["left_scope"], s["unsubscribed"]) == (49, 49, 0, 0)
    assert len(mailerlite_fake.subscribers) == 50


# -- MailerLite's equality, as tables ----------------------------------------------------------------------------

@pytest.mark.parametrize("wanted,held,same", [
    (42, "42", True), (42, 42, True), (42, "42.0", True), (42.5, "42.50", True), (42, "43", False),
    ("2024-05-01", "2024-05-01 00:00:00", True), ("2024-05-01", "2024-05-02", False),
    ("Ana", " Ana ", True), ("Ana", "ana", False), (None, "", True), (None, None, True), ("", None, True),
    (None, "x", False), ("x", None, False), ("0100", "100", False), ("C" * 600, "C" * 255, False),
    ("Cab", "C", False),
])
def test_same_value(wanted, held, same):
    assert same_value(wanted, held) is same


def _held(status="active", fields=None, groups=None):
    return Held("1", status, fields or {}, groups)


MAPPING = Mapping.default(static_groups=("Synced",))


@pytest.mark.parametrize("planned,held,previously,in_step,differing", [
    (Planned("a@x.io", {"name": "A"}), None, frozenset(), False, ("subscriber",)),
    (Planned("a@x.io", {"name": "A"}), _held(fields={"name": "A", "city": "X"}), frozenset(), False, ()),
    (Planned("a@x.io", {}), _held(fields={"name": "A"}), frozenset(), False, ()),  # never ours: kept
    (Planned("a@x.io", {}), _held(fields={"name": "A"}), frozenset({"name"}), False, ("name",)),  # ours: cleared
    (Planned("a@x.io", {"name": "A"}, "unsubscribed"), _held(fields={"name": "A"}), frozenset(), False, ("status",)),
    (Planned("a@x.io", {"name": "A"}, "unsubscribed"), _held("bounced", {"name": "A"}), frozenset(), False, ()),
    (Planned("a@x.io", {"name": "A"}, "unsubscribed"), _held("junk", {"name": "B"}), frozenset(), False, ("name",)),
    (Planned("a@x.io", {"name": "A"}), _held("unsubscribed", {"name": "B"}), frozenset(), True, ()),
    (Planned("a@x.io", {"name": "A"}), _held("unsubscribed", {"name": "B"}), frozenset(), False, ("name",)),
    (Planned("a@x.io", {}, None, ("Synced",)), _held(groups={"7": "Synced"}), frozenset(), False, ()),
    (Planned("a@x.io", {}, None, ("Synced",)), _held(groups={}), frozenset(), False, ("groups",)),
    (Planned("a@x.io", {}, None, ("Synced",)), _held(groups=None), frozenset(), False, ("groups",)),
    (Planned("a@x.io", {}), _held(groups={"7": "Synced", "9": "Mine"}), frozenset(), False, ("groups",)),
    (Planned("a@x.io", {}), _held(groups={"9": "Mine"}), frozenset(), False, ()),  # not managed: kept
])
def test_compare(planned, held, previously, in_step, differing):
    result = compare(planned, held, MAPPING, {"Synced": "7"}, previously, in_step)
    assert result.differing == differing
    if held is not None and held.groups and "7" in held.groups and not planned.groups:
        assert result.extra_groups == frozenset({"Synced"})


@pytest.mark.parametrize("changed,total,worth", [
    (None, 100, False), (499, 100, False), (500, 15_000, True), (500, 15_001, False), (600, None, False)])
def test_listing_worth_reading(changed, total, worth):
    assert listing_worth_reading(changed, total) is worth


@pytest.mark.parametrize("synced,held,mismatch", [(19, 0, False), (20, 9, True), (20, 10, False), (1000, 499, True)])
def test_state_mismatch(synced, held, mismatch):
    assert state_mismatch(synced, held) is mismatch
