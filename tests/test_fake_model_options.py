"""The fakes' options the model-based consent test uses (each additive: the defaults answer as before)."""

from __future__ import annotations

import pytest
import requests

from sync.sandbox.fakes.hubspot import CONSENT_READ_SCOPE
from tests.conftest import HS_TOKEN, ML_TOKEN

V = "2026-09"
ANN = "ann@example.com"


def ml_upsert(fake, body: dict) -> requests.Response:
    return requests.post(f"{fake.base_url}/subscribers", json=body, timeout=5,
                         headers={"Authorization": f"Bearer {ML_TOKEN}"})


def consent_read(fake) -> requests.Response:
    return requests.post(f"{fake.url}/communication-preferences/{V}/statuses/batch/unsubscribe-all/read",
                         params={"channel": "EMAIL"}, json={"inputs": [ANN]}, timeout=5,
                         headers={"Authorization": f"Bearer {HS_TOKEN}"})


@pytest.mark.parametrize("status", ["unsubscribed", "bounced"])
def test_a_status_changed_in_mailerlite_is_kept_and_answered_by_an_upsert(mailerlite_fake, status):
    mailerlite_fake.add_subscriber(ANN)
    mailerlite_fake.set_status_in_app(ANN, status)
    answer = ml_upsert(mailerlite_fake, {"email": ANN, "fields": {"name": "Ann"}})
    assert answer.status_code == 200
    assert answer.json()["data"]["status"] == status  # the upsert's answer carries the status MailerLite keeps
    assert mailerlite_fake.subscriber(ANN)["fields"]["name"] == "Ann"


def test_a_form_sign_up_is_the_one_way_back_to_active(mailerlite_fake):
    mailerlite_fake.add_subscriber(ANN, status="unsubscribed")
    assert ml_upsert(mailerlite_fake, {"email": ANN, "status": "active"}).status_code == 422  # the API refuses
    mailerlite_fake.resubscribe_by_form(ANN, {"name": "Form"})
    sub = mailerlite_fake.subscriber(ANN)
    assert (sub["status"], sub["source"], sub["fields"]["name"]) == ("active", "form", "Form")
    new = mailerlite_fake.resubscribe_by_form("new@example.com")  # a new address: a new subscriber
    assert new["status"] == "active" and mailerlite_fake.subscriber("new@example.com") is new


def test_a_restored_contact_is_live_again_and_shows_its_address_consent(hubspot_fake):
    cid = hubspot_fake.add_contact({"email": ANN})
    hubspot_fake.archive_contact(cid)
    hubspot_fake.set_address_consent(ANN, unsubscribed_all=True)  # opted out meanwhile, by address
    before = hubspot_fake.contacts[int(cid)]["modified"]
    hubspot_fake.restore_contact(cid)
    record = hubspot_fake.contacts[int(cid)]
    assert not record["archived"] and record["modified"] > before
    assert record["properties"]["hs_email_optout"] == "true"


@pytest.mark.parametrize("refusal,category,names_scope", [("scope", "MISSING_SCOPES", True),
                                                           ("plain", "FORBIDDEN", False)])
def test_a_consent_read_refused_with_or_without_the_scope_named(hubspot_fake, refusal, category, names_scope):
    hubspot_fake.consent_refusals.append(refusal)
    refused = consent_read(hubspot_fake)
    assert refused.status_code == 403 and refused.json()["category"] == category
    assert (CONSENT_READ_SCOPE in refused.text) is names_scope
    assert consent_read(hubspot_fake).status_code == 200  # one read each: the next is answered


def test_memberships_pages_capped_and_cut_short(hubspot_fake):
    hubspot_fake.lists["100"] = [1001, 1002, 1003]
    url = f"{hubspot_fake.url}/crm/lists/{V}/100/memberships"
    headers = {"Authorization": f"Bearer {HS_TOKEN}"}
    whole = requests.get(url, params={"limit": 250}, headers=headers, timeout=5).json()
    assert len(whole["results"]) == 3 and "paging" not in whole  # the default: one page of up to 250
    hubspot_fake.membership_page_max = 1
    first = requests.get(url, params={"limit": 250}, headers=headers, timeout=5).json()
    assert len(first["results"]) == 1 and first["paging"]["next"]["after"] == "1"
    hubspot_fake.short_membership_reads["100"] = 1
    cut = requests.get(url, params={"limit": 250}, headers=headers, timeout=5).json()
    assert len(cut["results"]) == 1 and "paging" not in cut  # looks complete, one member of three
