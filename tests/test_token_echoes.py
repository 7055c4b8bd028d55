"""A token a server echoes in a long refusal is redacted before any reason is cut, and never reaches
--rejected or the state."""

from __future__ import annotations

import sqlite3

import pytest

from tests.conftest import seed_contacts
from tests.test_operations import ping_server  # noqa: F401 (a fixture)

LONG_TOKEN = "mlk_" + "7f3a9c" * 12  # 76 characters, longer than what is left of a reason after the cut


def echo_token_in_refusals(fake, prefix: int) -> None:
    """MailerLite refusing one subscriber (as one request or a batch item) with an error that echoes
    the token after `prefix` characters, so that a 500-character cut made before redaction lands
    inside the token."""
    upsert = fake.upsert

    def echoing(body):
        if isinstance(body, dict) and body.get("email") == "echo@example.com":
            return 422, {"message": "The given data was invalid.",
                         "errors": {"email": ["x" * prefix + LONG_TOKEN + " is not valid"]}}
        return upsert(body)
    fake.upsert = echoing


@pytest.mark.parametrize("prefix", [450, 470])
def test_a_token_echoed_in_a_long_refusal_never_reaches_rejected_or_the_state(run, hubspot_fake, mailerlite_fake,
                                                                              monkeypatch, prefix):
    mailerlite_fake.tokens.add(LONG_TOKEN)
    monkeypatch.setenv("MAILERLITE_API_KEY", LONG_TOKEN)
    seed_contacts(hubspot_fake, 2)
    hubspot_fake.add_contact({"email": "echo@example.com"})
    echo_token_in_refusals(mailerlite_fake, prefix)
    result = run()
    assert result.code == 1 and result.summary["rejected"] == 1, result.err
    rejected = run("--rejected")
    assert "echo@example.com" in rejected.out
    stored = sqlite3.connect(run.state_db).execute("SELECT reason FROM problems").fetchall()
    assert len(stored) == 1 and "x" * 100 in stored[0][0]
    for text in (result.out, result.err, rejected.out, stored[0][0]):
        assert LONG_TOKEN[:12] not in text  # not even a piece of it


@pytest.mark.parametrize("cut_inside", [0, 5, 20, 40])
def test_answers_are_redacted_before_they_are_cut(cut_inside):
    from sync import hubspot_answers, mailerlite_answers
    from sync.redaction import register_secrets
    register_secrets([LONG_TOKEN])
    ml_reason = mailerlite_answers.describe_error({"message": "x" * (500 - cut_inside) + LONG_TOKEN})
    ml_fields = mailerlite_answers.describe_error({"errors": {"email": ["x" * (493 - cut_inside) + LONG_TOKEN]}})
    hs_reason = hubspot_answers.classify(400, {"message": "x" * (300 - cut_inside) + LONG_TOKEN}).reason
    for reason in (ml_reason, ml_fields, hs_reason):
        assert "x" * 100 in reason and LONG_TOKEN[:4] not in reason, reason
