"""Gap-free incremental reads: search pages by keyset over a live index that shifts under offsets."""

from __future__ import annotations

import sqlite3
import time

import pytest

from tests.conftest import seed_contacts

MINUTE_MS = 60_000


def _set_bookmark(state_db, ms: int) -> None:
    db = sqlite3.connect(state_db)
    db.execute("UPDATE meta SET value=? WHERE key='bookmark_ms'", (str(ms),))
    db.commit()
    db.close()


def _ml_writes(ml, since: int) -> int:
    return sum(1 for r in ml.log[since:] if r.method in ("POST", "PUT", "DELETE"))


def test_an_edit_while_the_sync_pages_hides_no_contact(run, hubspot_fake, mailerlite_fake, monkeypatch):
    """450 changed contacts, one of the first page edited after page 1: with offset paging the
    rest shift by one and a contact is never read; keyset paging reads every one."""
    mailerlite_fake.limits_enabled = False
    seed_contacts(hubspot_fake, 5, age_ms=180 * MINUTE_MS)
    assert run().code == 0
    _set_bookmark(run.state_db, int(time.time() * 1000) - 120 * MINUTE_MS)
    # Changed half an hour ago: older than any safety margin, newer than the bookmark.
    ids = seed_contacts(hubspot_fake, 450, start=100, age_ms=30 * MINUTE_MS)
    searches = []
    original = hubspot_fake.on_search

    def edit_after_first_page(request, **kwargs):
        searches.append(request.path)
        if len(searches) == 2:  # page 1 was answered; someone edits a contact it held
            hubspot_fake.update_contact(ids[5], {"firstname": "Edited"})
        return original(request, **kwargs)

    monkeypatch.setattr(hubspot_fake, "on_search", edit_after_first_page)
    second = run()
    assert second.code == 0, second.err
    assert len(searches) >= 3
    missing = [f"person{i}@example.com" for i in range(100, 550)
               if mailerlite_fake.subscriber(f"person{i}@example.com") is None]
    assert missing == [], "a contact was never read"
    # Each contact once, and the one edited while the search paged once more, with its edit: only the
    # ids of the newest instant are remembered, never every id of the run (memory stays flat).
    assert second.summary["read"] == 451
    assert mailerlite_fake.subscriber("person105@example.com")["fields"]["name"] == "Edited"
    third = run()  # reads the edit again (newer than the run's start, which the bookmark never passes)
    assert third.code == 0 and third.summary["updated"] == 0 and third.summary["unchanged"] >= 1
    # The safety margin re-reads the overlap; unchanged contacts cost no MailerLite request.
    mark = len(mailerlite_fake.log)
    fourth = run()
    assert fourth.code == 0 and fourth.summary["read"] >= 1
    assert fourth.summary["unchanged"] == fourth.summary["read"]
    assert _ml_writes(mailerlite_fake, mark) == 0 and fourth.summary["mailerlite_requests"] == 1  # the key check


def test_the_safety_margin_covers_an_index_lagging_by_minutes(run, hubspot_fake, mailerlite_fake):
    """A change that search shows only minutes later is still read by a later run."""
    from sync.tunables import DEFAULTS

    assert DEFAULTS.search_lag_ms >= 5 * MINUTE_MS
    seed_contacts(hubspot_fake, 3)
    run()
    hubspot_fake.search_lag_ms = 3 * MINUTE_MS  # search shows changes three minutes late
    late = hubspot_fake.add_contact({"email": "late@example.com"})
    assert run().summary["created"] == 0
    hubspot_fake.search_lag_ms = 0
    assert run().summary["created"] == 1 and late


@pytest.mark.parametrize("odd", ["no-results", "repeated-cursor", "loop"])
def test_a_glitchy_listing_page_is_never_taken_for_the_end(run, hubspot_fake, mailerlite_fake, odd):
    """A page without results, a repeated cursor or a cursor loop is retried, then exit 3 - never
    the end of the listing (a full pass treats every contact it did not see as gone)."""
    import json

    from werkzeug.wrappers import Response

    ids = seed_contacts(hubspot_fake, 250)
    assert run().code == 0

    def page(after):
        body = {"results": [{"id": ids[0], "properties": {"email": "person0@example.com"}}]}
        if after is not None:
            body["paging"] = {"next": {"after": after}}
        return lambda request: Response(json.dumps(body), content_type="application/json")

    hubspot_fake.faults.only_paths = ("/crm/objects/2026-09/contacts",)
    if odd == "no-results":
        script = [None] + [lambda r: Response(json.dumps({"paging": {"next": {"after": "x"}}}),
                                              content_type="application/json")] * 20
    elif odd == "repeated-cursor":
        script = [page("c1")] + [page("c1")] * 20
    else:
        script = [page("c1"), page("c2")] + [page("c1")] * 20
    hubspot_fake.faults.script.extend(script)
    result = run("--full")
    assert result.code == 3, result.err
    assert "HubSpot kept failing on contact listing" in result.err
    assert result.summary is not None and result.summary["left_scope"] == 0
    hubspot_fake.faults.script.clear()
    assert run("--full").code == 0
    assert len(mailerlite_fake.subscribers) == 250


# -- the keyset rule, as a table ------------------------------------------------------------------------

def _page(*items):
    """Search results from (lastmodifieddate ms, id) pairs."""
    return [{"id": str(i), "properties": {"lastmodifieddate": str(ms)}} for ms, i in items]


@pytest.mark.parametrize("key,items,more,expected", [
    (("GTE", 100, 0), [(100, 1), (150, 2), (150, 3)], True, ("GTE", 150, 0)),  # on from the newest seen
    (("GTE", 100, 0), [(100, 1), (150, 2)], False, None),  # the last page
    (("GTE", 100, 0), [(100, 1), (100, 2)], True, ("EQ", 100, 0)),  # a full page stuck at one instant
    (("EQ", 100, 0), [(100, 5), (100, 9)], True, ("EQ", 100, 9)),  # that instant, by id
    (("EQ", 100, 9), [(100, 12)], False, ("GT", 100, 0)),  # the instant is done: after it
    (("GT", 100, 0), [(101, 4), (101, 7)], True, ("GTE", 101, 0)),
    (("ID", 0, 0), [(5, 3), (1, 8)], True, ("ID", 0, 8)),  # an id walk ignores dates
    (("ID", 0, 8), [], False, None),
])
def test_next_search_key(key, items, more, expected):
    from sync.hubspot_paging import next_search_key

    assert next_search_key(key, _page(*items), more, {key}) == expected


@pytest.mark.parametrize("key,items,more", [
    (("GTE", 100, 0), [(150, 1), (120, 2)], True),  # not in the order asked for
    (("GTE", 100, 0), [(90, 1)], False),  # older than asked for
    (("GT", 100, 0), [(100, 1)], True),  # not after the instant
    (("EQ", 100, 5), [(100, 3)], True),  # an id already passed
    (("EQ", 100, 0), [(101, 3)], True),  # another instant
    (("GTE", 100, 0), [], True),  # "more", with nothing to go on from
    (("GTE", 100, 0), [(100, 1)], True),  # a repeated position: a loop (seen below)
])
def test_a_search_page_out_of_order_or_looping_is_an_error(key, items, more):
    from sync.hubspot_paging import next_search_key
    from sync.retrying import Transient

    seen = {key, ("EQ", 100, 0)}
    with pytest.raises(Transient):
        next_search_key(key, _page(*items), more, seen)
