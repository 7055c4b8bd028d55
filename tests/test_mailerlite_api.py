"""End-to-end runs against the fake MailerLite in every reading of what its docs leave open:
batch answers we do not understand, account-level refusals, refusals of one contact, the
unconfirmed field behaviours, listings that are not what they seem, TLS failures."""

from __future__ import annotations

import json
import sqlite3
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Iterator

import pytest
from werkzeug.wrappers import Response

from sync.errors import AbortRun
from sync.mailerlite import MailerLiteClient
from sync.retrying import RetryPolicy
from sync.sandbox.fakes.base import DropConnection
from tests.conftest import ML_TOKEN, seed_contacts


def _json(body, status=200, headers=None):
    return lambda request: Response(json.dumps(body), status=status, content_type="application/json",
                                    headers=headers or {})


def problems(run):
    db = sqlite3.connect(run.state_db)
    try:
        return db.execute("SELECT email, kind, reason, attempts FROM problems ORDER BY email").fetchall()
    finally:
        db.close()


# -- batch answers ----------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", ["upsert", "import", "summary", "refused-batch", "every-item-404"])
def test_batch_answers_in_any_shape_end_exact(run, hubspot_fake, mailerlite_fake, shape):
    if shape == "refused-batch":  # say MailerLite lowered the batch size: the batch as a whole is refused
        refused = {"message": "The given data was invalid.",
                   "errors": {"requests": ["The requests may not have more than 25 items."]}}
        mailerlite_fake.faults.only_paths = ("/api/batch",)
        mailerlite_fake.faults.script.append(_json(refused, 422))
    elif shape == "every-item-404":  # say the path inside a batch changed: each item is refused alike
        item = {"code": 404, "body": {"message": "The route api/subscribers could not be found."}}
        mailerlite_fake.faults.only_paths = ("/api/batch",)
        mailerlite_fake.faults.script.append(_json({"total": 50, "successful": 0, "failed": 50,
                                                    "responses": [item] * 50}))
    else:
        mailerlite_fake.batch_item_shape = shape
    seed_contacts(hubspot_fake, 120)
    result = run()
    assert result.code == 0, result.err
    assert result.summary["created"] + result.summary["updated"] == 120
    assert len(mailerlite_fake.subscribers) == 120
    batches = len(mailerlite_fake.requests_to("POST", "/api/batch"))
    if shape == "upsert":
        assert batches >= 2 and "does not understand" not in result.err
    else:
        # One batch answer not understood: its items go one by one, no batch for the rest of the
        # run, and one warning says so.
        assert batches == 1
        assert result.err.count("does not understand") == 1
        assert all(s["fields"]["name"].startswith("First") for s in mailerlite_fake.subscribers.values())
    # The next run tries batches again.
    for cid in list(hubspot_fake.contacts)[:60]:
        hubspot_fake.update_contact(str(cid), {"city": "Kranj"})
    again = run()
    assert again.code == 0 and again.summary["updated"] == 60, again.err
    assert len(mailerlite_fake.requests_to("POST", "/api/batch")) > batches
    assert sum(1 for s in mailerlite_fake.subscribers.values() if s["fields"]["city"] == "Kranj") == 60


# -- account-level refusals -------------------------------------------------------------------------

@pytest.mark.parametrize("refusal", ["402", "403-plan", "422-limit", "403-suspended"])
@pytest.mark.parametrize("where", ["single", "batch", "batch-item"])
def test_an_account_refusal_stops_the_run_and_rejects_nobody(run, hubspot_fake, mailerlite_fake, refusal, where):
    seed_contacts(hubspot_fake, 2 if where == "single" else 60)
    mailerlite_fake.account_refusal = refusal
    mailerlite_fake.account_refusal_per_item = where == "batch-item"
    result = run()
    assert result.code == 3, result.err
    assert "refused the account" in result.summary["message"] and "\n" not in result.summary["message"]
    assert result.summary["rejected"] == 0 and result.summary["failed"] == 0
    assert problems(run) == []
    assert "Traceback" not in result.err
    # Once the account is in order, everything arrives.
    mailerlite_fake.account_refusal = None
    again = run()
    assert again.code == 0 and len(mailerlite_fake.subscribers) == len(hubspot_fake.contacts), again.err


# -- other refusals of one contact ---------------------------------------------------------------------

def test_another_refusal_of_one_contact_is_failed_then_rejected_with_its_reason(run, hubspot_fake, mailerlite_fake):
    seed_contacts(hubspot_fake, 2)
    refused = {"message": "Something about this subscriber is not allowed."}
    mailerlite_fake.faults.only_paths = ("/api/subscribers",)

    def answer(request):
        body = json.loads(request.get_data() or b"{}")
        if body.get("email") == "person0@example.com":
            return Response(json.dumps(refused), status=400, content_type="application/json")
        return None

    mailerlite_fake.faults.script.extend([answer] * 100)
    outcomes = []
    for _ in range(3):
        result = run()
        outcomes.append((result.code, result.summary["failed"], result.summary["rejected"]))
    assert outcomes == [(1, 1, 0), (1, 1, 0), (1, 0, 1)]
    (email, kind, reason, _attempts), = problems(run)
    assert (email, kind) == ("person0@example.com", "rejected")
    assert "HTTP 400" in reason and "not allowed" in reason
    assert mailerlite_fake.subscriber("person1@example.com") is not None
    # Rejected for good: not sent again until HubSpot changes it.
    sent = len(mailerlite_fake.requests_to("POST", "/api/subscribers"))
    assert run().code == 0
    assert len(mailerlite_fake.requests_to("POST", "/api/subscribers")) == sent


def test_the_import_limit_on_single_upserts_is_bounded(run, hubspot_fake, mailerlite_fake):
    seed_contacts(hubspot_fake, 2)  # fewer than a batch: single upserts
    answer = _json({"message": "You're being rate limited on import creation."}, 429, {"Retry-After": "0.01"})

    def limited(request):  # the import limit is about writes: the first run's listing read goes through
        return answer(request) if request.method == "POST" else None

    mailerlite_fake.faults.only_paths = ("/api/subscribers",)
    mailerlite_fake.faults.script.extend([limited] * 500)
    result = run()
    assert result.code == 1 and result.summary["failed"] == 2, result.err
    assert len(mailerlite_fake.faults.script) >= 300, "each upsert gave up after a bounded number of tries"


# -- unconfirmed field behaviours ------------------------------------------------------------------------

@pytest.mark.parametrize("null_clears", [True, False], ids=["null-clears", "null-ignored"])
def test_a_cleared_field_is_cleared_in_either_reading(run, hubspot_fake, mailerlite_fake, null_clears):
    mailerlite_fake.null_clears = null_clears
    ids = seed_contacts(hubspot_fake, 60)  # enough for a batch: several items teach the same thing
    assert run().code == 0
    assert all(s["fields"]["city"] == "Ljubljana" for s in mailerlite_fake.subscribers.values())
    for cid in ids:
        hubspot_fake.update_contact(cid, {"city": ""})
    result = run()
    assert result.code == 0 and result.summary["updated"] == 60, result.err
    assert all(s["fields"]["city"] in (None, "") for s in mailerlite_fake.subscribers.values())
    assert all(s["fields"]["name"].startswith("First") for s in mailerlite_fake.subscribers.values())


@pytest.mark.parametrize("limit", [1024, 255, None], ids=["1024", "255", "no-limit"])
def test_long_text_arrives_in_every_reading_of_the_limit(run, hubspot_fake, mailerlite_fake, limit):
    mailerlite_fake.text_max = limit
    company = "C" * 600
    seed_contacts(hubspot_fake, 60, company=company)
    hubspot_fake.add_contact({"email": "b@example.com", "company": "Short"}, modified_ms=2)
    result = run()
    assert result.code == 0, result.err
    assert mailerlite_fake.subscriber("b@example.com")["fields"]["company"] == "Short"
    assert {s["fields"]["company"] for s in mailerlite_fake.subscribers.values() if s["email"] != "b@example.com"} \
        == {company[:limit or 1024]}
    assert run("--full").summary["unchanged"] == 61


DATED = '''
[fields]
date_of_birth = { field = "birthday", type = "date" }
'''


@pytest.mark.parametrize("with_time", [False, True], ids=["date", "datetime"])
def test_dates_arrive_in_either_format(run, hubspot_fake, mailerlite_fake, with_time):
    mailerlite_fake.date_with_time = with_time
    mailerlite_fake.add_field("Birthday", "date")
    seed_contacts(hubspot_fake, 60, date_of_birth="1990-02-03")
    mapping = run.tmp_path / "mapping.toml"
    mapping.write_text(DATED)
    result = run("--mapping", str(mapping))
    assert result.code == 0 and result.summary["created"] == 60, result.err
    birthdays = {s["fields"]["birthday"] for s in mailerlite_fake.subscribers.values()}
    assert birthdays == {"1990-02-03 00:00:00" if with_time else "1990-02-03"}


@pytest.mark.parametrize("wording", ["imported", "reactivated"])
def test_the_reactivation_refusal_is_recognised_in_either_wording(run, hubspot_fake, mailerlite_fake, wording):
    mailerlite_fake.reactivation_wording = wording
    mailerlite_fake.refuse_inactive_upserts = True
    mailerlite_fake.add_subscriber("a@example.com", status="unsubscribed")
    hubspot_fake.add_contact({"email": "a@example.com", "firstname": "Ann"}, modified_ms=1)
    hubspot_fake.add_contact({"email": "b@example.com", "firstname": "Bob"}, modified_ms=2)
    result = run()
    assert result.code == 0, result.err
    assert (result.summary["not_reactivated"], result.summary["created"], result.summary["rejected"]) == (1, 1, 0)
    assert mailerlite_fake.subscriber("a@example.com")["status"] == "unsubscribed"


# -- listings -----------------------------------------------------------------------------------------------

@pytest.fixture
def client(mailerlite_fake) -> Iterator[MailerLiteClient]:
    yield MailerLiteClient(ML_TOKEN, mailerlite_fake.base_url,
                           RetryPolicy(backoff=0.001, max_backoff=0.01, default_rate_wait=0.05), timeout=(2.0, 2.0))


@pytest.mark.parametrize("maximum,too_big", [(1000, "clamp"), (100, "clamp"), (100, "422")])
def test_every_subscriber_is_listed_whatever_the_page_size(client, mailerlite_fake, maximum, too_big):
    mailerlite_fake.subscriber_list_max, mailerlite_fake.limit_too_big = maximum, too_big
    for i in range(250):
        mailerlite_fake.add_subscriber(f"s{i}@example.com", status="unsubscribed" if i % 5 == 0 else "active")
    assert len({s["email"] for s in client.iter_subscribers()}) == 250
    assert len({s["email"] for s in client.iter_subscribers(status="unsubscribed")}) == 50
    limits = {r.query["limit"][0] for r in mailerlite_fake.requests_to("GET", "/api/subscribers")}
    assert limits == ({"1000"} if maximum == 1000 or too_big == "clamp" else {"1000", "100"})


@pytest.mark.parametrize("odd", [
    {"data": None, "meta": {"next_cursor": None}},
    {"meta": {"next_cursor": None}},
    {"data": [], "meta": []},
    {"data": [{"id": "1"}], "meta": None},
], ids=["null-data", "no-data", "meta-list", "null-meta"])
def test_a_glitchy_subscriber_page_is_asked_again_never_taken_for_the_end(client, mailerlite_fake, odd):
    mailerlite_fake.subscriber_list_max = 100
    for i in range(250):
        mailerlite_fake.add_subscriber(f"s{i}@example.com")
    listed = client.iter_subscribers()
    first = [next(listed) for _ in range(100)]
    mailerlite_fake.faults.only_paths = ("/api/subscribers",)
    mailerlite_fake.faults.script.append(_json(odd))  # the second page, once
    rest = list(listed)
    assert len({s["email"] for s in first + rest}) == 250


def test_a_subscriber_listing_that_loops_stops_the_run(client, mailerlite_fake):
    for i in range(3):
        mailerlite_fake.add_subscriber(f"s{i}@example.com")
    looping = _json({"data": [{"id": "1", "email": "s@example.com"}], "meta": {"next_cursor": "same"}})
    mailerlite_fake.faults.only_paths = ("/api/subscribers",)
    mailerlite_fake.faults.script.extend([looping] * 50)
    with pytest.raises(AbortRun, match="subscriber listing leads back to a page already read"):
        list(client.iter_subscribers())


@pytest.mark.parametrize("odd", [
    {"data": [], "meta": []},
    {"data": [], "meta": {"current_page": 1, "last_page": "many"}},
    {"data": None, "meta": {"current_page": 1, "last_page": 1}},
    {"data": [], "meta": {"current_page": 2, "last_page": 2}},
], ids=["meta-list", "last-page-text", "null-data", "wrong-page"])
def test_a_glitchy_group_page_is_asked_again_so_no_group_is_made_twice(run, hubspot_fake, mailerlite_fake, odd):
    for i in range(150):
        mailerlite_fake.add_group(f"Other {i}")
    mailerlite_fake.add_group("Synced")  # on the second page of the listing
    seed_contacts(hubspot_fake, 3)
    mailerlite_fake.faults.only_paths = ("/api/groups",)
    mailerlite_fake.faults.script.append(_json(odd))
    mapping = run.tmp_path / "mapping.toml"
    mapping.write_text('[groups]\nall = ["Synced"]\n')
    result = run("--mapping", str(mapping))
    assert result.code == 0, result.err
    assert sum(1 for g in mailerlite_fake.groups.values() if g["name"] == "Synced") == 1


@pytest.mark.parametrize("odd", [{"data": [], "meta": []}, {"data": [], "meta": {"last_page": None}}],
                         ids=["meta-list", "no-last-page"])
def test_a_field_listing_that_stays_odd_is_one_line_and_exit_3(run, hubspot_fake, mailerlite_fake, odd):
    seed_contacts(hubspot_fake, 3)
    mailerlite_fake.faults.only_paths = ("/api/fields",)
    mailerlite_fake.faults.script.extend([_json(odd)] * 20)
    result = run()
    assert result.code == 3 and "Traceback" not in result.err
    message = result.summary["message"]
    assert "MailerLite kept failing on the field listing" in message and "\n" not in message
    assert len(mailerlite_fake.subscribers) == 0


def test_retry_lines_read_well(run, hubspot_fake, mailerlite_fake):
    seed_contacts(hubspot_fake, 3)
    mailerlite_fake.faults.only_paths = ("/api/fields",)
    mailerlite_fake.faults.script.append("503")
    result = run("--verbose")
    assert result.code == 0
    lines = [line.split("INFO: ", 1)[-1] for line in result.err.splitlines() if "retrying" in line]
    # The first field request is every run's key check.
    assert lines and lines[0].startswith("MailerLite key check (one field): HTTP 503; retrying in "), lines


# -- groups --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("unique_ci", [False, True], ids=["names-distinct-by-case", "names-unique-any-case"])
def test_a_group_named_in_another_case(run, hubspot_fake, mailerlite_fake, unique_ci):
    mailerlite_fake.group_names_unique_ci = unique_ci
    existing = mailerlite_fake.add_group("NEWSLETTER")
    seed_contacts(hubspot_fake, 3)
    mapping = run.tmp_path / "mapping.toml"
    mapping.write_text('[groups]\nall = ["Newsletter"]\n')
    result = run("--mapping", str(mapping))
    assert result.code == 0, result.err
    names = sorted(g["name"] for g in mailerlite_fake.groups.values())
    if unique_ci:  # MailerLite refused a second one: the existing group is used, with a warning
        assert names == ["NEWSLETTER"] and "NEWSLETTER" in result.err
        wanted = existing["id"]
    else:
        assert names == ["NEWSLETTER", "Newsletter"]
        wanted = next(gid for gid, g in mailerlite_fake.groups.items() if g["name"] == "Newsletter")
    assert all(wanted in s["groups"] for s in mailerlite_fake.subscribers.values())
    assert run("--mapping", str(mapping), "--full").summary["unchanged"] == 3


def test_duplicate_group_names_use_the_oldest_always(run, hubspot_fake, mailerlite_fake):
    first = mailerlite_fake.add_group("Synced")
    mailerlite_fake.add_group("Synced")
    seed_contacts(hubspot_fake, 3)
    mapping = run.tmp_path / "mapping.toml"
    mapping.write_text('[groups]\nall = ["Synced"]\n')
    result = run("--mapping", str(mapping))
    assert result.code == 0 and "2 groups named 'Synced'" in result.err, result.err
    assert len(mailerlite_fake.groups) == 2
    assert all(s["groups"] == [first["id"]] for s in mailerlite_fake.subscribers.values())


@pytest.mark.parametrize("how", ["timeout", "dropped"])
@pytest.mark.parametrize("what", ["group", "field"])
def test_creating_after_a_lost_answer_makes_exactly_one(run, hubspot_fake, mailerlite_fake, monkeypatch, what, how):
    monkeypatch.setenv("SYNC_HTTP_TIMEOUT", "0.5")
    seed_contacts(hubspot_fake, 3)
    posts = []

    def made_but_unanswered(request):
        """The server makes it; the answer arrives after the client gave up, or never."""
        if request.method != "POST":
            return None
        posts.append(request.path)
        if len(posts) > 1:
            return None
        body = json.loads(request.get_data())
        if what == "group":
            mailerlite_fake.create_group(body)
        else:
            mailerlite_fake.create_field(body)
        if how == "timeout":
            time.sleep(1.5)  # made before the wait: no race with the client's look-up
            return Response("{}", status=201, content_type="application/json")
        raise DropConnection()

    mailerlite_fake.faults.only_paths = ("/api/groups" if what == "group" else "/api/fields",)
    mailerlite_fake.faults.script.extend([made_but_unanswered] * 20)
    mapping = run.tmp_path / "mapping.toml"
    mapping.write_text('create_missing_fields = true\n[fields]\njobtitle = "job_title"\n[groups]\n'
                       'all = ["Synced"]\n')
    result = run("--mapping", str(mapping))
    assert result.code == 0, result.err
    if what == "group":
        assert sum(1 for g in mailerlite_fake.groups.values() if g["name"] == "Synced") == 1
    else:
        assert sum(1 for f in mailerlite_fake.fields if f["key"] == "job_title") == 1
    assert len(posts) == 1, "the look-up found what the unanswered attempt made: no second POST"
    assert len(mailerlite_fake.subscribers) == 3


def test_the_look_up_inside_a_creation_is_not_a_second_retry_layer(run, hubspot_fake, mailerlite_fake, monkeypatch):
    monkeypatch.setenv("SYNC_HTTP_TIMEOUT", "0.2")
    seed_contacts(hubspot_fake, 3)
    mailerlite_fake.add_group("Other")
    listed = []

    def broken(request):
        if request.method == "POST":
            raise DropConnection()
        if listed:  # the first listing (finding which groups exist) works; every look-up after fails
            return Response('{"message": "Server Error"}', status=503, content_type="application/json")
        listed.append(request.path)
        return None

    mailerlite_fake.faults.only_paths = ("/api/groups",)
    mailerlite_fake.faults.script.extend([broken] * 100)
    mapping = run.tmp_path / "mapping.toml"
    mapping.write_text('[groups]\nall = ["Synced"]\n')
    result = run("--mapping", str(mapping))
    assert result.code == 3 and "kept failing on the creation of group 'Synced'" in result.summary["message"]
    tries = [r for r in mailerlite_fake.log if r.path == "/api/groups"]
    # One listing, then the creation's own tries (MAX_FAILURES = 6), each one request: a POST, or a
    # look-up that failed. A look-up retried on its own would add its tries to these.
    assert len(tries) == 1 + 6, [(r.method, r.status) for r in tries]


# -- TLS ---------------------------------------------------------------------------------------------------------

@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[str]:
    """An HTTPS server on 127.0.0.1 whose certificate nobody trusts."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"], check=True, capture_output=True)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_port}/api"
    server.shutdown()
    server.server_close()


def test_a_tls_failure_is_one_clear_line(run, hubspot_fake, mailerlite_fake, monkeypatch, tls_server):
    seed_contacts(hubspot_fake, 3)
    monkeypatch.setenv("MAILERLITE_BASE_URL", tls_server)
    result = run()
    assert result.code == 3, result.err
    assert result.summary["message"] == "TLS certificate verification failed for 127.0.0.1"
    assert "Traceback" not in result.err
