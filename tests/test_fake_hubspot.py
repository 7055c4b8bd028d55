"""The fake HubSpot behaves like the documented date-based API (requests over real HTTP)."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any, Optional

import pytest
import requests

from sync.sandbox.fakes.hubspot import READ_SCOPE, FakeHubSpot
from tests.common import ManualClock
from tests.conftest import HS_TOKEN, seed_contacts

V = "2026-09"


class ApiException(Exception):
    def __init__(self, response: requests.Response) -> None:
        super().__init__(response.status_code)
        self.status, self.body, self.headers = response.status_code, response.text, response.headers


def _ns(value: Any) -> Any:
    """JSON as attribute access, like the official client's models (absent keys read as None)."""
    if isinstance(value, dict):
        return _Obj({k: v if k == "properties" else _ns(v) for k, v in value.items()})
    if isinstance(value, list):
        return [_ns(v) for v in value]
    return value


class _Obj(SimpleNamespace):
    def __init__(self, fields: dict) -> None:
        super().__init__(**fields)
        self._fields = fields

    def __getattr__(self, name: str) -> Any:  # only called for missing attributes
        return None


class _Client:
    """The date-based paths, the way the sync calls them (the official client's generated APIs
    only know /crm/v3)."""

    def __init__(self, fake: FakeHubSpot, token: str) -> None:
        self.fake, self.headers = fake, {"Authorization": f"Bearer {token}"}

    def _send(self, method: str, path: str, raw: bool = False, **kwargs: Any) -> Any:
        response = requests.request(method, self.fake.url + path, headers=self.headers, timeout=5, **kwargs)
        if raw:
            return response
        if response.status_code >= 400:
            raise ApiException(response)
        return _ns(response.json())

    def get_page(self, limit: int = 10, after: Optional[str] = None, properties: Optional[list] = None,
                 archived: Optional[str] = None, raw: bool = False) -> Any:
        params: dict = {"limit": limit, "properties": properties or []}
        if after:
            params["after"] = after
        if archived:
            params["archived"] = archived
        return self._send("GET", f"/crm/objects/{V}/contacts", raw=raw, params=params)

    def do_search(self, body: dict) -> Any:
        return self._send("POST", f"/crm/objects/{V}/contacts/search", json=body)

    def properties(self) -> Any:
        return self._send("GET", f"/crm/properties/{V}/contacts")

    def memberships(self, list_id: str, after: Optional[str] = None, limit: int = 100) -> Any:
        params: dict = {"limit": limit}
        if after:
            params["after"] = after
        return self._send("GET", f"/crm/lists/{V}/{list_id}/memberships", params=params)


def client(fake: FakeHubSpot, token: str = HS_TOKEN) -> _Client:
    return _Client(fake, token)


def search(fake: FakeHubSpot, body: dict, token: str = HS_TOKEN) -> requests.Response:
    return requests.post(f"{fake.url}/crm/objects/{V}/contacts/search", json=body,
                         headers={"Authorization": f"Bearer {token}"}, timeout=5)


def test_listing_pages_with_cursor_and_string_values(hubspot_fake):
    seed_contacts(hubspot_fake, 250, numemployees="12")
    api = client(hubspot_fake)
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
    api = client(hubspot_fake)
    assert len(api.get_page(limit=500).results) == 100
    archived = api.get_page(limit=100, archived="true")
    assert [c.id for c in archived.results] == [ids[3]] and archived.results[0].archived is True
    assert not archived.paging


def _search_body(filters, sort="lastmodifieddate", limit=200, after=0):
    return {"filterGroups": [{"filters": filters}], "sorts": [sort], "properties": ["email"], "limit": limit,
            "after": str(after)}


@pytest.mark.parametrize("operator,expected", [("GT", 4), ("GTE", 5), ("LT", 5), ("LTE", 6), ("EQ", 1)])
def test_search_filters_on_lastmodifieddate(hubspot_fake, operator, expected):
    base = 1_700_000_000_000
    for i in range(10):
        hubspot_fake.add_contact({"email": f"s{i}@example.com"}, modified_ms=base + i * 1000)
    pivot = base + 5000
    api = client(hubspot_fake)
    result = api.do_search(_search_body([{"propertyName": "lastmodifieddate", "operator": operator,
                                          "value": str(pivot)}]))
    assert result.total == expected


def test_search_accepts_iso_values_sorts_and_filters_by_id(hubspot_fake):
    base = 1_700_000_000_000
    ids = [hubspot_fake.add_contact({"email": f"s{i}@example.com"}, modified_ms=base + (10 - i) * 1000)
           for i in range(10)]
    api = client(hubspot_fake)
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
    props = client(hubspot_fake).properties().results
    types = {p.type for p in props}
    assert {"string", "number", "date", "datetime", "enumeration", "bool"} <= types
    stage = next(p for p in props if p.name == "lifecyclestage")
    assert {"label": "Customer", "value": "customer"} in [{"label": o.label, "value": o.value} for o in stage.options]


def test_list_memberships_and_batch_read(hubspot_fake):
    ids = seed_contacts(hubspot_fake, 300)
    hubspot_fake.lists["42"] = [int(i) for i in ids[:260]]
    hs = client(hubspot_fake)
    page = hs.memberships("42", limit=250)
    assert len(page.results) == 250 and page.paging.next.after == "250"
    rest = hs.memberships("42", after="250", limit=250)
    assert len(rest.results) == 10
    read = requests.post(f"{hubspot_fake.url}/crm/objects/{V}/contacts/batch/read",
                         json={"inputs": [{"id": ids[0]}, {"id": "999999"}], "properties": ["email"],
                               "propertiesWithHistory": []},
                         headers={"Authorization": f"Bearer {HS_TOKEN}"}, timeout=5)
    assert read.status_code == 207
    body = read.json()
    assert [r["id"] for r in body["results"]] == [ids[0]] and body["errors"][0]["context"]["ids"] == ["999999"]


def test_bad_token_and_missing_scope(hubspot_fake):
    with pytest.raises(ApiException) as bad:
        client(hubspot_fake, "nope").get_page(limit=1)
    body = json.loads(bad.value.body)
    assert bad.value.status == 401 and body["category"] == "INVALID_AUTHENTICATION" and body["status"] == "error"
    hubspot_fake.tokens["schema-less"] = {READ_SCOPE}
    denied = requests.get(f"{hubspot_fake.url}/crm/properties/{V}/contacts",
                          headers={"Authorization": "Bearer schema-less"}, timeout=5)
    assert denied.status_code == 403
    assert denied.json()["errors"][0]["context"]["requiredGranularScopes"] == ["crm.schemas.contacts.read"]


def test_ten_secondly_limit_headers_and_429():
    fake = FakeHubSpot(time_scale=1.0, ten_secondly_limit=3).start()
    fake.clock = ManualClock()  # four requests inside one ten-second window, however slow the machine
    try:
        api = client(fake)
        raw = api.get_page(limit=1, raw=True)
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
    # A "second" of 1.5 real seconds on a clock that moves only when told: three requests fit in
    # it however busy the machine is (on the real clock, with 0.05 s, they did not).
    fake = FakeHubSpot(time_scale=1.5, search_per_second=2).start()
    fake.clock = clock = ManualClock()
    try:
        flt = [{"propertyName": "lastmodifieddate", "operator": "GTE", "value": "0"}]
        answers = [search(fake, _search_body(flt)) for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 429]
        assert not any(h.lower().startswith("x-hubspot-ratelimit") for h in answers[0].headers)
        clock.advance(1.4)
        assert search(fake, _search_body(flt)).status_code == 429  # still inside that second
        clock.advance(0.2)  # past one scaled second
        assert search(fake, _search_body(flt)).status_code == 200
        # The general limit is separate: listing still works.
        assert client(fake).get_page(limit=1).results == []
    finally:
        fake.stop()


def test_daily_limit(hubspot_fake):
    hubspot_fake.daily_limit = 2
    api = client(hubspot_fake)
    api.get_page(limit=1)
    api.get_page(limit=1)
    with pytest.raises(ApiException) as limited:
        api.get_page(limit=1)
    assert json.loads(limited.value.body)["policyName"] == "DAILY"


def test_faults_and_request_log(hubspot_fake):
    seed_contacts(hubspot_fake, 3)
    hubspot_fake.faults.script.extend(["503", "html", "truncated", "drop", None])
    url = f"{hubspot_fake.url}/crm/objects/{V}/contacts"
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
    statuses = [r.status for r in hubspot_fake.requests_to("GET", f"/crm/objects/{V}/contacts")]
    assert statuses[:5] == [503, 200, 200, 0, 200]


def test_random_fault_rate_is_roughly_honoured(hubspot_fake):
    hubspot_fake.faults.rate = 0.3
    headers = {"Authorization": f"Bearer {HS_TOKEN}"}
    codes = [requests.get(f"{hubspot_fake.url}/crm/objects/{V}/contacts", headers=headers, timeout=5).status_code
             for _ in range(200)]
    failures = sum(1 for c in codes if c >= 500)
    assert 30 <= failures <= 90


def test_search_index_shifts_under_offset_paging_and_lags(hubspot_fake):
    """The fake's search is a live index: an edit moves a contact to the end of a lastmodifieddate
    sort, so the next offset page starts one later (what keyset paging guards against)."""
    base = 1_700_000_000_000
    ids = [hubspot_fake.add_contact({"email": f"s{i}@example.com"}, modified_ms=base + i) for i in range(450)]
    flt = [{"propertyName": "lastmodifieddate", "operator": "GTE", "value": "0"}]
    first = search(hubspot_fake, _search_body(flt)).json()
    assert [r["id"] for r in first["results"]] == ids[:200]
    hubspot_fake.update_contact(ids[5], {"firstname": "Edited"})
    second = search(hubspot_fake, _search_body(flt, after=200)).json()
    assert second["results"][0]["id"] == ids[201], "ids[200] slid into page 1's range: offset paging skips it"
    hubspot_fake.search_lag_ms = 60_000  # the index lags writes: both edits (just now) are not visible yet
    hubspot_fake.update_contact(ids[6], {"firstname": "Recent"})
    assert search(hubspot_fake, _search_body(flt)).json()["total"] == 448


def test_token_information_endpoint_and_its_switch(hubspot_fake):
    url = f"{hubspot_fake.url}/oauth/v2/private-apps/get/access-token-info"
    answer = requests.post(url, json={"tokenKey": HS_TOKEN}, timeout=5)
    assert answer.status_code == 200 and READ_SCOPE in answer.json()["scopes"]
    assert requests.post(url, json={"tokenKey": "unknown"}, timeout=5).status_code == 401
    hubspot_fake.token_info_answers = False  # the other reading: service keys get no answer there
    assert requests.post(url, json={"tokenKey": HS_TOKEN}, timeout=5).status_code == 404
