"""The incremental bookmark only moves forward."""

from __future__ import annotations

from tests.conftest import seed_contacts
from tests.test_consent import mapping_file


def test_contacts_read_for_a_list_change_never_move_the_bookmark_back(run, hubspot_fake, mailerlite_fake):
    """Found while attacking: contacts read by id (a list joined or left, a failed one retried) carry
    their own, older lastmodifieddate; an incremental run that read only those set the bookmark back
    to it, so the next hourly run read again every contact modified since (the whole database, for a
    contact last edited years ago)."""
    ids = seed_contacts(hubspot_fake, 10, age_ms=400 * 24 * 3_600_000)  # last edited over a year ago
    hubspot_fake.lists["55"] = [int(i) for i in ids]
    path = mapping_file(run, '[scope]\nlists = ["55"]\n')
    assert run("--mapping", path).code == 0
    hubspot_fake.lists["55"] = [int(i) for i in ids[1:]]  # a membership change: the contact itself is old
    left = run("--mapping", path)
    assert left.code == 0 and left.summary["left_scope"] == 1, left.err
    idle = run("--mapping", path)
    assert idle.code == 0 and idle.summary["read"] == 0, idle.err
