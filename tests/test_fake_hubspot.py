"""The fake HubSpot behaves like the documented API, proven through the official client."""

from __future__ import annotations

import json
import time

import pytest
import requests
from hubspot import HubSpot
from hubspot.crm.contacts.exceptions import ApiException, UnauthorizedException

from sync.sandbox.fakes.hubspot import READ_SCOPE, FakeHubSpot
from tests.conftest import HS_TOKEN, seed_contacts


def client(fake: FakeHubSpot, token: str = HS_TOKEN) -> HubSpot:
    return HubSpot(access_token=token, host=fake.url, retry=False)


def search(fake: FakeHubSpot, body: dict, token: str = HS_TOKEN) -> requests.Response:
    return requests.post(f"{fake.url}/crm/v3/objects/contacts/search", json=body,
                         headers={"Authorization": f"Bearer {token}"}, timeout=5)


def test_listing_pages_with_cursor_and_string_values(hubspot_fake):
    seed_contacts(hubspot_fake, 250, numemployees="12")
    api = client(hubspot_fake).crm.contacts.basic_api
    seen, after, pages = [], None, 0
    while True:
        kwargs = {"limit": 100, "properties": ["email", "numemployees"]}
        if after:
            kwargs["after"] = after
        page = api.get_page(**kwargs)
        pages += 1
        seen.extend(page.results)
        if not page.paging:
            break
        after = page.paging.next.after
    assert pages == 3 and len(seen) == 250
    assert len({c.id for c in seen}) == 250
    first = seen[0].properties
    assert first["email"] == "person0@example.com"
    assert first["numemployees"] == "12" and isinstance(first["numemployees"], str)
    assert "firstname" not in first  # only the properties asked for (plus the three always sent)
    assert {"createdate", "lastmodifieddate", "hs_object_id"} <= set(first)


def test_limit_is_capped_at_100_and_archived_listing(hubspot_fake):
    ids = seed_contacts(hubspot_fake, 150)
    hubspot_fake.archive_contact(ids[3])
    api = client(hubspot_fake).crm.contacts.basic_api
    assert len(api.get_page(limit=500).results) == 100
    archived = api.get_page(limit=100, archived="true")
    assert [c.id for c in archived.results] == [ids[3]] and archived.results[0].archived is True
    assert not archived.paging


def _search_body(filters, sort="lastmodifieddate", limit=200, after=None):
    body = {"filterGroups": [{"filters": filters}], "sorts": [{"propertyName": sort, "direction": "ASCENDING"}],
            "properties": ["email"], "limit": limit}
    if after is not None:
        body["after"] = str(after)
    return body


@pytest.mark.parametrize("operator,expected", [("GT", 4), ("GTE", 5), ("LT", 5), ("LTE", 6), ("EQ", 1)])
def test_search_filters_on_lastmodifieddate(hubspot_fake, operator, expected):
    base = 1_700_000_000_000
    for i in range(10):
        hubspot_fake.add_contact({"email": f"s{i}@example.com"}, modified_ms=base + i * 1000)
    pivot = base + 5000
    api = client(hubspot_fake).crm.contacts.search_api
    result = api.do_search(_search_body([{"propertyName": "lastmodifieddate", "operator": operator,
                                          "value": str(pivot)}]))
    assert result.total == expected


def test_search_accepts_iso_values_sorts_and_filters_by_id(hubspot_fake):
    base = 1_700_000_000_000
    ids = [hubspot_fake.add_contact({"email": f"s{i}@example.com"}, modified_ms=base + (10 - i) * 1000)
           for i in range(10)]
    api = client(hubspot_fake).crm.contacts.search_api
    iso = "2023-11-14T22:13:25.000Z"  # base + 5 s
    res = api.do_search(_search_body([{"propertyName": "lastmodifieddate", "operator": "GTE", "value": iso}]))
    modified = [r.properties["lastmodifieddate"] for r in res.results]
    assert modified == sorted(modified) and res.total == 6
    by_id = api.do_search(_search_body([{"propertyName": "hs_object_id", "operator": "GT", "value": ids[6]}],
                                       sort="hs_object_id"))
    assert [r.id for r in by_id.results] == ids[7:]


def test_search_pages_limit_and_ten_thousand_cap(hubspot_fake):
    base = 1_700_000_000_000
    for i in range(450):
        hubspot_fake.add_contact({"email": f"s{i}@example.com"}, modified_ms=base + i)
    flt = [{"propertyName": "lastmodifieddate", "operator": "GTE", "value": "0"}]
    first = search(hubspot_fake, _search_body(flt)).json()
    assert first["total"] == 450 and len(first["results"]) == 200 and first["paging"]["next"]["after"] == "200"
    last = search(hubspot_fake, _search_body(flt, after=400)).json()
    assert len(last["results"]) == 50 and "paging" not in last
    too_big = search(hubspot_fake, _search_body(flt, limit=201))
    assert too_big.status_code == 400 and too_big.json()["category"] == "VALIDATION_ERROR"
    past_cap = search(hubspot_fake, _search_body(flt, after=9900))
    assert past_cap.status_code == 400


def test_property_definitions_have_realistic_types(hubspot_fake):
    props = client(hubspot_fake).crm.properties.core_api.get_all("contacts").results
    types = {p.type for p in props}
    assert {"string", "number", "date", "datetime", "enumeration", "bool"} <= types
    stage = next(p for p in props if p.name == "lifecyclestage")
    assert {"label": "Customer", "value": "customer"} in [{"label": o.label, "value": o.value} for o in stage.options]


def test_list_memberships_and_batch_read(hubspot_fake):
    ids = seed_contacts(hubspot_fake, 300)
    hubspot_fake.lists["42"] = [int(i) for i in ids[:260]]
    hs = client(hubspot_fake)
    page = hs.crm.lists.memberships_api.get_page("42", limit=250)
    assert len(page.results) == 250 and page.paging.next.after == "250"
    rest = hs.crm.lists.memberships_api.get_page("42", after="250", limit=250)
    assert len(rest.results) == 10
    read = requests.post(f"{hubspot_fake.url}/crm/v3/objects/contacts/batch/read",
                         json={"inputs": [{"id": ids[0]}, {"id": "999999"}], "properties": ["email"]},
                         headers={"Authorization": f"Bearer {HS_TOKEN}"}, timeout=5)
    assert read.status_code == 207
    body = read.json()
    assert [r["id"] for r in body["results"]] == [ids[0]] and body["errors"][0]["context"]["ids"] == ["999999"]


def test_bad_token_and_missing_scope(hubspot_fake):
    with pytest.raises(UnauthorizedException) as bad:
        client(hubspot_fake, "nope").crm.contacts.basic_api.get_page(limit=1)
    body = json.loads(bad.value.body)
    assert bad.value.status == 401 and body["category"] == "INVALID_AUTHENTICATION" and body["status"] == "error"
    hubspot_fake.tokens["schema-less"] = {READ_SCOPE}
    denied = requests.get(f"{hubspot_fake.url}/crm/v3/properties/contacts",
                          headers={"Authorization": "Bearer schema-less"}, timeout=5)
    assert denied.status_code == 403
    assert denied.json()["errors"][0]["context"]["requiredGranularScopes"] == ["crm.schemas.contacts.read"]


def test_ten_secondly_limit_headers_and_429():
    fake = FakeHubSpot(time_scale=1.0, ten_secondly_limit=3).start()
    try:
        api = client(fake).crm.contacts.basic_api
        raw = api.get_page(limit=1, _preload_content=False)
        assert raw.headers["X-HubSpot-RateLimit-Max"] == "3"
        assert raw.headers["X-HubSpot-RateLimit-Remaining"] == "2"
        assert raw.headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
        api.get_page(limit=1)
        api.get_page(limit=1)
        with pytest.raises(ApiException) as limited:
            api.get_page(limit=1)
        body = json.loads(limited.value.body)
        assert limited.value.status == 429 and body["policyName"] == "TEN_SECONDLY_ROLLING"
        assert body["errorType"] == "RATE_LIMIT"
    finally:
        fake.stop()


def test_search_has_its_own_limit_without_headers_and_window_rolls():
    # A "second" of 1.5 real seconds: three requests fit in it even on a busy machine (with 0.05 s
    # they did not, and the third was not refused).
    fake = FakeHubSpot(time_scale=1.5, search_per_second=2).start()
    try:
        flt = [{"propertyName": "lastmodifieddate", "operator": "GTE", "value": "0"}]
        answers = [search(fake, _search_body(flt)) for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 429]
        assert not any(h.lower().startswith("x-hubspot-ratelimit") for h in answers[0].headers)
        time.sleep(1.6)  # one scaled second
        assert search(fake, _search_body(flt)).status_code == 200
        # The general limit is separate: listing still works.
        assert client(fake).crm.contacts.basic_api.get_page(limit=1).results == []
    finally:
        fake.stop()


def test_daily_limit(hubspot_fake):
    hubspot_fake.daily_limit = 2
    api = client(hubspot_fake).crm.contacts.basic_api
    api.get_page(limit=1)
    api.get_page(limit=1)
    with pytest.raises(ApiException) as limited:
        api.get_page(limit=1)
    assert json.loads(limited.value.body)["policyName"] == "DAILY"


def test_faults_and_request_log(hubspot_fake):
    seed_contacts(hubspot_fake, 3)
    hubspot_fake.faults.script.extend(["503", "html", "truncated", "drop", None])
    url = f"{hubspot_fake.url}/crm/v3/objects/contacts"
    headers = {"Authorization": f"Bearer {HS_TOKEN}"}
    assert requests.get(url, headers=headers, timeout=5).status_code == 503
    html = requests.get(url, headers=headers, timeout=5)
    assert html.status_code == 200 and html.text.startswith("<html>")
    with pytest.raises(ValueError):
        requests.get(url, headers=headers, timeout=5).json()
    with pytest.raises(requests.ConnectionError):
        requests.get(url, headers=headers, timeout=5)
    assert requests.get(url, headers=headers, timeout=5).json()["results"]
    hubspot_fake.faults.slow_seconds = 0.5
    hubspot_fake.faults.script.append("slow")
    with pytest.raises(requests.Timeout):
        requests.get(url, headers=headers, timeout=0.2)
    statuses = [r.status for r in hubspot_fake.requests_to("GET", "/crm/v3/objects/contacts")]
    assert statuses[:5] == [503, 200, 200, 0, 200]


def test_random_fault_rate_is_roughly_honoured(hubspot_fake):
    hubspot_fake.faults.rate = 0.3
    headers = {"Authorization": f"Bearer {HS_TOKEN}"}
    codes = [requests.get(f"{hubspot_fake.url}/crm/v3/objects/contacts", headers=headers, timeout=5).status_code
             for _ in range(200)]
    failures = sum(1 for c in codes if c >= 500)
    assert 30 <= failures <= 90
