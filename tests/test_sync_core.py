"""End-to-end: main([...]) against the fake servers over real HTTP."""

from __future__ import annotations

import pytest

from sync.retrying import parse_retry_after
from tests.conftest import messages, seed_contacts


def assert_clean(result) -> None:
    assert "Traceback" not in result.err and "Traceback" not in result.out
    assert "hs-test-token" not in result.err + result.out and "ml-test-token" not in result.err + result.out


def upsert_bodies(ml):
    """Every subscriber payload MailerLite received, from single calls and batch items."""
    bodies = [r.body for r in ml.requests_to("POST", "/api/subscribers") if r.status]
    for r in ml.requests_to("POST", "/api/batch"):
        if r.status == 200:
            bodies += [item["body"] for item in r.body["requests"]]
    return bodies


def test_full_sync_of_thousands_across_many_pages(run, hubspot_fake, mailerlite_fake):
    seed_contacts(hubspot_fake, 2500)
    result = run()
    assert_clean(result)
    assert result.code == 0
    s = result.summary
    assert (s["mode"], s["read"], s["created"], s["updated"], s["skipped"], s["rejected"], s["failed"]) == \
        ("full", 2500, 2500, 0, 0, 0, 0)
    assert len(mailerlite_fake.subscribers) == 2500
    assert len(hubspot_fake.requests_to("GET", "/crm/objects/2026-09/contacts")) == 25
    sub = mailerlite_fake.subscriber("person1234@example.com")
    assert sub["fields"]["name"] == "First1234" and sub["fields"]["last_name"] == "Last1234"
    assert sub["fields"]["z_i_p"] == str(1000 + 1234 % 50)
    assert mailerlite_fake.requests_to("POST", "/api/batch"), "batches are used"
    assert all(len(r.body["requests"]) <= 50 for r in mailerlite_fake.requests_to("POST", "/api/batch"))


def test_default_mapping_trims_lowercases_and_drops_empty(run, hubspot_fake, mailerlite_fake):
    hubspot_fake.add_contact({"email": "  Mixed.Case@Example.COM ", "firstname": "Ana", "lastname": "",
                              "company": "  Acme  ", "phone": "+386 1 234", "city": "Kranj", "state": "   ",
                              "zip": "4000", "country": "Slovenia"}, modified_ms=1)
    result = run()
    assert result.code == 0
    [body] = upsert_bodies(mailerlite_fake)
    assert body == {"email": "mixed.case@example.com",
                    "fields": {"name": "Ana", "company": "Acme", "phone": "+386 1 234", "city": "Kranj",
                               "z_i_p": "4000", "country": "Slovenia"}}


def test_skipped_and_rejected_are_counted_exactly_and_never_sent(run, hubspot_fake, mailerlite_fake):
    seed_contacts(hubspot_fake, 20)
    for props in ({"email": ""}, {"firstname": "No email"}, {"email": "   "}):
        hubspot_fake.add_contact(props, modified_ms=1)
    for bad in ("not-an-email", "two@@example.com", "spaces in@example.com", "nodot@localhost"):
        hubspot_fake.add_contact({"email": bad}, modified_ms=1)
    mailerlite_fake.undeliverable_domains.add("blocked.example")
    hubspot_fake.add_contact({"email": "someone@blocked.example"}, modified_ms=1)
    result = run()
    assert_clean(result)
    s = result.summary
    assert (s["read"], s["created"], s["skipped"], s["rejected"], s["failed"]) == (28, 20, 3, 5, 0)
    assert result.code == 1
    sent = {b["email"] for b in upsert_bodies(mailerlite_fake)}
    assert not sent & {"not-an-email", "two@@example.com", "spaces in@example.com", "nodot@localhost"}
    assert "someone@blocked.example" in sent  # MailerLite made that call, and its reason is kept


def test_opt_outs_are_unsubscribed_and_active_is_never_sent(run, hubspot_fake, mailerlite_fake):
    seed_contacts(hubspot_fake, 10)
    hubspot_fake.add_contact({"email": "optout-new@example.com", "hs_email_optout": "true"}, modified_ms=1)
    mailerlite_fake.add_subscriber("optout-old@example.com", status="active")
    hubspot_fake.add_contact({"email": "optout-old@example.com", "hs_email_optout": "TRUE"}, modified_ms=1)
    result = run()
    assert result.code == 0
    assert mailerlite_fake.subscriber("optout-new@example.com")["status"] == "unsubscribed"
    assert mailerlite_fake.subscriber("optout-old@example.com")["status"] == "unsubscribed"
    assert all(b.get("status") in (None, "unsubscribed") for b in upsert_bodies(mailerlite_fake))


@pytest.mark.parametrize("strict", [False, True], ids=["lenient-upsert", "strict-refusal"])
def test_inactive_subscribers_are_never_reactivated(run, hubspot_fake, mailerlite_fake, strict):
    mailerlite_fake.refuse_inactive_upserts = strict
    for status in ("unsubscribed", "bounced", "junk"):
        mailerlite_fake.add_subscriber(f"{status}@example.com", status=status)
        hubspot_fake.add_contact({"email": f"{status}@example.com", "firstname": "Back"}, modified_ms=1)
    seed_contacts(hubspot_fake, 5)
    result = run()
    assert_clean(result)
    assert result.code == 0  # a refusal to reactivate is expected, not an error
    for status in ("unsubscribed", "bounced", "junk"):
        assert mailerlite_fake.subscriber(f"{status}@example.com")["status"] == status
    if strict:
        # MailerLite refused them: counted apart, and not retried while the contact is unchanged.
        assert result.summary["not_reactivated"] == 3 and result.summary["created"] == 5
        assert [a["requested"] for a in mailerlite_fake.reactivation_attempts] == [None] * 3
        again = run("--full")
        assert again.summary["unchanged"] == 8 and again.summary["not_reactivated"] == 0
        assert len(mailerlite_fake.reactivation_attempts) == 3
    else:
        assert mailerlite_fake.reactivation_attempts == []
        assert result.summary["updated"] == 3


def _respects_retry_after(log) -> int:
    """Checks no request followed a 429 before its Retry-After; returns how many 429s there were."""
    limited = 0
    for i, entry in enumerate(log):
        wait = parse_retry_after(entry.response_headers.get("Retry-After"))
        if entry.status != 429 or wait is None:
            continue
        limited += 1
        later = [e for e in log[i + 1:] if e.path == entry.path]
        if later:
            assert later[0].time - entry.time >= wait * 0.95, (entry.path, wait, later[0].time - entry.time)
    return limited


def test_mailerlite_429s_are_honoured(run, hubspot_fake, mailerlite_fake):
    seed_contacts(hubspot_fake, 700)
    mailerlite_fake.global_limit.limit = 20
    # At least one 429 whatever the machine's speed: a slow machine paced by the window alone may
    # never overshoot it (this test failed so under load), so the sixth request is refused as over
    # the limit, with the window's own Retry-After.
    mailerlite_fake.faults.script.extend([None] * 5 + ["429"])
    result = run()
    assert result.code == 0 and result.summary["created"] == 700
    assert _respects_retry_after(mailerlite_fake.log) >= 1


def test_hubspot_rate_limits_are_paced_and_honoured(run, hubspot_fake, mailerlite_fake):
    seed_contacts(hubspot_fake, 1500)
    hubspot_fake.general_limit.limit = 4
    hubspot_fake.send_retry_after = True
    mailerlite_fake.limits_enabled = False
    # Pacing may avoid every 429: one is scripted so the Retry-After half is really exercised.
    hubspot_fake.faults.only_paths = ("/crm/objects/2026-09/contacts",)
    hubspot_fake.faults.script.extend([None, "429"])
    result = run()
    assert result.code == 0 and result.summary["created"] == 1500
    listing = hubspot_fake.requests_to("GET", "/crm/objects/2026-09/contacts")
    ok = [r for r in listing if r.status == 200]
    assert len(ok) == 15
    limited = [r for r in listing if r.status == 429]
    assert len(limited) <= 4, "pacing from the X-HubSpot-RateLimit headers keeps 429s rare"
    assert _respects_retry_after(hubspot_fake.log) >= 1


def test_server_errors_and_dropped_connections_are_recovered(run, hubspot_fake, mailerlite_fake):
    seed_contacts(hubspot_fake, 600)
    hubspot_fake.faults.script.extend(["500", "drop", None, "502", "html", None, "truncated"])
    mailerlite_fake.faults.script.extend(["503", "drop", None, "500", "html", None, None, "drop"])
    mailerlite_fake.item_faults.extend([None, 503, None, 500])
    result = run()
    assert_clean(result)
    assert result.code == 0 and result.summary["created"] == 600
    assert len(mailerlite_fake.subscribers) == 600


def test_a_hung_server_times_out_and_is_retried(run, hubspot_fake, mailerlite_fake, monkeypatch):
    monkeypatch.setenv("SYNC_HTTP_TIMEOUT", "0.3")
    seed_contacts(hubspot_fake, 120)
    hubspot_fake.faults.slow_seconds = 0.8
    mailerlite_fake.faults.slow_seconds = 0.8
    hubspot_fake.faults.script.append("slow")
    mailerlite_fake.faults.script.append("slow")
    result = run()
    assert_clean(result)
    # Every contact written once. On a busy machine an ordinary batch can also outlast the 0.3 s
    # timeout after MailerLite took it: its retry is answered as updates (this failed under load).
    assert result.code == 0 and result.summary["created"] + result.summary["updated"] == 120
    assert len(mailerlite_fake.subscribers) == 120


def test_a_batch_with_mixed_item_outcomes(run, hubspot_fake, mailerlite_fake):
    seed_contacts(hubspot_fake, 48)
    mailerlite_fake.add_subscriber("person3@example.com", status="unsubscribed")
    mailerlite_fake.refuse_inactive_upserts = True
    mailerlite_fake.undeliverable_domains.add("blocked.example")
    hubspot_fake.add_contact({"email": "x@blocked.example"}, modified_ms=1)
    hubspot_fake.add_contact({"email": "y@blocked.example"}, modified_ms=1)
    mailerlite_fake.item_faults.extend([None] * 10 + [503])  # the 11th item fails once, then gets in
    result = run()
    s = result.summary
    assert (s["created"], s["not_reactivated"], s["rejected"], s["failed"]) == (47, 1, 2, 0)
    assert result.code == 1
    assert len(mailerlite_fake.requests_to("POST", "/api/batch")) >= 1


def test_an_item_that_keeps_failing_is_isolated(run, hubspot_fake, mailerlite_fake):
    seed_contacts(hubspot_fake, 60)
    # Fails in two batches, then as a single upsert through all six tries of the retry layer.
    mailerlite_fake.failing_emails["person0@example.com"] = 8
    result = run()
    s = result.summary
    assert (s["created"], s["failed"]) == (59, 1)
    assert result.code == 1
    assert mailerlite_fake.subscriber("person0@example.com") is None
    assert mailerlite_fake.failing_emails["person0@example.com"] == 0
    # The next run retries it although HubSpot did not change it.
    again = run()
    assert (again.summary["mode"], again.summary["created"], again.summary["failed"], again.code) == \
        ("incremental", 1, 0, 0)
    assert mailerlite_fake.subscriber("person0@example.com") is not None


def test_bad_hubspot_token(run, hubspot_fake, mailerlite_fake, monkeypatch):
    seed_contacts(hubspot_fake, 5)
    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", "wrong-token-123")
    result = run()
    assert_clean(result)
    assert result.code == 2
    assert "HubSpot rejected the access token" in result.err
    assert len([line for line in result.err.splitlines() if line.startswith("ERROR")]) == 1
    assert "wrong-token-123" not in result.err + result.out
    assert mailerlite_fake.log == []


def test_missing_hubspot_scope_is_named(run, hubspot_fake, mailerlite_fake):
    hubspot_fake.tokens["hs-test-token"] = set()
    result = run()
    assert result.code == 2 and "missing scope crm.objects.contacts.read" in result.err


def test_a_token_without_the_schema_scope_still_syncs(run, hubspot_fake, mailerlite_fake):
    hubspot_fake.tokens["hs-test-token"] = {"crm.objects.contacts.read"}
    seed_contacts(hubspot_fake, 3)
    result = run()
    assert result.code == 0 and result.summary["created"] == 3
    assert "lacks the scope crm.schemas.contacts.read: contacts still sync" in " ".join(messages(result.err))


def test_bad_mailerlite_token(run, hubspot_fake, mailerlite_fake, monkeypatch):
    seed_contacts(hubspot_fake, 5)
    monkeypatch.setenv("MAILERLITE_API_KEY", "wrong-ml-key-456")
    result = run()
    assert_clean(result)
    assert result.code == 2 and "MailerLite rejected the API key" in result.err
    assert "wrong-ml-key-456" not in result.err + result.out
    assert mailerlite_fake.subscribers == {}


@pytest.mark.parametrize("missing", ["HUBSPOT_ACCESS_TOKEN", "MAILERLITE_API_KEY"])
def test_missing_variables(run, hubspot_fake, mailerlite_fake, monkeypatch, missing):
    monkeypatch.delenv(missing)
    result = run()
    assert_clean(result)
    assert result.code == 2
    assert missing in result.err and ".env.example" in result.err
    assert hubspot_fake.log == [] and mailerlite_fake.log == []


def test_hubspot_api_key_alias(run, hubspot_fake, mailerlite_fake, monkeypatch):
    monkeypatch.delenv("HUBSPOT_ACCESS_TOKEN")
    monkeypatch.setenv("HUBSPOT_API_KEY", "hs-test-token")
    seed_contacts(hubspot_fake, 3)
    assert run().summary["created"] == 3


def test_dry_run_writes_nothing(run, hubspot_fake, mailerlite_fake):
    seed_contacts(hubspot_fake, 130)
    hubspot_fake.add_contact({"email": "bad-address"}, modified_ms=1)
    result = run("--dry-run")
    s = result.summary
    assert s["dry_run"] is True and s["would_send"] == 130 and s["rejected"] == 1 and s["created"] == 0
    assert {r.method for r in mailerlite_fake.log} == {"GET"}, "the key check and MailerLite's listing, no write"
    assert ("GET", "/api/fields") in {(r.method, r.path) for r in mailerlite_fake.log}
    assert run().summary["created"] == 130  # and the real run after it still sends everything


def test_hubspot_daily_limit_stops_cleanly_and_keeps_progress(run, hubspot_fake, mailerlite_fake):
    seed_contacts(hubspot_fake, 500)
    hubspot_fake.daily_limit = 4  # at most three pages of contacts and the property definitions
    result = run()
    assert_clean(result)
    assert result.code == 3 and "daily API limit" in result.err
    # Where the limit stops the run depends on timing (a retried request costs one more call):
    # check what must hold wherever it stops, not an exact count.
    assert result.summary is not None
    first = result.summary["created"]
    assert 0 <= first <= 300 and len(mailerlite_fake.subscribers) == first  # reported = done
    hubspot_fake.daily_limit = 1_000_000
    again = run()
    assert again.code == 0
    assert again.summary["created"] == 500 - first  # progress kept: nothing created twice
    assert len(mailerlite_fake.subscribers) == 500


def test_both_budgets_are_used_when_a_batch_costs_one_request(run, hubspot_fake, mailerlite_fake):
    mailerlite_fake.time_scale = 0.05  # a 3-second minute: the run stays in its first windows
    seed_contacts(hubspot_fake, 600)
    result = run()
    assert result.code == 0 and result.summary["created"] == 600
    log = mailerlite_fake.log
    batches = [r for r in log if r.path == "/api/batch" and r.status == 200]
    singles = [r for r in log if r.path == "/api/subscribers" and r.method == "POST" and r.status in (200, 201)]
    refused = [i for i, r in enumerate(log) if r.path == "/api/batch" and r.status == 429]
    assert len(batches) >= 5 and singles and refused
    # Once the import budget is spent, single upserts carry on until it reopens.
    assert log[refused[0] + 1].path == "/api/subscribers" and log[refused[0] + 1].status in (200, 201)
    assert len(refused) <= len(batches) // 5 + 1  # found out once per window, not hammered


def test_when_a_batch_costs_its_items_the_budget_is_not_wasted(run, hubspot_fake, mailerlite_fake):
    mailerlite_fake.batch_counts_as_items = True
    seed_contacts(hubspot_fake, 400)
    result = run()
    assert result.code == 0 and result.summary["created"] == 400
    refused = [r for r in mailerlite_fake.requests_to("POST", "/api/batch") if r.status == 429]
    # Once the first batch showed its cost in X-RateLimit-Remaining, no batch is sent that the
    # remaining budget cannot carry: the rest of each window goes to single upserts.
    assert refused == []
    assert mailerlite_fake.requests_to("POST", "/api/subscribers")
