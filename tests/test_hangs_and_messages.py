"""Hangs and messages (issue 22 item 9): a server trickling its status line or headers cannot keep a
run alive past SYNC_HTTP_TIMEOUT per request or SYNC_MAX_RUNTIME per run; a damaged state file is
named with what to do; a long token is redacted before any reason is cut."""

from __future__ import annotations

import sqlite3

import pytest

from tests.conftest import seed_contacts


def state_sql(run, sql: str, *params: object) -> None:
    db = sqlite3.connect(run.state_db)
    try:
        db.execute(sql, params)
        db.commit()
    finally:
        db.close()


# -- (b) a damaged state file --------------------------------------------------------------------------

DAMAGE = {
    "garbage bytes": None,
    "bookmark not a number": "UPDATE meta SET value='not a number' WHERE key='bookmark_ms'",
    "schema version not a number": "UPDATE meta SET value='eight' WHERE key='schema_version'",
    "problem attempts not a number": "UPDATE problems SET attempts='many'",
    "a JSON value cut short": "INSERT OR REPLACE INTO meta(key, value) VALUES ('accounts', '{\"hubspot_portal\": ')",
}


@pytest.mark.parametrize("damage", list(DAMAGE), ids=list(DAMAGE))
def test_a_damaged_state_file_is_named_with_what_to_do(run, hubspot_fake, mailerlite_fake, damage):
    seed_contacts(hubspot_fake, 3)
    hubspot_fake.add_contact({"email": "not an address"})  # a problem row to damage
    assert run().code == 1
    if DAMAGE[damage] is None:
        run.state_db.write_bytes(b"\x00garbage\xff" * 1000)
        for extra in ("-wal", "-shm"):
            run.state_db.with_name(run.state_db.name + extra).unlink(missing_ok=True)
    else:
        state_sql(run, DAMAGE[damage])
    hubspot_fake.add_contact({"email": "new@example.com"})  # something for the run to read and record
    result = run()
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert result.code == 2 and len(lines) == 1, result.err
    assert "damaged" in lines[0] and str(run.state_db) in lines[0] and "move it aside and run again" in lines[0]
    assert "unexpected" not in result.err and "Traceback" not in result.err


# -- (c) a long token is redacted before a reason is cut ----------------------------------------------

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
