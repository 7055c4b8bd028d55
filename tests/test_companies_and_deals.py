"""Companies and deals (issue 30): company.x, deal.x and the deals.* aggregates, end to end over
real HTTP against the fake HubSpot and MailerLite: read right, kept current hourly, setup
mistakes stopped before anything is written."""

from __future__ import annotations

import time

import pytest

from sync.sandbox.fakes.hubspot import iso_ms
from tests.conftest import HOUR_MS

MAPPING = '''
create_missing_fields = true
[fields]
"company.industry" = { field = "company_industry", transform = "label" }
"company.name" = "company_name"
"company.numberofemployees" = "company_size"
"deal.dealstage" = { field = "deal_stage", transform = "label" }
"deal.amount" = "deal_amount"
"deals.count" = "deals_count"
"deals.open_count" = "deals_open"
"deals.won_count" = "deals_won"
"deals.won_amount" = "deals_won_amount"
[groups.property]
"deal.dealstage" = "Deal: {label}"
'''


def mapping_file(run, text: str = MAPPING) -> str:
    path = run.tmp_path / "mapping.toml"
    path.write_text(text)
    return str(path)


def groups_of(ml, email):
    return sorted(ml.groups[g]["name"] for g in ml.subscriber(email)["groups"])


def old_contact(hs, email: str) -> str:
    return hs.add_contact({"email": email, "firstname": email.split("@")[0]},
                          modified_ms=int(time.time() * 1000) - HOUR_MS)


@pytest.fixture
def crm(hubspot_fake):
    """Two contacts sharing a company and a deal; the first has two companies, one Primary."""
    hs = hubspot_fake
    ann, bob, cat = (old_contact(hs, f"{n}@example.com") for n in ("ann", "bob", "cat"))
    acme = hs.add_company({"name": "Acme", "industry": "COMPUTER_SOFTWARE", "numberofemployees": "250"})
    zed = hs.add_company({"name": "Zed", "industry": "RETAIL"})
    hs.associate_company(ann, zed)  # Zed, then Acme as the Primary one
    hs.associate_company(ann, acme, primary=True)
    hs.associate_company(bob, zed)
    hs.associate_company(bob, acme)  # no Primary label: the lowest id (Acme) is used
    base = int(time.time() * 1000) - 5 * HOUR_MS
    won = hs.add_deal({"dealname": "Won", "dealstage": "closedwon", "amount": "1000.50"}, created_ms=base)
    won2 = hs.add_deal({"dealname": "Won too", "dealstage": "closedwon", "amount": ""}, created_ms=base + 1)
    open_ = hs.add_deal({"dealname": "Open", "dealstage": "contractsent", "amount": "99"}, created_ms=base + 2)
    gone = hs.add_deal({"dealname": "Archived", "dealstage": "qualifiedtobuy", "amount": "5"}, created_ms=base + 3)
    for deal in (won, won2, open_, gone):
        hs.associate_deal(ann, deal)
    hs.associate_deal(bob, open_)  # shared
    hs.archive_object("deals", gone)
    hs.backdate(HOUR_MS)  # the setup is older than the sync's search margin
    return {"ann": ann, "bob": bob, "cat": cat, "acme": acme, "zed": zed, "open": open_, "won": won}


@pytest.mark.parametrize("no_associations,ids", [("empty", "string"), ("207", "number")])
def test_first_run_sends_company_deal_and_aggregates(run, hubspot_fake, mailerlite_fake, crm, no_associations, ids):
    hubspot_fake.no_associations = no_associations  # unconfirmed: an id without any, as HubSpot may answer
    hubspot_fake.association_ids = ids  # the spec's string, or the number v4's examples show
    hubspot_fake.association_page_size = 1  # every contact's list takes several pages
    result = run("--mapping", mapping_file(run))
    assert result.code == 0, result.out + result.err
    ann = mailerlite_fake.subscriber("ann@example.com")["fields"]
    assert ann["company_industry"] == "Computer Software" and ann["company_name"] == "Acme"
    assert ann["company_size"] == 250
    # The latest deal (highest createdate) is the open one; the archived one never counts.
    assert ann["deal_stage"] == "Contract Sent" and ann["deal_amount"] == 99
    assert (ann["deals_count"], ann["deals_open"], ann["deals_won"]) == (3, 1, 2)
    assert ann["deals_won_amount"] == 1000.5  # the empty amount counts 0
    bob = mailerlite_fake.subscriber("bob@example.com")["fields"]
    assert bob["company_name"] == "Acme"  # no Primary label: the lowest id
    assert (bob["deals_count"], bob["deals_open"], bob["deals_won"], bob["deals_won_amount"]) == (1, 1, 0, 0)
    cat = mailerlite_fake.subscriber("cat@example.com")["fields"]
    assert cat.get("company_name") in (None, "") and cat["deals_count"] == 0
    assert groups_of(mailerlite_fake, "ann@example.com") == ["Deal: Contract Sent"]
    assert groups_of(mailerlite_fake, "cat@example.com") == []
    # Each company and deal read once however many contacts share it; 100 ids a request at most.
    reads = hubspot_fake.requests_to("POST", "/crm/objects/2026-09/deals/batch/read")
    read_ids = [i["id"] for r in reads for i in r.body["inputs"]]
    assert sorted(read_ids) == sorted(set(read_ids))
    companies = [i["id"] for r in hubspot_fake.requests_to("POST", "/crm/objects/2026-09/companies/batch/read")
                 for i in r.body["inputs"]]
    assert companies == [crm["acme"]]  # only primary companies are read
    assert all(set(r.body["properties"]) <= {"name", "industry", "numberofemployees"}
               for r in hubspot_fake.requests_to("POST", "/crm/objects/2026-09/companies/batch/read"))


def test_unchanged_hourly_run_costs_two_searches_and_nothing_at_mailerlite(run, hubspot_fake, mailerlite_fake, crm):
    path = mapping_file(run)
    assert run("--mapping", path).code == 0
    hubspot_fake.log.clear()
    mailerlite_fake.log.clear()
    result = run("--mapping", path, "--full")
    assert result.code == 0 and result.summary["created"] + result.summary["updated"] == 0
    hubspot_fake.log.clear()
    mailerlite_fake.log.clear()
    idle = run("--mapping", path)
    assert idle.code == 0 and idle.summary["read"] == 0
    searches = [r.path for r in hubspot_fake.log if r.path.endswith("/search")]
    assert sorted(searches) == ["/crm/objects/2026-09/companies/search", "/crm/objects/2026-09/contacts/search",
                                "/crm/objects/2026-09/deals/search"]
    assert not [r for r in hubspot_fake.log if "associations" in r.path or "batch/read" in r.path]


def test_company_edit_sends_every_contact_of_that_company(run, hubspot_fake, mailerlite_fake, crm):
    path = mapping_file(run)
    assert run("--mapping", path).code == 0
    hubspot_fake.update_object("companies", crm["acme"], {"industry": "BANKING"})
    result = run("--mapping", path)
    assert result.code == 0
    assert result.summary["updated"] == 2  # ann (Primary) and bob (lowest id); cat has no company
    for who in ("ann", "bob"):
        assert mailerlite_fake.subscriber(f"{who}@example.com")["fields"]["company_industry"] == "Banking"
    again = run("--mapping", path)  # the search's margin reads Acme again: nothing is sent twice
    assert again.summary["updated"] + again.summary["created"] == 0


def test_deal_stage_change_moves_the_deal_group_and_keeps_others(run, hubspot_fake, mailerlite_fake, crm):
    text = MAPPING.replace("[groups.property]", "[groups]\nall = [\"Newsletter\"]\n[groups.property]")
    path = mapping_file(run, text)
    assert run("--mapping", path).code == 0
    assert groups_of(mailerlite_fake, "bob@example.com") == ["Deal: Contract Sent", "Newsletter"]
    hubspot_fake.update_object("deals", crm["open"], {"dealstage": "closedwon"})
    result = run("--mapping", path)
    assert result.code == 0 and result.summary["updated"] == 2
    assert groups_of(mailerlite_fake, "bob@example.com") == ["Deal: Closed Won", "Newsletter"]
    bob = mailerlite_fake.subscriber("bob@example.com")
    assert bob["status"] == "active" and bob["fields"]["deals_won"] == 1
    assert bob["fields"]["deals_won_amount"] == 99


def test_a_new_deal_reaches_its_contacts_within_the_hour(run, hubspot_fake, mailerlite_fake, crm):
    path = mapping_file(run)
    assert run("--mapping", path).code == 0
    deal = hubspot_fake.add_deal({"dealname": "New", "dealstage": "appointmentscheduled", "amount": "7"})
    hubspot_fake.associate_deal(crm["cat"], deal)  # associating bumps nothing; the deal is new
    result = run("--mapping", path)
    assert result.code == 0 and result.summary["updated"] == 1
    assert mailerlite_fake.subscriber("cat@example.com")["fields"]["deal_stage"] == "Appointment Scheduled"


def test_association_only_changes_wait_for_the_daily_pass_or_full(run, hubspot_fake, mailerlite_fake, crm):
    path = mapping_file(run)
    assert run("--mapping", path).code == 0
    hubspot_fake.dissociate("deals", crm["bob"], crm["open"])  # no timestamp moves anywhere
    hourly = run("--mapping", path)  # the daily pass is not due yet
    assert hourly.summary["updated"] == 0
    assert mailerlite_fake.subscriber("bob@example.com")["fields"]["deals_count"] == 1
    full = run("--mapping", path, "--full")
    assert full.code == 0 and full.summary["updated"] == 1
    bob = mailerlite_fake.subscriber("bob@example.com")
    assert bob["fields"]["deals_count"] == 0 and bob["fields"].get("deal_stage") in (None, "")
    assert groups_of(mailerlite_fake, "bob@example.com") == []  # the deal-stage group it managed is left


def test_daily_association_pass_finds_association_only_changes(run, hubspot_fake, mailerlite_fake, crm):
    path = mapping_file(run)
    run.env_file.write_text("SYNC_ASSOCIATIONS_HOURS=0.0000001\n")  # the pass is due on every run
    assert run("--mapping", path).code == 0
    hubspot_fake.dissociate("deals", crm["bob"], crm["open"])
    hubspot_fake.archive_object("deals", crm["won"])  # archived: no search finds it
    result = run("--mapping", path)
    assert result.code == 0 and result.summary["updated"] == 2  # ann and bob, not cat
    assert mailerlite_fake.subscriber("bob@example.com")["fields"]["deals_count"] == 0
    assert mailerlite_fake.subscriber("ann@example.com")["fields"]["deals_won"] == 1
    reads = hubspot_fake.requests_to("POST", "/crm/associations/2026-09/contacts/deals/batch/read")
    assert reads and all(len(r.body["inputs"]) <= 1000 for r in reads)


@pytest.mark.parametrize("scope,name", [("crm.objects.companies.read", "company.industry"),
                                        ("crm.objects.deals.read", "deals.count")])
@pytest.mark.parametrize("first_run", [True, False])
def test_missing_object_scope_stops_before_anything_is_written(run, hubspot_fake, mailerlite_fake, crm, scope,
                                                               name, first_run):
    path = mapping_file(run)
    if not first_run:
        assert run("--mapping", path).code == 0
        hubspot_fake.update_contact(crm["cat"], {"firstname": "Catherine"})
    hubspot_fake.tokens["hs-test-token"].discard(scope)
    mailerlite_fake.log.clear()
    result = run("--mapping", path)
    assert result.code == 2
    line = result.summary["message"] if result.summary else result.err
    assert f"missing scope {scope}" in line and name in line and "service key or private app" in line
    assert not [r for r in mailerlite_fake.log if r.method in ("POST", "PUT", "DELETE")]


def test_unknown_company_property_stops_with_a_suggestion(run, hubspot_fake, mailerlite_fake, crm):
    path = mapping_file(run, MAPPING.replace('"company.industry"', '"company.industy"'))
    result = run("--mapping", path)
    assert result.code == 2
    line = result.summary["message"] if result.summary else result.err
    assert "company.industy" in line and "did you mean company.industry?" in line
    assert mailerlite_fake.subscriber("ann@example.com") is None


def test_scope_where_on_the_company(run, hubspot_fake, mailerlite_fake, crm):
    hubspot_fake.update_object("companies", crm["acme"], {"lifecyclestage": "customer"})
    text = MAPPING + '\n[scope.where]\n"company.lifecyclestage" = ["customer"]\n'
    path = mapping_file(run, text)
    assert run("--mapping", path).code == 0
    assert mailerlite_fake.subscriber("ann@example.com") is not None
    assert mailerlite_fake.subscriber("cat@example.com") is None  # no company: out of scope
    zed_contact = old_contact(hubspot_fake, "dan@example.com")
    hubspot_fake.associate_company(zed_contact, crm["zed"], primary=True)
    assert run("--mapping", path).code == 0
    assert mailerlite_fake.subscriber("dan@example.com") is None
    hubspot_fake.update_object("companies", crm["zed"], {"lifecyclestage": "customer"})
    result = run("--mapping", path)  # Zed became a customer: its contacts come into scope within the hour
    assert result.code == 0 and mailerlite_fake.subscriber("dan@example.com") is not None


def test_check_lists_company_and_deal_mappings_with_samples(run, hubspot_fake, mailerlite_fake, crm):
    result = run("--mapping", mapping_file(run), "--check")
    assert result.code == 0, result.out
    assert "company.industry" in result.out and "deals.won_amount" in result.out
    assert "Computer Software" in result.out and "Contract Sent" in result.out  # ann's primary company and deal
    assert "Deal: {label} (from deal.dealstage)" in result.out
    assert all(r.method == "GET" for r in mailerlite_fake.log)


@pytest.mark.parametrize("scope", ["crm.objects.companies.read", "crm.objects.deals.read"])
def test_check_names_a_missing_object_scope(run, hubspot_fake, mailerlite_fake, crm, scope):
    hubspot_fake.tokens["hs-test-token"].discard(scope)
    result = run("--mapping", mapping_file(run), "--check")
    assert result.code == 2
    assert f"missing scope {scope}" in result.out and "service key or private app" in result.out


def test_check_recommends_the_schema_scopes(run, hubspot_fake, mailerlite_fake, crm):
    hubspot_fake.tokens["hs-test-token"] -= {"crm.schemas.companies.read", "crm.schemas.deals.read"}
    text = MAPPING.replace(', transform = "label"', "")
    text = text.replace('[groups.property]\n"deal.dealstage" = "Deal: {label}"', "")
    result = run("--mapping", mapping_file(run, text), "--check")
    assert result.code == 0, result.out
    assert "crm.schemas.companies.read and crm.schemas.deals.read (recommended)" in result.out


def test_check_suggests_the_name_of_a_mistyped_deal_property(run, hubspot_fake, mailerlite_fake, crm):
    result = run("--mapping", mapping_file(run, MAPPING.replace('"deal.amount"', '"deal.amout"')), "--check")
    assert result.code == 2 and "deal.amout (did you mean deal.amount?)" in result.out


def test_dry_run_verbose_names_the_associated_fields_that_change(run, hubspot_fake, mailerlite_fake, crm, caplog):
    path = mapping_file(run)
    assert run("--mapping", path).code == 0
    hubspot_fake.update_object("deals", crm["open"], {"amount": "120"})
    mailerlite_fake.log.clear()
    dry = run("--mapping", path, "--dry-run", "--verbose")
    assert dry.code == 0 and dry.summary["would_send"] == 2
    planned = [line for line in (dry.err + caplog.text).splitlines() if "update" in line]
    assert any("bob@example.com" in line and "values changed" in line for line in planned), planned
    assert not [r for r in mailerlite_fake.log if r.method != "GET"]
    assert mailerlite_fake.subscriber("bob@example.com")["fields"]["deal_amount"] == 99


@pytest.mark.parametrize("bad,why", [
    ('"deals.total" = "x"', "'deals.total' is not one of deals.count"),
    ('"company.a.b" = "x"', "give one company property after company."),
    ('"contact.email" = "x"', "is not a HubSpot property name"),
])
def test_mapping_file_refuses_unknown_associated_names(run, hubspot_fake, mailerlite_fake, bad, why):
    result = run("--mapping", mapping_file(run, f"[fields]\n{bad}\n"))
    assert result.code == 2
    assert why in (result.summary["message"] if result.summary else result.err)


def test_an_unreadable_association_is_never_taken_for_no_company(run, hubspot_fake, mailerlite_fake, crm):
    """With [scope.where] on the company, "no company" would take the contact out of scope: an
    association HubSpot answers with an error (not NO_ASSOCIATIONS_FOUND) is asked again, then the run stops."""
    hubspot_fake.update_object("companies", crm["acme"], {"lifecyclestage": "customer"})
    text = MAPPING + '\non_leave = "unsubscribe"\n'
    text = 'on_leave = "unsubscribe"\n' + MAPPING + '\n[scope.where]\n"company.lifecyclestage" = ["customer"]\n'
    path = mapping_file(run, text)
    assert run("--mapping", path).code == 0
    assert mailerlite_fake.subscriber("ann@example.com")["status"] == "active"
    hubspot_fake.update_contact(crm["ann"], {"firstname": "Annie"})
    hubspot_fake.association_failures.add(crm["ann"])
    result = run("--mapping", path)
    assert result.code == 3 and result.summary["left_scope"] == 0
    ann = mailerlite_fake.subscriber("ann@example.com")
    assert ann["status"] == "active" and ann["fields"]["name"] == "ann"
    hubspot_fake.association_failures.clear()
    after = run("--mapping", path)  # HubSpot answers again: the change goes, nobody left
    assert after.code == 0 and after.summary["left_scope"] == 0
    assert mailerlite_fake.subscriber("ann@example.com")["fields"]["name"] == "Annie"


def test_a_new_primary_company_reaches_the_contact_within_the_hour(run, hubspot_fake, mailerlite_fake, crm):
    path = mapping_file(run)
    assert run("--mapping", path).code == 0
    hubspot_fake.associate_company(crm["ann"], crm["zed"], primary=True)  # HubSpot sets associatedcompanyid
    result = run("--mapping", path)
    assert result.code == 0 and result.summary["updated"] == 1
    assert mailerlite_fake.subscriber("ann@example.com")["fields"]["company_name"] == "Zed"


def test_many_companies_changed_at_one_instant_are_all_found(run, hubspot_fake, mailerlite_fake):
    """More changed companies than a search page, all at one hs_lastmodifieddate: the keyset walk goes
    through that instant by id (no company, and so no contact, is missed)."""
    hs = hubspot_fake
    people = [old_contact(hs, f"p{i}@example.com") for i in range(450)]
    companies = [hs.add_company({"name": f"C{i}", "industry": "RETAIL"}) for i in range(450)]
    for person, company in zip(people, companies):
        hs.associate_company(person, company, primary=True)
    hs.backdate(HOUR_MS)
    path = mapping_file(run, 'create_missing_fields = true\n[fields]\n'
                             '"company.industry" = { field = "industry", transform = "label" }\n')
    assert run("--mapping", path).code == 0
    for company in companies:
        hs.update_object("companies", company, {"industry": "BANKING"})
    instant = hs.objects["companies"][int(companies[0])]["modified"]
    with hs.lock:
        for company in companies:  # one bulk edit, one instant
            hs.objects["companies"][int(company)]["modified"] = instant
            hs.objects["companies"][int(company)]["properties"]["hs_lastmodifieddate"] = iso_ms(instant)
    result = run("--mapping", path)
    assert result.code == 0 and result.summary["updated"] == 450
    searches = hs.requests_to("POST", "/crm/objects/2026-09/companies/search")
    assert any(f["propertyName"] == "hs_object_id" for r in searches for g in r.body["filterGroups"]
               for f in g["filters"])


def _writes(ml, mark):
    with ml.lock:
        return [r for r in ml.log[mark:] if r.method in ("POST", "PUT", "DELETE")]


def test_a_lost_state_adopts_what_mailerlite_holds_with_company_and_deal_values(run, hubspot_fake, mailerlite_fake,
                                                                              crm):
    path = mapping_file(run)
    assert run("--mapping", path).code == 0
    run.state_db.unlink()  # the state lost: MailerLite's listing is compared, the associated values too
    mark = len(mailerlite_fake.log)
    again = run("--mapping", path)
    assert again.code == 0 and again.summary["adopted"] == 3
    assert again.summary["created"] + again.summary["updated"] == 0 and not _writes(mailerlite_fake, mark)


def test_full_repairs_an_associated_field_edited_in_mailerlite(run, hubspot_fake, mailerlite_fake, crm):
    path = mapping_file(run)
    assert run("--mapping", path).code == 0
    deal_group = next(g["id"] for g in mailerlite_fake.groups.values() if g["name"] == "Deal: Contract Sent")
    mailerlite_fake.subscriber("ann@example.com")["fields"]["company_industry"] = "Edited by hand"
    mailerlite_fake.subscriber("bob@example.com")["groups"].remove(deal_group)
    full = run("--mapping", path, "--full")
    assert full.code == 0 and full.summary["repaired"] == 2
    assert mailerlite_fake.subscriber("ann@example.com")["fields"]["company_industry"] == "Computer Software"
    assert groups_of(mailerlite_fake, "bob@example.com") == ["Deal: Contract Sent"]
