"""Issue 28: each failure the model-based test (tests/test_consent_model.py) found, as a plain end-to-end test.

Each is a minimal sequence the model printed (shortened further by tests/consent_model_minimize.py),
written out through main.py against the fakes. All failed on the code before the consent ledger;
six of them (opt-outs after a form sign-up, departures of an address another contact holds, a
full pass listing an opted-out address active) also on the ledger's first version (schema 12).
"""

from __future__ import annotations

import pytest

from tests.consent_model import BAD_NUMBER, SCOPE_LIST, WEBINAR_LIST, mapping_text

# What the model printed on the code before the ledger (-m slow, seeds 1, 11-13; shortened by
# tests/consent_model_minimize.py). Defect 1's cause, "an unsubscribe already sent suppresses a send":
#   configure(scoped=True) / create_contact(ann, bad=True, in_list=True, stage='lead') / edit_contact(optout=True)
#   / run_sweep_due / mailerlite_form(ann) / address_consent(ann, opt_out=True) / run_hourly          -> I1
#   ... run_sweep_due / delete_contact / mailerlite_form(ann) / create_contact(ann, optout=True, out of scope)
#   / run_full                                                                                          -> I1
#   ... the same through two merges (bob let go of as an additional email) / run_full                 -> I1
# Defect 2 (seed 1): the sync's own unsubscribe (opted out, data refused), deleted in MailerLite,
#   re-subscribed in HubSpot, a new contact with the address / run_full: created active              -> I2
# A departure taking the groups of an address another live in-scope contact holds (a duplicate, or one
#   whose data is refused): create_contact(bob) x2 ... merge / delete / run_full                        -> I3

ANN = "ann@example.com"
BOB = "bob@example.com"
GROUP = "From HubSpot"


def with_mapping(run, folder, hubspot_fake, on_leave: str = "remove_from_groups", scoped: bool = False):
    """`run` with the model's mapping: a number field (a contact whose value is not a number is refused),
    a group every synced subscriber joins, and one for a (here empty) HubSpot list's members."""
    hubspot_fake.lists.setdefault(WEBINAR_LIST, [])
    hubspot_fake.lists.setdefault(SCOPE_LIST, [])
    path = folder / "mapping.toml"
    path.write_text(mapping_text(scoped=scoped, on_leave=on_leave))
    return lambda *args: run("--mapping", str(path), *args)


@pytest.fixture
def mapped(run, tmp_path, hubspot_fake):
    return with_mapping(run, tmp_path, hubspot_fake)


def contact(hubspot_fake, email: str = ANN, **props: str) -> str:
    return hubspot_fake.add_contact({"email": email, "firstname": "Ann", "numemployees": "7", **props})


def groups_of(mailerlite_fake, email: str) -> set:
    return {mailerlite_fake.groups[g]["name"] for g in mailerlite_fake.subscriber(email)["groups"]}


def test_an_opt_out_made_with_refused_data_reaches_an_address_the_sweep_unsubscribed_before(
        mapped, hubspot_fake, mailerlite_fake):
    x = contact(hubspot_fake)
    assert mapped().code == 0
    hubspot_fake.archive_contact(x)  # X deleted: the sync lets its address go (a tombstone)
    assert mapped("--full").code == 0
    hubspot_fake.set_address_consent(ANN, unsubscribed_all=True)  # the address opts out...
    assert mapped("--full").summary["unsubscribed"] == 1  # ...and the sweep unsubscribes it
    mailerlite_fake.resubscribe_by_form(ANN)  # the person signs up again, in MailerLite and in HubSpot
    hubspot_fake.set_address_consent(ANN, unsubscribed_all=False)
    z = contact(hubspot_fake)  # and comes back as a new contact Z
    assert mapped().code == 0
    assert mailerlite_fake.subscriber(ANN)["status"] == "active"
    hubspot_fake.update_contact(z, {"hs_email_optout": "true", "numemployees": BAD_NUMBER})  # one save
    refused = mapped()
    assert refused.code == 1 and refused.summary["rejected"] == 1  # the data problem is still reported
    assert mailerlite_fake.subscriber(ANN)["status"] == "unsubscribed"


def test_an_opt_out_after_a_form_sign_up_is_sent_though_an_earlier_one_was(mapped, hubspot_fake, mailerlite_fake):
    """Defect 1's cause on a shorter path the model found: no sweep, no second contact."""
    contact(hubspot_fake, numemployees=BAD_NUMBER, hs_email_optout="true")  # opted out, data refused
    assert mapped().summary["rejected"] == 1
    assert mailerlite_fake.subscriber(ANN)["status"] == "unsubscribed"  # the unsubscribe went on its own
    mailerlite_fake.resubscribe_by_form(ANN)  # she signs up again in MailerLite...
    hubspot_fake.set_address_consent(ANN, unsubscribed_all=True)  # ...then opts out again in HubSpot
    mapped()
    assert mailerlite_fake.subscriber(ANN)["status"] == "unsubscribed"


def test_an_opt_out_of_an_out_of_scope_contact_reaches_an_address_unsubscribed_for_a_deleted_one(
        run, tmp_path, hubspot_fake, mailerlite_fake):
    """Defect 1's cause with the new contact out of scope instead of refused (found by the model)."""
    sync = with_mapping(run, tmp_path, hubspot_fake, scoped=True)
    x = contact(hubspot_fake, numemployees=BAD_NUMBER, hs_email_optout="true", lifecyclestage="lead")
    hubspot_fake.lists[SCOPE_LIST].append(int(x))
    sync()
    assert mailerlite_fake.subscriber(ANN)["status"] == "unsubscribed"
    hubspot_fake.archive_contact(x)
    mailerlite_fake.resubscribe_by_form(ANN)  # signs up again in MailerLite
    contact(hubspot_fake, hs_email_optout="true", lifecyclestage="customer")  # Z, not in the list: out of scope
    assert sync("--full").code in (0, 1)  # X's address let go of, read by address: opted out (Z's, later)
    assert mailerlite_fake.subscriber(ANN)["status"] == "unsubscribed"


def test_an_opt_out_of_an_address_a_refused_contact_let_go_of_is_followed(run, tmp_path, hubspot_fake,
                                                                         mailerlite_fake):
    """Found by the model (-m slow, seed 1) on the ledger's schema-13 version: X, opted out with refused
    data, had its unsubscribe sent on its own, then took a new address. X was never synced, so its old
    address was no tombstone: after a MailerLite form sign-up, an opt-out of it by an out-of-scope
    contact (which a list-scoped --full does not read) stayed active. The address the sync wrote is
    now a tombstone once X's problem moves off it, and the sweep follows it."""
    sync = with_mapping(run, tmp_path, hubspot_fake, scoped=True)
    x = contact(hubspot_fake, numemployees=BAD_NUMBER, hs_email_optout="true", lifecyclestage="lead")
    hubspot_fake.lists[SCOPE_LIST].append(int(x))
    assert sync("--full").code == 1  # refused, reported; the opt-out went on its own
    assert mailerlite_fake.subscriber(ANN)["status"] == "unsubscribed"
    hubspot_fake.update_contact(x, {"email": BOB})  # X lets ann go
    mailerlite_fake.resubscribe_by_form(ANN)  # she signs up again in MailerLite...
    contact(hubspot_fake, hs_email_optout="true", lifecyclestage="lead")  # ...then opts out, out of scope
    assert sync("--full").code == 1
    assert mailerlite_fake.subscriber(ANN)["status"] == "unsubscribed"


def test_an_opt_out_after_a_form_sign_up_reaches_a_contact_mailerlite_has_as_mapped(mapped, hubspot_fake,
                                                                                   mailerlite_fake):
    """Found by the model (-m slow, seed 1) on schema 14: an opted-out contact synced (its upsert carried
    the opt-out), she signs up again through a MailerLite form, then opts out again in HubSpot. Her
    record maps to what the state holds, so no upsert goes, and nothing carried the newer opt-out:
    she stayed active. The upsert's opt-out is kept as a delivered unsubscribe with HubSpot's time, and
    a later one goes on its own."""
    contact(hubspot_fake, hs_email_optout="true")
    assert mapped().code == 0
    assert mailerlite_fake.subscriber(ANN)["status"] == "unsubscribed"
    mailerlite_fake.resubscribe_by_form(ANN)  # she signs up again in MailerLite...
    hubspot_fake.set_address_consent(ANN, unsubscribed_all=True)  # ...then opts out again in HubSpot
    assert mapped().code == 0
    assert mailerlite_fake.subscriber(ANN)["status"] == "unsubscribed"
    sent = len([r for r in mailerlite_fake.log if r.method != "GET"])
    assert mapped("--full").code == 0  # the same opt-out read again: nothing more is sent
    assert len([r for r in mailerlite_fake.log if r.method != "GET"]) == sent


def test_an_opt_out_of_a_deleted_refused_contacts_address_mailerlite_holds_from_a_form_is_followed(
        mapped, hubspot_fake, mailerlite_fake):
    """Found by the model (-m slow, seeds 1, 3 and 5) on schema 14: ann signed up through a MailerLite form;
    her HubSpot contact's data is refused, so the sync never wrote her address. The contact is deleted,
    then her address opts out in HubSpot: she stayed active, as nothing followed an address the sync
    never wrote. A deleted in-scope contact's address is now a tombstone whatever its problem."""
    mailerlite_fake.resubscribe_by_form(ANN)
    assert mailerlite_fake.subscriber(ANN)["status"] == "active"
    x = contact(hubspot_fake, numemployees=BAD_NUMBER)
    assert mapped("--full").code == 1  # refused, reported
    hubspot_fake.archive_contact(x)
    hubspot_fake.set_address_consent(ANN, unsubscribed_all=True)
    assert mapped("--full").code == 0
    assert mailerlite_fake.subscriber(ANN)["status"] == "unsubscribed"


def test_an_opt_out_of_an_address_a_refused_contact_moved_off_is_followed(mapped, hubspot_fake, mailerlite_fake):
    """Found by the model (-m slow, seed 1) on schema 14: bob signed up through a MailerLite form; a
    HubSpot contact with refused data holds bob, then takes another address. Its old address, never
    written by the sync, was followed by nothing: bob's later opt-out left him active."""
    mailerlite_fake.resubscribe_by_form(BOB)
    x = contact(hubspot_fake, BOB, numemployees=BAD_NUMBER)
    assert mapped("--full").code == 1
    hubspot_fake.update_contact(x, {"email": ANN})  # still refused, now with ann
    hubspot_fake.set_address_consent(BOB, unsubscribed_all=True)
    assert mapped("--full").code == 1
    assert mailerlite_fake.subscriber(BOB)["status"] == "unsubscribed"


def test_an_opt_out_of_an_address_a_merge_let_go_of_is_sent_though_an_earlier_one_was(
        mapped, hubspot_fake, mailerlite_fake):
    """Defect 1's cause through a merge (found by the model): the address left is read by address as it goes."""
    x = contact(hubspot_fake, BOB, numemployees=BAD_NUMBER, hs_email_optout="true")  # opted out, data refused
    mapped()
    assert mailerlite_fake.subscriber(BOB)["status"] == "unsubscribed"  # sent on its own
    y = contact(hubspot_fake, ANN)
    mailerlite_fake.resubscribe_by_form(BOB)  # signs up again in MailerLite...
    hubspot_fake.merge_contacts(y, x, new_id=True)  # ...X merged into Y, who keeps ann: bob is let go of...
    hubspot_fake.set_address_consent(BOB, unsubscribed_all=True)  # ...and opts out again in HubSpot
    assert mapped("--full").code in (0, 1)
    assert mailerlite_fake.subscriber(BOB)["status"] == "unsubscribed"


@pytest.mark.parametrize("status", ["unsubscribed", "bounced"])
def test_an_address_mailerlite_held_inactive_is_not_created_active_after_its_delete(
        mapped, hubspot_fake, mailerlite_fake, status):
    contact(hubspot_fake)
    mailerlite_fake.resubscribe_by_form(ANN, {"name": "Form"})  # MailerLite has her, with other data...
    mailerlite_fake.set_status_in_app(ANN, status)  # ...and she left there
    assert mapped().code == 0  # adoption sends HubSpot's data; MailerLite keeps the status and says so
    assert mailerlite_fake.subscriber(ANN)["status"] == status
    mailerlite_fake.delete_subscriber(ANN)  # a list clean-up in MailerLite
    assert mapped("--full").code == 0
    again = mailerlite_fake.subscriber(ANN)
    assert again is None or again["status"] != "active"


@pytest.mark.parametrize("on_leave", ["remove_from_groups", "unsubscribe"])
@pytest.mark.parametrize("leaves", ["deleted", "merged away"])
def test_a_departure_leaves_the_groups_of_an_address_another_live_contact_holds(
        run, tmp_path, hubspot_fake, mailerlite_fake, on_leave, leaves):
    sync = with_mapping(run, tmp_path, hubspot_fake, on_leave)
    a, c = contact(hubspot_fake, BOB), contact(hubspot_fake, ANN)
    assert sync().code == 0
    contact(hubspot_fake, BOB)  # D: a second contact with A's address (read as A's duplicate)...
    if leaves == "deleted":  # ...and A goes, before the next run
        hubspot_fake.archive_contact(a)
    else:
        hubspot_fake.merge_contacts(c, a, new_id=False)
    sync("--full")
    # D, live and in scope, holds the address: no departure of it, so no group taken (nor an unsubscribe)
    assert mailerlite_fake.subscriber(BOB)["status"] == "active"
    assert GROUP in groups_of(mailerlite_fake, BOB)


def test_a_departure_leaves_the_groups_of_an_address_a_contact_with_refused_data_holds(
        mapped, hubspot_fake, mailerlite_fake):
    contact(hubspot_fake, numemployees=BAD_NUMBER)  # B: in scope, its data refused (reported, exit 1)
    assert mapped().summary["rejected"] == 1
    c = contact(hubspot_fake)  # C: the same address, data fine: synced
    assert mapped().code in (0, 1)
    assert GROUP in groups_of(mailerlite_fake, ANN)
    hubspot_fake.archive_contact(c)  # C deleted; B, live and in scope, still holds the address
    mapped("--full")
    assert mailerlite_fake.subscriber(ANN)["status"] == "active"
    assert GROUP in groups_of(mailerlite_fake, ANN)


def test_a_full_pass_that_lists_an_opted_out_address_active_unsubscribes_it(run, tmp_path, hubspot_fake,
                                                                            mailerlite_fake):
    sync = with_mapping(run, tmp_path, hubspot_fake, scoped=True)
    x = contact(hubspot_fake, numemployees=BAD_NUMBER, lifecyclestage="lead")  # in scope, data refused
    hubspot_fake.lists[SCOPE_LIST].append(int(x))
    contact(hubspot_fake, numemployees=BAD_NUMBER, hs_email_optout="true", lifecyclestage="customer")  # out of scope
    hubspot_fake.set_address_consent(ANN, unsubscribed_all=True)  # the address's opt-out, on every record
    sync("--full")
    assert mailerlite_fake.subscriber(ANN)["status"] == "unsubscribed"  # sent on its own
    mailerlite_fake.resubscribe_by_form(ANN)  # signs up again in MailerLite...
    contact(hubspot_fake, numemployees=BAD_NUMBER, hs_email_optout="true", lifecyclestage="lead")  # ...opts out again
    hubspot_fake.set_address_consent(ANN, unsubscribed_all=True)
    sync("--full")  # the listing shows the address active
    assert mailerlite_fake.subscriber(ANN)["status"] == "unsubscribed"
