"""Engagement for a contact deleted in HubSpot is dropped, not retried for ever."""

from __future__ import annotations

import sqlite3

import pytest

from sync import engagement
from sync.sandbox.fakes.hubspot import SCHEMA_WRITE_SCOPE, WRITE_SCOPE
from tests.common import HUBSPOT_BATCH_UPDATE
from tests.conftest import seed_contacts


# -- (d) engagement figures for a contact HubSpot no longer has are dropped, not retried for ever -----
@pytest.mark.parametrize("batch_errors", ["207", "400"])
def test_engagement_of_a_deleted_contact_is_dropped_not_retried(run, hubspot_fake, mailerlite_fake, monkeypatch,
                                                               batch_errors):
    hubspot_fake.tokens["hs-test-token"] |= {WRITE_SCOPE, SCHEMA_WRITE_SCOPE}
    hubspot_fake.batch_errors = batch_errors  # both readings: a per-item error, or the batch refused
    monkeypatch.setenv("SYNC_ENGAGEMENT", "true")
    ids = seed_contacts(hubspot_fake, 3)
    assert run().summary["engagement_updated"] == 3
    hubspot_fake.archive_contact(ids[1])  # deleted in HubSpot; the daily archived check has not run yet
    for i in range(3):
        mailerlite_fake.set_engagement(f"person{i}@example.com", sent=2, opens=1, clicks=0)
    with sqlite3.connect(run.state_db) as db:
        db.execute("UPDATE meta SET value='0' WHERE key=?", (engagement.DUE_KEY,))  # the interval has passed
    second = run()
    assert second.code == 0 and second.summary["engagement_updated"] == 2
    assert "no longer exist" in second.err
    with sqlite3.connect(run.state_db) as db:
        assert db.execute("SELECT COUNT(*) FROM engagement WHERE pending IS NOT NULL").fetchone()[0] == 0
    updates = len(hubspot_fake.requests_to("POST", HUBSPOT_BATCH_UPDATE))
    third = run()
    assert third.summary["engagement_requests"] == 0  # nothing retried, nothing due
    assert len(hubspot_fake.requests_to("POST", HUBSPOT_BATCH_UPDATE)) == updates
