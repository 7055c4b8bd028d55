"""A damaged state file is named with what to do."""

from __future__ import annotations

import sqlite3

import pytest

from tests.conftest import seed_contacts
from tests.test_operations import ping_server  # noqa: F401 (a fixture)


def state_sql(run, sql: str, *params: object) -> None:
    db = sqlite3.connect(run.state_db)
    try:
        db.execute(sql, params)
        db.commit()
    finally:
        db.close()


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
