"""Issue 28: consent you can prove. The five defects found against the consent by address, end to
end through main.py against the fakes, and the per-address consent ledger that fixes their class:
what MailerLite says about an address is never forgotten, "already sent" never suppresses a send,
every group removal rests on positive evidence, an account the run cannot confirm is not written
to, and a consent API failure is not a missing scope."""

from __future__ import annotations

import sqlite3
from dataclasses import replace

import pytest

from sync.consent import rules
from sync.state import MIGRATIONS, LedgerRow, State
from tests.conftest import seed_contacts
from tests.test_consent import consent_only, mapping_file, state_rows, upserts
from tests.test_consent_by_address import a_day_later, status

TYPED = 'create_missing_fields = true\n[fields]\nnumemployees = { field = "employees", type = "number" }\n'


def contact_id(hs, email: str) -> str:
    (cid,) = [str(c) for c, r in hs.contacts.items()
              if not r["archived"] and r["properties"].get("email") == email]
    return cid


# -- defect 1: an opt-out lost after a sweep ---------------------------------------------------------

def test_an_address_unsubscribed_by_the_sweep_then_resubscribed_gets_its_next_optout(run, hubspot_fake,
                                                                                     mailerlite_fake):
    """X deleted, its address opts out, the sweep unsubscribes it. The person signs up again (a
    MailerLite form, and in HubSpot) and comes back as a new contact Z, who later opts out in the
    same edit that makes its data refused: the unsubscribe goes, though one went to that address
    before under X's id."""
    email = "ann@example.com"
    path = mapping_file(run, TYPED)
    x = hubspot_fake.add_contact({"email": email, "numemployees": "50"}, modified_ms=1)
    assert run("--mapping", path).code == 0
    hubspot_fake.archive_contact(x)
    assert run("--mapping", path, "--full").code == 0  # X leaves; its address is kept as a tombstone
    assert status(mailerlite_fake, email) == "active"
    hubspot_fake.set_address_consent(email, unsubscribed_all=True)
    swept = run("--mapping", path, "--full")  # a full run always sweeps
    assert swept.code == 0 and status(mailerlite_fake, email) == "unsubscribed"
    # The ledger keeps it per address: read opted out by address, an unsubscribe sent, MailerLite's answer.
    assert state_rows(run, "SELECT hubspot_opted_out, hubspot_source, sent, mailerlite_status, holder "
                           "FROM consent_ledger WHERE email='ann@example.com'") == [
        (1, "address", "unsubscribe", "unsubscribed", None)]
    # The person signs up again: through a MailerLite form, and in HubSpot, as a new contact Z.
    mailerlite_fake.resubscribe_by_form(email)
    hubspot_fake.set_address_consent(email, unsubscribed_all=False)
    z = hubspot_fake.add_contact({"email": email, "numemployees": "60"})
    back = run("--mapping", path)
    assert back.code == 0 and status(mailerlite_fake, email) == "active", back.err
    sent_before = len(consent_only(mailerlite_fake, email))
    # Z opts out in the same edit that makes its data refused.
    hubspot_fake.update_contact(z, {"hs_email_optout": "true", "numemployees": "about sixty"})
    hubspot_fake.set_address_consent(email, unsubscribed_all=True)
    result = run("--mapping", path)
    assert result.code == 1 and result.summary["rejected"] == 1, result.err
    assert status(mailerlite_fake, email) == "unsubscribed"
    assert len(consent_only(mailerlite_fake, email)) == sent_before + 1


# -- defect 2: a re-subscribe after adoption ---------------------------------------------------------

@pytest.mark.parametrize("held", ["unsubscribed", "bounced", "junk"])
def test_an_address_adopted_as_inactive_is_not_created_again_after_its_deletion(run, hubspot_fake,
                                                                               mailerlite_fake, held):
    """MailerLite holds the address as inactive with data other than HubSpot's: adoption sends the
    data, MailerLite keeps the status and says so in its answer. Deleted there later (a list
    clean-up), the address is never created again as active."""
    mailerlite_fake.add_subscriber("person0@example.com", status=held, fields={"name": "Someone else"})
    seed_contacts(hubspot_fake, 3)
    first = run()
    assert first.code == 0, first.err
    assert status(mailerlite_fake, "person0@example.com") == held  # MailerLite kept it
    mailerlite_fake.delete_subscriber("person0@example.com")
    full = run("--full")
    assert full.code == 0, full.err
    sub = mailerlite_fake.subscriber("person0@example.com")
    assert sub is None or sub["status"] != "active"
    assert full.summary["not_reactivated"] == 1
    # It becomes active again only when MailerLite itself shows it active (a form sign-up).
    mailerlite_fake.resubscribe_by_form("person0@example.com")
    assert run("--full").code == 0
    assert status(mailerlite_fake, "person0@example.com") == "active"
    assert mailerlite_fake.subscriber("person0@example.com")["fields"]["name"] == "First0"


def test_an_hourly_run_does_not_create_again_an_address_an_upsert_answer_showed_inactive(run, hubspot_fake,
                                                                                        mailerlite_fake):
    """The same through an hourly run, which reads no listing: the upsert answer showed the address
    unsubscribed. Deleted in MailerLite, the address is looked up before anything is sent (one GET):
    not held, it is not created again, not even for a moment. Still held, it is sent as usual."""
    ids = seed_contacts(hubspot_fake, 2)
    assert run().code == 0
    mailerlite_fake.subscriber("person0@example.com")["status"] = "unsubscribed"  # unsubscribed in MailerLite
    hubspot_fake.update_contact(ids[0], {"city": "Maribor"})
    assert run().code == 0  # the upsert's answer says unsubscribed
    hubspot_fake.update_contact(ids[0], {"city": "Celje"})
    held = run()  # still held: sent as usual, its status kept
    assert held.code == 0 and held.summary["updated"] == 1, held.err
    assert mailerlite_fake.subscriber("person0@example.com")["fields"]["city"] == "Celje"
    mailerlite_fake.delete_subscriber("person0@example.com")
    hubspot_fake.update_contact(ids[0], {"city": "Kranj"})
    sent = len(upserts(mailerlite_fake, "person0@example.com"))
    again = run()
    assert again.code == 0, again.err
    assert again.summary["not_reactivated"] == 1 and again.summary["created"] == 0
    assert mailerlite_fake.subscriber("person0@example.com") is None  # never made active, not even for a moment
    assert len(upserts(mailerlite_fake, "person0@example.com")) == sent


# -- defect 3: group removals on absence -------------------------------------------------------------

LIST_GROUP = '[groups.lists]\n"77" = "Webinar attendees"\n'


@pytest.mark.parametrize("when", ["adoption", "a newly mapped list group"])
def test_a_short_listing_of_a_list_takes_nobody_out_of_its_group(run, hubspot_fake, mailerlite_fake, when):
    """300 people already in "Webinar attendees"; HubSpot is still processing the list (its size lags,
    so a short listing is not caught by it) and the listing stops after 250: nobody leaves the group
    without their own memberships saying so, and the one who really left does leave it."""
    group = mailerlite_fake.add_group("Webinar attendees")
    ids = seed_contacts(hubspot_fake, 300)
    for i in range(300):
        mailerlite_fake.add_subscriber(f"person{i}@example.com", fields={"name": f"First{i}"}, groups=[group["id"]])
    hubspot_fake.lists["77"] = [int(i) for i in ids[:299]]  # the last one really is not in the list
    path = mapping_file(run, LIST_GROUP)
    if when == "a newly mapped list group":
        assert run().code == 0  # synced without the list group
    hubspot_fake.processing_lists["77"] = 250
    hubspot_fake.short_membership_reads["77"] = 1  # the next listing stops after its first page
    full = ("--full",) if when != "adoption" else ()
    dry = run("--mapping", path, *full, "--dry-run", "--verbose")  # the plan forecasts the same
    assert dry.code == 0, dry.err
    leaving = [line for line in dry.err.splitlines() if "leaves Webinar attendees" in line]
    assert len(leaving) == 1 and "person299@example.com" in leaving[0], leaving
    hubspot_fake.short_membership_reads["77"] = 1  # the real run's listing stops short too
    result = run("--mapping", path, *full)
    assert result.code == 0, result.err
    in_group = [e for e, sid in mailerlite_fake.by_email.items()
                if group["id"] in mailerlite_fake.subscribers[sid]["groups"]]
    assert len(in_group) == 299 and "person299@example.com" not in in_group


# -- defect 4: another portal's run ------------------------------------------------------------------

@pytest.mark.parametrize("unconfirmed", ["HubSpot portal", "MailerLite account"])
def test_an_account_the_run_cannot_confirm_is_not_written_to(run, hubspot_fake, mailerlite_fake, unconfirmed):
    """The state records portal 1 and MailerLite account 83510. Settings that reach a portal whose
    account details are not answered (or a MailerLite answer without its account header) cannot be
    confirmed as this state's: the run stops before writing, exit 3, one line naming the account."""
    seed_contacts(hubspot_fake, 10)
    path = mapping_file(run, 'on_leave = "unsubscribe"\n')
    assert run("--mapping", path).summary["created"] == 10
    if unconfirmed == "HubSpot portal":  # another client's portal, its details not answered
        for record in hubspot_fake.contacts.values():
            record["archived"] = True
        seed_contacts(hubspot_fake, 3, start=50)
        hubspot_fake.portal_id = 2
        hubspot_fake.account_info_answers = False
    else:
        mailerlite_fake.account_id = None
    writes = len([r for r in mailerlite_fake.log if r.method != "GET"])
    result = run("--mapping", path, "--full")
    assert result.code == 3, result.err
    expected = "HubSpot portal 1" if unconfirmed == "HubSpot portal" else "MailerLite account 83510"
    assert expected in result.summary["message"] and "could not be confirmed" in result.summary["message"]
    assert result.err.count("could not be confirmed") == 1
    assert [s["status"] for s in mailerlite_fake.subscribers.values()] == ["active"] * 10
    assert len([r for r in mailerlite_fake.log if r.method != "GET"]) == writes  # nothing written
    assert state_rows(run, "SELECT COUNT(*) FROM contacts") == [(10,)]
    check = run("--check", "--mapping", path)  # --check says the same, and fails
    assert check.code == 2 and "could not be confirmed" in check.err


# -- defect 5: one 403 postpones opt-outs by a day ---------------------------------------------------

SCOPED = 'mass_leave_percent = 100\n[scope.where]\nlifecyclestage = ["customer"]\n'


@pytest.mark.parametrize("refusal", ["plain", "scope"])
def test_a_consent_api_403_naming_no_scope_keeps_the_sweep_due(run, hubspot_fake, mailerlite_fake, refusal):
    """Only a 403 that names the scope means "no scope". Any other failure claims nothing and keeps
    the sweep due next run, so an opted-out address is not left active for a day."""
    ids = seed_contacts(hubspot_fake, 3, lifecyclestage="customer")
    path = mapping_file(run, SCOPED)
    assert run("--mapping", path).code == 0
    # A new address: the old one is let go of and kept as a tombstone, which no record holds any more,
    # so only the sweep reads it (a record that still held it would carry its opt-out to the hourly run,
    # which unsubscribes an address the sync wrote whatever the scope).
    hubspot_fake.update_contact(ids[0], {"email": "new0@example.com"})
    assert run("--mapping", path).code == 0
    hubspot_fake.set_address_consent("person0@example.com", unsubscribed_all=True)
    hubspot_fake.consent_refusals.append(refusal)
    first = run("--mapping", path, tunables=a_day_later())
    assert first.code == 0, first.err
    assert status(mailerlite_fake, "person0@example.com") == "active"  # the sweep's read was refused
    if refusal == "scope":  # the token lacks the scope: said once, and the sweep waits its day
        assert "lacks the scope" in first.err
        return
    assert "lacks the scope" not in first.err and "consent" in first.err
    second = run("--mapping", path, tunables=a_day_later(1.02))  # the next hourly run
    assert second.code == 0, second.err
    assert status(mailerlite_fake, "person0@example.com") == "unsubscribed"


# -- the ledger: the migration keeps what earlier runs knew ------------------------------------------

def state_of_schema(path, version: int) -> sqlite3.Connection:
    """An empty state file as the code of schema `version` made it (its rows are the test's to add)."""
    db = sqlite3.connect(path, isolation_level=None)
    for step in range(1, version + 1):
        for statement in MIGRATIONS[step]:
            db.execute(statement)
    db.execute("INSERT INTO meta(key, value) VALUES ('schema_version', ?)", (str(version),))
    return db


def test_a_state_of_schema_9_keeps_every_tombstone_pending_action_and_delivered_unsubscribe(tmp_path):
    """A state file as today's code leaves it (schema 9, with every kind of row) migrated to the ledger."""
    path = tmp_path / "state.db"
    db = state_of_schema(path, 9)
    contacts = [(1, "synced@example.com", "created", 100), (2, "kept@example.com", "not_reactivated", 200),
                (3, "bounced@example.com", "updated", 300)]
    db.executemany("INSERT INTO contacts(hubspot_id, email, fingerprint, fields_set, outcome, synced_at) "
                   "VALUES (?, ?, 'f', '', ?, ?)", contacts)
    db.execute("INSERT INTO write_back VALUES ('bounced@example.com', 'bounced', NULL, 3, 310)")
    db.execute("INSERT INTO optouts_sent VALUES ('refused@example.com', 4, 400)")
    db.execute("INSERT INTO tombstones VALUES ('gone@example.com', 5, 500)")
    db.execute("INSERT INTO pending_actions(hubspot_id, email, unsubscribe, forget, reason) "
               "VALUES (6, 'waiting@example.com', 1, 1, 'left')")
    db.execute("INSERT INTO problems VALUES (7, 'synced@example.com', 'rejected', "
               "'email synced@example.com is already synced from HubSpot contact 1', 'f', 1, 1, 1)")
    db.execute("INSERT INTO problems VALUES (8, 'bad@example.com', 'rejected', 'MailerLite: email: invalid', "
               "'f', 1, 1, 1)")
    db.close()
    state = State(path)
    try:
        assert state.tombstones() == [("gone@example.com", "5")]
        assert [(a.email, a.unsubscribe, a.forget) for a in state.pending_actions()] == [
            ("waiting@example.com", True, True)]
        rows = state.ledger(["synced@example.com", "kept@example.com", "bounced@example.com",
                             "refused@example.com", "gone@example.com", "waiting@example.com"])
        assert set(rows) == {"synced@example.com", "kept@example.com", "bounced@example.com", "refused@example.com",
                             "gone@example.com", "waiting@example.com"}
        assert (rows["synced@example.com"].holder, rows["synced@example.com"].sent) == ("1", "upsert")
        assert rows["synced@example.com"].mailerlite_status is None
        assert rows["kept@example.com"].mailerlite_status == "unsubscribed"  # kept as not_reactivated
        assert rows["bounced@example.com"].mailerlite_status == "bounced"  # written back
        refused = rows["refused@example.com"]  # an opt-out delivered on its own: per address, with its time
        assert (refused.sent, refused.sent_at, refused.hubspot_opted_out, refused.mailerlite_status) == (
            "unsubscribe", 400, True, "unsubscribed")
        assert rows["gone@example.com"].holder is None
        assert state.unheld_duplicates() == []  # contact 1 still holds the address
        with state.transaction():
            state.conn.execute("DELETE FROM contacts WHERE hubspot_id=1")
        assert state.unheld_duplicates() == ["7"]  # a duplicate found by its kind, not by its message
        assert state.ledger(["synced@example.com"])["synced@example.com"].holder is None
    finally:
        state.close()


def test_a_state_of_schema_12_keeps_its_ledger_and_follows_written_problem_addresses(tmp_path):
    """A state file as the ledger's first version left it (schema 12) migrated to HubSpot's times
    (schema 13): every ledger row, tombstone and pending action kept; an unsubscribe delivered before
    has no known opt-out time, so a new reading of the opt-out sends it again (the safe side). Then
    the tombstones: the address of a problem contact deleted in HubSpot is followed, written or not
    (MailerLite may hold it from a form); one leaving the scope (`forget`) only when the sync wrote
    its address (the trigger)."""
    path = tmp_path / "state.db"
    db = state_of_schema(path, 12)
    db.execute("INSERT INTO consent_ledger(email, hubspot_opted_out, hubspot_source, hubspot_read_at, "
               "mailerlite_status, mailerlite_source, mailerlite_seen_at, sent, sent_at) VALUES "
               "('refused@example.com', 1, 'record', 400, 'unsubscribed', 'unsubscribe', 400, 'unsubscribe', 400), "
               "('written@example.com', 0, 'record', 300, 'active', 'upsert', 300, 'upsert', 300)")
    db.execute("INSERT INTO tombstones VALUES ('gone@example.com', 5, 500)")
    db.execute("INSERT INTO pending_actions(hubspot_id, email, unsubscribe, forget, reason) "
               "VALUES (6, 'waiting@example.com', 1, 1, 'left')")
    db.execute("INSERT INTO problems VALUES (7, 'written@example.com', 'rejected', 'MailerLite: refused', "
               "'f', 1, 1, 1, NULL)")
    db.execute("INSERT INTO problems VALUES (8, 'never@example.com', 'rejected', 'MailerLite: refused', "
               "'f', 1, 1, 1, NULL)")
    db.execute("INSERT INTO problems VALUES (9, 'outside@example.com', 'rejected', 'MailerLite: refused', "
               "'f', 1, 1, 1, NULL)")
    db.execute("INSERT INTO problems VALUES (10, 'refused@example.com', 'rejected', 'MailerLite: refused', "
               "'f', 1, 1, 1, NULL)")
    db.close()
    state = State(path)
    try:
        assert state.tombstones() == [("gone@example.com", "5")]
        assert [a.email for a in state.pending_actions()] == ["waiting@example.com"]
        refused = state.ledger(["refused@example.com"])["refused@example.com"]
        assert (refused.sent, refused.sent_at, refused.mailerlite_status) == ("unsubscribe", 400, "unsubscribed")
        assert (refused.hubspot_changed_ms, refused.sent_for_ms) == (None, None)
        assert rules.unsubscribe_due(refused, 1000)  # delivered for an opt-out of unknown time
        state.save_ledger([replace(refused, hubspot_changed_ms=1000, sent_for_ms=1000)])
        stored = state.ledger(["refused@example.com"])["refused@example.com"]
        assert (stored.hubspot_changed_ms, stored.sent_for_ms) == (1000, 1000)
        state.forget_problems_only(["7", "8"])  # both contacts gone from HubSpot
        state.forget("9")  # out of the scope now: never written, no business of the sync's
        state.forget("10")  # out of the scope too, but the sync wrote its address (its opt-out)
        assert state.tombstones() == [("gone@example.com", "5"), ("never@example.com", "8"),
                                      ("refused@example.com", "10"), ("written@example.com", "7")]
    finally:
        state.close()


# -- the rules on a ledger row, as a table -----------------------------------------------------------

ROW = LedgerRow("a@example.com")
# The sync's unsubscribe delivered for the opt-out HubSpot made at 1000 (ms, HubSpot's clock).
DELIVERED = LedgerRow("a@example.com", hubspot_opted_out=True, mailerlite_status="unsubscribed", sent="unsubscribe",
                      hubspot_changed_ms=1000, sent_for_ms=1000)


@pytest.mark.parametrize("row,changed,due", [
    (None, 1000, True),  # never seen: send
    (ROW, 1000, True),
    (DELIVERED, 1000, False),  # this very opt-out delivered
    (DELIVERED, 900, False),  # an older reading of it
    (replace(DELIVERED, mailerlite_status="bounced"), 1000, False),
    # Seen active since (a form sign-up after the delivery): the person's latest act, kept while HubSpot
    # shows no newer opt-out...
    (replace(DELIVERED, mailerlite_status="active"), 1000, False),
    # ...and one made after it is sent (the person opted out again)
    (replace(DELIVERED, mailerlite_status="active"), 1001, True),
    (DELIVERED, 1001, True),
    (DELIVERED, None, True),  # a reading whose time is unknown (by address): the order cannot be told
    (replace(DELIVERED, sent_for_ms=None), 1000, True),  # delivered before HubSpot's time was kept
    (replace(DELIVERED, hubspot_opted_out=False), 1000, True),  # opted in since: a new opt-out
    (replace(DELIVERED, sent="upsert"), 1000, True),  # an upsert went since
])
def test_whether_an_unsubscribe_is_due(row, changed, due):
    assert rules.unsubscribe_due(row, changed) is due


@pytest.mark.parametrize("status,source,created,before,after", [
    ("unsubscribed", rules.LISTING, False, None, "unsubscribed"),
    ("active", rules.UPSERT, False, "unsubscribed", "active"),  # MailerLite itself shows it active again
    ("active", rules.UPSERT, True, "unsubscribed", "unsubscribed"),  # created by the sync: no sign of a sign-up
    ("active", rules.UPSERT, True, None, "active"),
    ("bounced", rules.REFUSAL, False, "active", "bounced"),
    ("Junk", rules.WRITE_BACK, False, None, "junk"),
])
def test_what_a_sighting_in_mailerlite_does_to_the_row(status, source, created, before, after):
    row = replace(ROW, mailerlite_status=before) if before else None
    new = rules.seen_in_mailerlite(row, ROW.email, status, source, 5, created_by_sync=created)
    assert new.mailerlite_status == after
    assert rules.never_made_active(new) is (after in ("unsubscribed", "bounced", "junk"))


def test_an_unsubscribe_taken_is_kept_per_address_with_its_time():
    row = rules.unsubscribe_taken(replace(ROW, hubspot_opted_out=False), ROW.email, None, 7)
    assert (row.sent, row.sent_at, row.hubspot_opted_out, row.mailerlite_status) == ("unsubscribe", 7, True,
                                                                                   "unsubscribed")
    assert rules.unsubscribe_taken(None, ROW.email, "bounced", 8).mailerlite_status == "bounced"
    assert rules.unsubscribe_due(row, 1000)  # sent for no known opt-out time: the order cannot be told
    timed = rules.unsubscribe_taken(row, ROW.email, None, 7, changed_ms=1000)
    assert (timed.hubspot_changed_ms, timed.sent_for_ms) == (1000, 1000)
    assert not rules.unsubscribe_due(timed, 1000) and rules.unsubscribe_due(timed, 1001)
    assert rules.unsubscribe_due(rules.read_in_hubspot(timed, ROW.email, False, rules.RECORD, 9), 1000)


@pytest.mark.parametrize("opted_out,changed,changes", [
    (True, 1000, False),  # the same opt-out read again
    (True, 900, False),
    (True, 1001, True),  # a newer opt-out
    (True, None, False),
    (False, 1000, True),  # an opt-in
])
def test_which_readings_of_hubspot_change_the_row(opted_out, changed, changes):
    assert rules.reading_changes(DELIVERED, opted_out, changed) is changes
    assert rules.reading_changes(None, opted_out, changed) is False  # no row: an unsubscribe sent makes it


# -- the structure: one consent call per contact ----------------------------------------------------

def test_the_engine_makes_one_consent_call_per_contact(run, hubspot_fake, mailerlite_fake, monkeypatch):
    """Each contact read reaches the consent owner once (Consent.contact, answered by a verdict): in
    scope, refused and opted out, a duplicate, out of scope, merged; not_created_again is asked only
    when the verdict says MailerLite had the address inactive (none here)."""
    from sync.consent.owner import Consent

    path = mapping_file(run, TYPED + '[scope.where]\nlifecyclestage = ["customer"]\n')
    ids = seed_contacts(hubspot_fake, 4, lifecyclestage="customer")
    assert run("--mapping", path).code == 0
    calls: list = []
    for name in ("contact", "not_created_again"):
        original = getattr(Consent, name)

        def spy(self, *args, _name=name, _original=original, **kwargs):
            calls.append(_name)
            return _original(self, *args, **kwargs)
        monkeypatch.setattr(Consent, name, spy)
    hubspot_fake.add_contact({"email": "person0@example.com", "lifecyclestage": "customer"})  # a duplicate
    hubspot_fake.add_contact({"email": "out@example.com", "lifecyclestage": "lead"})  # out of scope
    hubspot_fake.add_contact({"email": "bad@example.com", "lifecyclestage": "customer", "numemployees": "many",
                              "hs_email_optout": "true"})  # refused and opted out
    hubspot_fake.update_contact(ids[1], {"lifecyclestage": "lead"})  # leaves the scope
    hubspot_fake.merge_contacts(ids[2], ids[3], new_id=True)
    result = run("--mapping", path)
    assert result.code == 1, result.err  # the duplicate and the refused contact are reported
    read = result.summary["read"]
    assert read >= 5 and calls.count("contact") == read, (read, calls)
    assert calls.count("not_created_again") == 0
    assert status(mailerlite_fake, "bad@example.com") == "unsubscribed"  # its opt-out went on its own
    assert status(mailerlite_fake, "person3@example.com") == "active"  # merged away, on_leave keeps it


@pytest.mark.parametrize("problem", [False, True])
def test_a_contact_recorded_with_an_address_the_ledger_already_has_does_not_stop_the_run(tmp_path, problem):
    """A synced contact's row given a new address by state.record's upsert, while the ledger already has
    a row for that address (an earlier subscriber of it): the holder trigger's INSERT OR IGNORE, fired
    inside the upsert, was aborted by SQLite (IntegrityError: UNIQUE constraint failed:
    consent_ledger.email) and every run stopped. `problem`: the contact has a problem row too, so
    record takes its row-by-row path."""
    from sync.state import Result

    state = State(tmp_path / "state.db")
    try:
        state.record([Result("1", "ann@example.com", "created", "f1")])
        state.save_ledger([LedgerRow("bob@example.com", sent="unsubscribe", sent_at=5)])
        if problem:
            state.record([Result("2", "cy@example.com", "rejected", "f0", reason="refused")])
            state.record([Result("2", "cy@example.com", "created", "f2")])
        state.record([Result("1", "bob@example.com", "updated", "f3")])
        rows = state.ledger(["ann@example.com", "bob@example.com"])
        assert rows["bob@example.com"].holder == "1" and rows["bob@example.com"].sent == "unsubscribe"
        assert rows["ann@example.com"].holder is None
        assert state.tombstones() == [("ann@example.com", "1")]
    finally:
        state.close()
