"""Tokens never reach stdout, stderr, the log file, the state database, exports or exception text."""

from __future__ import annotations

import json

import pytest

from sync.errors import SyncError
from sync.hubspot import HubSpotReader
from sync.mailerlite import MailerLiteClient
from sync.retrying import Transient
from tests.conftest import FAST, seed_contacts

HS_SECRET = "pat-na1-SECRETHUBSPOT-7f3a9c2e-0000-4bad-beef-123456789abc"
ML_SECRET = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.SECRETMAILERLITE.sig"
WRONG_HS = "pat-na1-WRONGHUBSPOT-aaaa"
WRONG_ML = "WRONGMAILERLITE-bbbb"
SECRETS = (HS_SECRET, ML_SECRET, WRONG_HS, WRONG_ML)


def closed_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def secret_run(run, hubspot_fake, mailerlite_fake, monkeypatch, tmp_path):
    hubspot_fake.tokens[HS_SECRET] = set(hubspot_fake.tokens["hs-test-token"])
    mailerlite_fake.tokens.add(ML_SECRET)
    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", HS_SECRET)
    monkeypatch.setenv("MAILERLITE_API_KEY", ML_SECRET)
    run.log_file = tmp_path / "secret.log"
    return run


def everything_written(run) -> bytes:
    blobs = [p.read_bytes() for p in run.state_db.parent.glob("*") if p.is_file()]
    blobs += [p.read_bytes() for p in run.tmp_path.glob("*.log*")]
    blobs += [p.read_bytes() for p in run.tmp_path.glob("*.csv")]
    return b"".join(blobs)


def assert_no_secret(*texts) -> None:
    for text in texts:
        data = text if isinstance(text, bytes) else str(text).encode()
        for secret in SECRETS:
            assert secret.encode() not in data, f"a token leaked: {secret[:12]}..."
            assert secret[8:30].encode() not in data, "part of a token leaked"


def test_every_path_keeps_tokens_out_of_every_output(secret_run, hubspot_fake, mailerlite_fake, monkeypatch,
                                                     tmp_path):
    run = secret_run
    seed_contacts(hubspot_fake, 120)
    hubspot_fake.add_contact({"email": "broken"}, modified_ms=1)
    mailerlite_fake.undeliverable_domains.add("example.org")
    hubspot_fake.add_contact({"email": "x@example.org"}, modified_ms=1)
    log = ["--log-file", str(run.log_file), "--verbose"]
    outputs = []
    hubspot_fake.faults.script.extend(["500", "drop", "html", "truncated", "429"])
    mailerlite_fake.faults.script.extend(["503", "drop", "html", "429-bare"])
    outputs.append(run(*log))                                      # a full sync through faults
    outputs.append(run(*log, "--dry-run", "--full"))
    outputs.append(run(*log, "--check"))
    outputs.append(run("--history"))
    outputs.append(run("--rejected", "--output", str(tmp_path / "rejected.csv")))
    outputs.append(run("--rejected"))
    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", WRONG_HS)          # refused tokens
    outputs.append(run(*log))
    outputs.append(run(*log, "--check"))
    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", HS_SECRET)
    monkeypatch.setenv("MAILERLITE_API_KEY", WRONG_ML)
    hubspot_fake.add_contact({"email": "new@example.com"})
    outputs.append(run(*log))
    monkeypatch.setenv("MAILERLITE_API_KEY", ML_SECRET)
    monkeypatch.setenv("SYNC_HTTP_TIMEOUT", "0.3")                  # timeouts and refused connections
    hubspot_fake.faults.slow_seconds = 0.6
    hubspot_fake.faults.script.extend(["slow"] * 8)
    outputs.append(run(*log, "--full"))
    monkeypatch.setenv("MAILERLITE_BASE_URL", f"http://127.0.0.1:{closed_port()}/api")
    hubspot_fake.add_contact({"email": "newer@example.com"})
    outputs.append(run(*log))
    codes = [o.code for o in outputs]
    assert 0 in codes and 2 in codes and 3 in codes, codes  # the paths really were taken
    for result in outputs:
        assert "Traceback" not in result.err
        assert_no_secret(result.out, result.err)
    assert_no_secret(everything_written(run))
    assert run.log_file.exists() and (tmp_path / "rejected.csv").exists()


def test_exception_text_from_the_clients_holds_no_token(hubspot_fake, mailerlite_fake):
    hubspot_fake.tokens[HS_SECRET] = set(hubspot_fake.tokens["hs-test-token"])
    reader = HubSpotReader(WRONG_HS, f"http://127.0.0.1:{closed_port()}", timeout=(0.2, 0.2), tunables=FAST)
    reader.retry.max_failures = 1
    client = MailerLiteClient(WRONG_ML, f"http://127.0.0.1:{closed_port()}/api", timeout=(0.2, 0.2),
                              tunables=FAST)
    client.retry.max_failures = 1
    errors = []
    for call in (lambda: list(reader.iter_contacts(["email"])), lambda: client.upsert({"email": "a@b.co"}),
                 lambda: list(HubSpotReader(WRONG_HS, hubspot_fake.url, tunables=FAST).iter_contacts(["email"])),
                 lambda: MailerLiteClient(WRONG_ML, mailerlite_fake.base_url,
                                          tunables=FAST).upsert({"email": "a@b.co"})):
        with pytest.raises((Transient, SyncError)) as caught:
            call()
        errors.append(caught.value)
    for exc in errors:
        assert_no_secret(str(exc), repr(exc), repr(exc.args), str(exc.__cause__), str(exc.__context__))


def test_settings_repr_hides_tokens(monkeypatch):
    from sync.config import load_settings
    settings = load_settings(environ={"HUBSPOT_ACCESS_TOKEN": HS_SECRET, "MAILERLITE_API_KEY": ML_SECRET})
    assert_no_secret(repr(settings), str(settings))


# -- servers that echo the Authorization header (issue 15 item 2) ------------------------------------

def _echo_401(request):
    """HubSpot-like 401 for the contact listing, quoting the header back (some proxies do)."""
    if not request.path.startswith("/crm/objects/2026-09/contacts"):
        return None
    from werkzeug.wrappers import Response
    body = {"status": "error", "message": f"Authentication failed for header {request.headers.get('Authorization')}",
            "category": "INVALID_AUTHENTICATION"}
    return Response(json.dumps(body), status=401, content_type="application/json")


def refusals_saying(fake, body_for):
    """A fault: MailerLite's batch answer with every refused item's body made by body_for(request)."""
    def action(request):
        response = fake._dispatch(request)
        if not request.path.endswith("/batch"):
            return response
        data = json.loads(response.get_data())
        for item in data.get("responses", []):
            if item["code"] == 422:
                item["body"] = body_for(request)
        response.set_data(json.dumps(data))
        return response
    return action


def _echo_in_422s(fake):
    """MailerLite's batch answer with every refused item's message quoting the header."""
    return refusals_saying(fake, lambda request: {
        "message": f"token {request.headers.get('Authorization')} rejected this",
        "errors": {"email": [f"raw {ML_SECRET} and Bearer {ML_SECRET}"]}})


def test_tokens_echoed_by_a_server_are_redacted_everywhere(secret_run, hubspot_fake, mailerlite_fake, tmp_path):
    run = secret_run
    seed_contacts(hubspot_fake, 3)
    mailerlite_fake.undeliverable_domains.add("example.org")
    hubspot_fake.add_contact({"email": "refused@example.org"}, modified_ms=1)
    mailerlite_fake.faults.rate, mailerlite_fake.faults.kinds = 1.0, (_echo_in_422s(mailerlite_fake),)
    log = ["--log-file", str(run.log_file)]
    first = run(*log)
    assert first.code == 1 and first.summary["rejected"] == 1, first.err
    csv_path = tmp_path / "rejected.csv"
    outputs = [first, run("--rejected"), run("--rejected", "--output", str(csv_path))]
    assert "MailerLite: email: raw [redacted] and Bearer [redacted]," in outputs[1].out  # the reason, not the token
    hubspot_fake.faults.rate, hubspot_fake.faults.kinds = 1.0, (_echo_401,)
    refused = run(*log, "--full")
    assert refused.code == 2 and "Authentication failed" in refused.err, refused.err
    outputs += [refused, run(*log, "--full", "--verbose"), run("--history")]
    for result in outputs:
        assert_no_secret(result.out, result.err)
        assert "Traceback" not in result.err
    assert_no_secret(everything_written(run), csv_path.read_bytes())


@pytest.mark.parametrize("name,value", [("HUBSPOT_ACCESS_TOKEN", "pat-na1-SECRET\x01tail"),
                                        ("MAILERLITE_API_KEY", "ml-SECRET-tökén"),
                                        ("HUBSPOT_ACCESS_TOKEN", "pat-na1-SECRET\ntail")])
def test_a_token_with_a_control_character_or_non_ascii_text_is_a_config_error(run, monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    for args in ((), ("--check",), ("--verbose",)):
        result = run(*args)
        assert result.code == 2, result.err
        assert name in result.err and "Traceback" not in result.err
        assert "SECRET" not in result.out + result.err
