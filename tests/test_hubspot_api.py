"""HubSpot's date-based API as its published spec describes it, and each unconfirmed behaviour both ways."""

from __future__ import annotations

import json
import sqlite3
from typing import Any, Dict, List

import pytest
from werkzeug.wrappers import Response

from sync.casting import property_infos, to_epoch_ms
from sync.hubspot import HubSpotWriter
from sync.hubspot_answers import AUTH, DAILY_LIMIT, MISSING_SCOPES, OK, RATE_LIMITED, REFUSED, RETRY, classify
from sync.retrying import RetryPolicy
from sync.sandbox.fakes.hubspot import SCHEMA_WRITE_SCOPE, WRITE_SCOPE
from tests.conftest import FAST, HS_TOKEN, seed_contacts

DATE_PREFIXES = ("/crm/objects/2026-09/", "/crm/properties/2026-09/", "/crm/lists/2026-09/",
                 "/communication-preferences/2026-09/",
                 "/oauth/v2/private-apps/get/access-token-info", "/account-info/2026-09/")


def _grant_write(hs) -> None:
    hs.tokens[HS_TOKEN] |= {WRITE_SCOPE, SCHEMA_WRITE_SCOPE}


def _mark(ml, email: str, status: str) -> None:
    sub = ml.subscriber(email)
    sub["status"] = status
    sub["unsubscribed_at" if status == "unsubscribed" else "updated_at"] = "2026-11-20 10:30:00"


def _mapping(run, text: str) -> str:
    path = run.tmp_path / "mapping.toml"
    path.write_text(text)
    return str(path)


def _json(body: Any, status: int = 200, headers: Dict[str, str] = None):
    return lambda request: Response(json.dumps(body), status=status, headers=headers or {},
                                    content_type="application/json")


# -- paths and the spec ------------------------------------------------------------------------------

def test_every_request_is_on_the_date_based_api_and_valid(run, hubspot_fake, mailerlite_fake, monkeypatch):
    """First run, unchanged run, --full, --check, write-back and a list-scoped mapping: every
    request is on a 2026-09 path and none is refused as invalid (the fake refuses what the spec does:
    a batch read without propertiesWithHistory, options without hidden, search without after)."""
    _grant_write(hubspot_fake)
    monkeypatch.setenv("SYNC_WRITE_BACK", "true")
    monkeypatch.setenv("SYNC_WRITE_BACK_HOURS", "0.000001")
    ids = seed_contacts(hubspot_fake, 30)
    assert run().code == 0
    _mark(mailerlite_fake, "person3@example.com", "unsubscribed")
    assert run().summary["written_back"] == 1
    assert run("--full").code == 0
    assert run("--check").code == 0
    hubspot_fake.lists["55"] = [int(i) for i in ids[:10]]
    scoped = _mapping(run, '[groups]\nlists = { "55" = "Members" }\n[scope]\nlists = ["55"]\n')
    assert run("--mapping", scoped, "--full").code == 0
    assert run("--mapping", scoped).code == 0
    log = hubspot_fake.log
    assert log and all(r.path.startswith(DATE_PREFIXES) for r in log), {r.path for r in log}
    assert [r for r in log if r.status == 400] == []
    reads = [r for r in log if r.path.endswith("/batch/read")]
    assert reads and all(r.body["propertiesWithHistory"] == [] for r in reads)
    searches = [r for r in log if r.path.endswith("/search")]
    assert searches and all(isinstance(s, str) for r in searches for s in r.body["sorts"])
    assert all(v in ("true", "false") for r in log for v in r.query.get("archived", []))
    created = [r.body for r in log if r.method == "POST" and r.path == "/crm/properties/2026-09/contacts"]
    assert created and all(o["hidden"] is False for p in created for o in p.get("options", []))
    assert not [r for r in log if r.path.endswith("/batch/update") and not r.body.get("inputs")], \
        "no deliberately invalid write to probe a scope"


def test_the_api_version_can_be_pinned(run, hubspot_fake, mailerlite_fake, monkeypatch):
    seed_contacts(hubspot_fake, 3)
    monkeypatch.setenv("HUBSPOT_API_VERSION", "2026-03")
    assert run().code == 0
    assert {r.path for r in hubspot_fake.log} >= {"/crm/objects/2026-03/contacts"}
    assert all("/2026-03" in r.path for r in hubspot_fake.log)


@pytest.mark.parametrize("value", ["v3", "2026-13", "2026-9", "latest", "2026-09-01"])
def test_a_malformed_api_version_is_one_line_exit_2(run, hubspot_fake, mailerlite_fake, monkeypatch, value):
    monkeypatch.setenv("HUBSPOT_API_VERSION", value)
    result = run()
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert result.code == 2 and len(lines) == 1 and "HUBSPOT_API_VERSION" in lines[0] and "YYYY-MM" in lines[0]
    assert hubspot_fake.log == []


# -- one classifier ----------------------------------------------------------------------------------

SCOPE_BODY = {"status": "error", "category": "MISSING_SCOPES", "message": "missing",
              "errors": [{"context": {"requiredGranularScopes": ["crm.objects.contacts.write"]}}]}


@pytest.mark.parametrize("status,body,headers,kind,wait", [
    (200, {"results": []}, {}, OK, None),
    (207, {"results": [], "errors": []}, {}, OK, None),
    (429, {"policyName": "TEN_SECONDLY_ROLLING"}, {}, RATE_LIMITED, None),
    (429, {"policyName": "SECONDLY"}, {"Retry-After": "3"}, RATE_LIMITED, 3.0),
    (429, {"policyName": "DAILY"}, {}, DAILY_LIMIT, None),
    (429, "<html>", {}, RATE_LIMITED, None),
    (423, {}, {}, RETRY, 2.0),
    (423, {}, {"Retry-After": "0.5"}, RETRY, 0.5),
    (477, {"message": "Migration in progress"}, {}, RETRY, 2.0),
    (477, None, {"Retry-After": "7"}, RETRY, 7.0),
    (500, {}, {}, RETRY, None),
    (503, "not json", {"Retry-After": "1"}, RETRY, 1.0),
    (408, {}, {}, RETRY, None),
    (401, {"category": "INVALID_AUTHENTICATION"}, {}, AUTH, None),
    (403, {"message": "forbidden"}, {}, AUTH, None),
    (403, SCOPE_BODY, {}, MISSING_SCOPES, None),
    (400, {"category": "VALIDATION_ERROR", "message": "bad value"}, {}, REFUSED, None),
    (404, {}, {}, REFUSED, None),
    (409, {"category": "OBJECT_ALREADY_EXISTS"}, {}, REFUSED, None),
    # batch items: no HTTP status, only a category (and "status": "error")
    (0, {"status": "error", "category": "OBJECT_NOT_FOUND", "message": "Object not found"}, {}, REFUSED, None),
    (0, {"status": "error", "category": "VALIDATION_ERROR", "message": "rule says no"}, {}, REFUSED, None),
    (0, {"status": "error", "category": "RATE_LIMITS"}, {}, RATE_LIMITED, None),
    (0, {"status": "error", "category": "MISSING_SCOPES"}, {}, MISSING_SCOPES, None),
    (0, {"status": "500", "message": "oops"}, {}, RETRY, None),
    (0, ["a list"], {}, REFUSED, None),
])
def test_one_classifier_for_answers_and_batch_items(status, body, headers, kind, wait):
    raw = body if isinstance(body, str) or body is None else json.dumps(body).encode()
    verdict = classify(status, raw, headers)
    assert verdict.kind == kind
    assert verdict.retry_after == wait
    if kind == MISSING_SCOPES and status:
        assert verdict.scopes == ("crm.objects.contacts.write",)
    if kind == REFUSED and isinstance(body, dict) and body.get("message"):
        assert verdict.reason == body["message"]


# -- odd shapes ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("value,expected", [
    ("2024-01-05T10:00:00.123Z", 1704448800123),
    ("2024-01-05T10:00:00Z", 1704448800000),
    ("2024-01-05T10:00:00", 1704448800000),  # no zone: UTC
    ("2024-01-05T11:00:00+01:00", 1704448800000),
    ("1704448800123", 1704448800123),
    (" 1704448800123 ", 1704448800123),
    (1704448800123, 1704448800123),  # a JSON number
    (1704448800123.0, 1704448800123),
    (0, 0),
    (None, None), ("", None), ("soon", None), (True, None), ([1], None), ({"a": 1}, None),
    (float("nan"), None), (float("inf"), None), (-5, None),
    ("99999999999999999999", None),  # a bookmark must never jump past year 9999
    (10**20, None),
    ("²", None), ("１２３", None),  # digits that are not ASCII
])
def test_to_epoch_ms(value, expected):
    assert to_epoch_ms(value) == expected


def test_property_options_of_any_shape_never_crash():
    infos = property_infos({"a": {"type": "enumeration", "options": "not a list"},
                            "b": {"type": "enumeration", "options": 5},
                            "c": {"type": "enumeration", "options": {"value": "x"}},
                            "d": {"type": "enumeration", "options": [None, {"value": "v", "label": "V"}]},
                            "e": "not a definition"})
    assert infos["a"].labels == infos["b"].labels == infos["c"].labels == {}
    assert infos["d"].labels == {"v": "V"} and "e" not in infos


def test_odd_ids_dates_and_options_from_hubspot(run, hubspot_fake, mailerlite_fake):
    """Ids that are not plain numbers are skipped with a warning, a numeric lastmodifieddate is
    read as epoch ms, options that are not a list are no options: never "unexpected <Error>"."""
    seed_contacts(hubspot_fake, 3)
    hubspot_fake.add_property("stage", "enumeration", options=[])
    next(p for p in hubspot_fake.properties if p["name"] == "stage")["options"] = "not a list"
    page = {"results": [{"id": "²", "properties": {"email": "a@example.com"}},
                        {"id": 1.5, "properties": {"email": "b@example.com"}},
                        {"id": "12a", "properties": {"email": "c@example.com"}},
                        {"id": True, "properties": {"email": "d@example.com"}},
                        {"id": "77", "properties": {"email": "ok@example.com", "lastmodifieddate": 1704448800123}}]}
    hubspot_fake.faults.only_paths = ("/crm/objects/2026-09/contacts",)
    hubspot_fake.faults.script.append(_json(page))
    result = run()
    assert result.code == 0, result.err
    assert "unexpected" not in result.err
    assert result.err.count("without a usable id") == 4
    assert mailerlite_fake.subscriber("ok@example.com") is not None
    assert mailerlite_fake.subscriber("a@example.com") is None


# -- scopes -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("token_info", [True, False], ids=["token-info-answers", "service-key-404"])
def test_write_scopes_without_invalid_probes(run, hubspot_fake, mailerlite_fake, monkeypatch, token_info):
    """Where the token-information endpoint answers, a missing write scope stops the run before
    anything is written. Where it does not (service keys), the sync goes ahead and the first
    write's 403 stops it: one line naming the scope, exit 2, no write-back recorded half-done."""
    hubspot_fake.token_info_answers = token_info
    hubspot_fake.tokens[HS_TOKEN] |= {SCHEMA_WRITE_SCOPE}  # may create properties, not write contacts
    ids = seed_contacts(hubspot_fake, 3)
    assert run().code == 0
    monkeypatch.setenv("SYNC_WRITE_BACK", "true")
    _mark(mailerlite_fake, "person1@example.com", "unsubscribed")
    hubspot_fake.add_contact({"email": "new@example.com"})
    result = run()
    errors = [line for line in result.err.splitlines() if line.startswith("ERROR")]
    assert result.code == 2 and len(errors) == 1, result.err
    assert "missing scope crm.objects.contacts.write" in errors[0]
    assert "mailerlite_status" not in hubspot_fake.contacts[int(ids[1])]["properties"]
    # Never a deliberately invalid request to find out.
    assert not [r for r in hubspot_fake.log if r.status == 400]
    assert not [r for r in hubspot_fake.log if r.path.endswith("/batch/update") and not r.body.get("inputs")]
    if token_info:
        assert mailerlite_fake.subscriber("new@example.com") is None  # stopped before writing anything
        assert not hubspot_fake.requests_to("POST", "/crm/objects/2026-09/contacts/batch/update")
    check = run("--check")
    if token_info:
        assert check.code == 2 and "lacks the scope crm.objects.contacts.write" in check.out
    else:
        assert "does not say which scopes this token has" in check.out
    hubspot_fake.tokens[HS_TOKEN] |= {WRITE_SCOPE}  # the scope is added: nothing was lost
    again = run()
    assert again.code == 0 and again.summary["written_back"] == 1
    assert hubspot_fake.contacts[int(ids[1])]["properties"]["mailerlite_status"] == "unsubscribed"


def test_a_service_key_with_every_scope_writes_back(run, hubspot_fake, mailerlite_fake, monkeypatch):
    hubspot_fake.token_info_answers = False
    service_key = "svc/KEY+not-a-pat=="  # no assumption about a token's prefix or shape
    hubspot_fake.tokens[service_key] = set(hubspot_fake.tokens.pop(HS_TOKEN)) | {WRITE_SCOPE, SCHEMA_WRITE_SCOPE}
    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", service_key)
    monkeypatch.setenv("SYNC_WRITE_BACK", "true")
    ids = seed_contacts(hubspot_fake, 3)
    mailerlite_fake.add_subscriber("person2@example.com", status="bounced")
    result = run()
    assert result.code == 0 and result.summary["written_back"] == 1, result.err
    assert hubspot_fake.contacts[int(ids[2])]["properties"]["mailerlite_status"] == "bounced"


# -- batch update: 207 per bad id, or 400 for the whole batch -------------------------------------------

@pytest.mark.parametrize("reading", ["207", "400"])
def test_bad_ids_and_validation_rules_are_per_contact_failures(run, hubspot_fake, mailerlite_fake, monkeypatch,
                                                               reading):
    _grant_write(hubspot_fake)
    monkeypatch.setenv("SYNC_WRITE_BACK", "true")
    hubspot_fake.batch_errors = reading
    ids = seed_contacts(hubspot_fake, 8)
    assert run().code == 0
    for i in range(8):
        _mark(mailerlite_fake, f"person{i}@example.com", "unsubscribed")
    hubspot_fake.failing_update_ids = {ids[2]}  # gone meanwhile
    hubspot_fake.validation_rules = {ids[5]: "Validation rule 'Only sales may edit customers' failed"}
    db = sqlite3.connect(run.state_db)
    db.execute("DELETE FROM meta WHERE key='write_back_due_ms'")
    db.commit()
    db.close()
    result = run()
    assert result.code == 1, result.err
    assert (result.summary["written_back"], result.summary["write_back_failed"]) == (6, 2)
    assert "Only sales may edit customers" in result.err and f"contact {ids[5]}" in result.err
    statuses = {cid: hubspot_fake.contacts[int(cid)]["properties"].get("mailerlite_status") for cid in ids}
    assert [cid for cid, s in statuses.items() if s != "unsubscribed"] == [ids[2], ids[5]]
    updates = hubspot_fake.requests_to("POST", "/crm/objects/2026-09/contacts/batch/update")
    assert all(len({i["id"] for i in r.body["inputs"]}) == len(r.body["inputs"]) for r in updates)
    if reading == "400":
        assert any(r.status == 400 for r in updates) and len(updates) <= 2 * 8
    hubspot_fake.validation_rules = {}
    hubspot_fake.failing_update_ids = set()
    retried = run()  # failures are retried on the next run
    assert retried.code == 0 and retried.summary["written_back"] == 2


def test_the_same_contact_is_never_twice_in_one_batch(hubspot_fake):
    _grant_write(hubspot_fake)
    ids = seed_contacts(hubspot_fake, 3)
    writer = HubSpotWriter(HS_TOKEN, hubspot_fake.url, timeout=(2, 2), tunables=FAST)
    writer.ensure_write_back_properties()
    inputs = [{"id": ids[0], "properties": {"mailerlite_status": "bounced"}},
              {"id": ids[1], "properties": {"mailerlite_status": "junk"}},
              {"id": ids[0], "properties": {"mailerlite_status": "unsubscribed"}}]
    assert writer.update_contacts(inputs) == {}
    updates = hubspot_fake.requests_to("POST", "/crm/objects/2026-09/contacts/batch/update")
    assert [[i["id"] for i in r.body["inputs"]] for r in updates] == [[ids[0], ids[1]], [ids[0]]]
    assert hubspot_fake.contacts[int(ids[0])]["properties"]["mailerlite_status"] == "unsubscribed"


# -- 423 Locked and 477 Migration in progress ---------------------------------------------------------

@pytest.mark.parametrize("status", [423, 477])
@pytest.mark.parametrize("retry_after,expected", [("0.05", 0.05), (None, 2.0)])
def test_locked_and_migrating_are_retried_after_retry_after_or_two_seconds(hubspot_fake, status, retry_after,
                                                                           expected):
    seed_contacts(hubspot_fake, 3)
    waits: List[float] = []
    reader = HubSpotWriter(HS_TOKEN, hubspot_fake.url, timeout=(2, 2), retry=RetryPolicy(sleep=waits.append),
                           tunables=FAST)
    headers = {"Retry-After": retry_after} if retry_after else {}
    hubspot_fake.faults.script.append(_json({"status": "error", "message": "locked"}, status, headers))
    contacts = list(reader.iter_contacts(["email"]))
    assert len(contacts) == 3 and waits == [expected]
    assert [r.status for r in hubspot_fake.log] == [status, 200]


# -- IN values ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("limit", [100, 7])
def test_ids_by_email_within_hubspots_in_limit(hubspot_fake, limit):
    hubspot_fake.in_values_limit = limit
    ids = seed_contacts(hubspot_fake, 30)
    writer = HubSpotWriter(HS_TOKEN, hubspot_fake.url, timeout=(2, 2), tunables=FAST)
    emails = [f"person{i}@example.com" for i in range(30)] + ["nobody@example.com"]
    found = writer.ids_by_email(emails)
    assert found == {f"person{i}@example.com": ids[i] for i in range(30)}
    searches = hubspot_fake.requests_to("POST", "/crm/objects/2026-09/contacts/search")
    sizes = [len(r.body["filterGroups"][0]["filters"][0]["values"]) for r in searches if r.status == 200]
    assert max(sizes) <= limit and sum(sizes) == 31
    assert any(r.status == 400 for r in searches) == (limit < 31)


# -- an existing mailerlite_status property ------------------------------------------------------------

def test_missing_options_are_added_to_an_existing_status_property(run, hubspot_fake, mailerlite_fake,
                                                                   monkeypatch):
    _grant_write(hubspot_fake)
    monkeypatch.setenv("SYNC_WRITE_BACK", "true")
    hubspot_fake.property_groups.append({"name": "mailerlite", "label": "Ours", "displayOrder": 1, "archived": False})
    hubspot_fake.add_property("mailerlite_status", "enumeration", field_type="select",
                              options=[{"label": "Unsubscribed", "value": "unsubscribed"},
                                       {"label": "Manual", "value": "manual", "displayOrder": 5, "hidden": True}])
    seed_contacts(hubspot_fake, 3)
    mailerlite_fake.add_subscriber("person0@example.com", status="junk")
    check = run("--check")
    assert "lacks the options bounced, junk" in check.out and check.code == 0
    result = run()
    assert result.code == 0 and result.summary["written_back"] == 1, result.err
    prop = next(p for p in hubspot_fake.properties if p["name"] == "mailerlite_status")
    assert [o["value"] for o in prop["options"]] == ["unsubscribed", "manual", "bounced", "junk"]
    assert next(o for o in prop["options"] if o["value"] == "manual")["hidden"] is True  # kept as it was
    assert len(hubspot_fake.requests_to("PATCH", "/crm/properties/2026-09/contacts/mailerlite_status")) == 1
    assert "lacks the options" not in run("--check").out


def test_a_status_property_of_another_type_is_one_line_exit_2(run, hubspot_fake, mailerlite_fake, monkeypatch):
    _grant_write(hubspot_fake)
    monkeypatch.setenv("SYNC_WRITE_BACK", "true")
    hubspot_fake.add_property("mailerlite_status", "string")
    seed_contacts(hubspot_fake, 2)
    check = run("--check")
    assert check.code == 2 and "mailerlite_status exists with type 'string'" in check.out
    result = run()
    errors = [line for line in result.err.splitlines() if line.startswith("ERROR")]
    assert result.code == 2 and len(errors) == 1 and "rename or delete" in errors[0]


# -- TLS ----------------------------------------------------------------------------------------------

@pytest.fixture
def self_signed_server(tmp_path):
    """An https server on 127.0.0.1 whose certificate nobody trusts."""
    import shutil
    import ssl
    import subprocess
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key_file), "-out", str(cert_file), "-days", "1",
                    "-subj", "/CN=127.0.0.1"], check=True, capture_output=True, timeout=30)

    class Answer(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'{"results": []}')

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Answer)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_tls_failure_is_one_clear_line_exit_3(run, hubspot_fake, mailerlite_fake, monkeypatch, self_signed_server):
    monkeypatch.setenv("HUBSPOT_BASE_URL", self_signed_server)
    result = run()
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert result.code == 3, result.err
    assert lines[0].startswith("ERROR: TLS certificate verification failed for 127.0.0.1; nothing read or sent")
    assert "unexpected" not in result.err and "Traceback" not in result.err
    assert mailerlite_fake.log == []
