"""Reads by id of a merged-away contact: HubSpot answers the record it was merged into, under that
record's own id (../shared/api/hubspot.md, "Merges"), and the fake does the same. Every place that
reads contacts by id must take such an answer as "not this id", never as a second copy to process."""

from __future__ import annotations

import pytest
import requests

from tests.conftest import HS_TOKEN, seed_contacts


def _upserts_for(mailerlite_fake, email):
    return [r for r in mailerlite_fake.log if r.method == "POST" and email in str(r.body)]


def test_the_fake_answers_a_merged_away_id_with_the_merged_record(hubspot_fake):
    a, b = seed_contacts(hubspot_fake, 2)
    merged = hubspot_fake.merge_contacts(a, b, new_id=True)
    body = {"inputs": [{"id": a}, {"id": b}], "properties": ["email"], "propertiesWithHistory": []}
    answer = requests.post(f"{hubspot_fake.url}/crm/objects/2026-09/contacts/batch/read", json=body, timeout=10,
                           headers={"Authorization": f"Bearer {HS_TOKEN}"})
    assert answer.status_code == 200
    assert [(r["id"], r["properties"]["email"]) for r in answer.json()["results"]] == \
        [(merged, "person0@example.com")] * 2


@pytest.mark.parametrize("new_id", [True, False], ids=["merge makes a new id", "primary keeps its id"])
def test_a_failed_contact_merged_away_is_processed_once(run, hubspot_fake, mailerlite_fake, new_id):
    """A contact whose upsert failed is read again by id on the next run. Merged away meanwhile, its id
    is answered with the merged record, which the search returns too: it must be processed once."""
    a, b = seed_contacts(hubspot_fake, 2)
    mailerlite_fake.failing_emails["person1@example.com"] = 1_000  # b's upserts fail this run
    first = run()
    assert first.code == 1 and first.summary["failed"] == 1, first.err
    mailerlite_fake.failing_emails.clear()
    hubspot_fake.merge_contacts(a, b, new_id=new_id)  # b is merged away into a (or a new record)
    mailerlite_fake.log.clear()
    second = run()
    assert second.code == 0, second.err
    assert second.summary["read"] == 1, second.summary  # the merged record, once
    assert len(_upserts_for(mailerlite_fake, "person0@example.com")) <= 1
