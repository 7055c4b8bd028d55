"""Files holding email addresses are owner-only (issue 15 item 5)."""

from __future__ import annotations

import os
import stat

import pytest

from tests.conftest import seed_contacts


@pytest.fixture
def usual_umask():
    old = os.umask(0o022)  # what most systems give cron jobs: new files 0644
    yield
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_state_log_and_rejected_csv_are_created_owner_only(run, hubspot_fake, mailerlite_fake, tmp_path,
                                                           usual_umask):
    seed_contacts(hubspot_fake, 3)
    hubspot_fake.add_contact({"email": "broken"}, modified_ms=1)
    log_file, csv_file = tmp_path / "logs" / "sync.log", tmp_path / "rejected.csv"
    assert run("--log-file", str(log_file)).code == 1
    assert run("--rejected", "--output", str(csv_file)).code == 0
    private = [run.state_db, log_file, csv_file]
    private += [p for p in run.state_db.parent.iterdir() if p.name.endswith(("-wal", "-shm"))]
    for path in private:
        assert mode(path) == 0o600, f"{path.name} is {oct(mode(path))}"
    assert "other users can read" not in run("--log-file", str(log_file)).err  # nothing to warn about


def test_an_existing_file_others_can_read_is_warned_about_once(run, hubspot_fake, mailerlite_fake, tmp_path,
                                                               usual_umask):
    seed_contacts(hubspot_fake, 2)
    log_file = tmp_path / "sync.log"
    log_file.write_text("")
    run.state_db.parent.mkdir(parents=True)
    run.state_db.write_bytes(b"")
    for path in (log_file, run.state_db):
        path.chmod(0o644)
    result = run("--log-file", str(log_file))
    assert result.code == 0, result.err
    for path in (log_file, run.state_db):
        assert result.err.count(f"{path} holds email addresses and other users can read it") == 1, result.err
    assert mode(log_file) == 0o644  # warned, not changed behind the owner's back


def test_a_401_after_writes_is_exit_2_and_what_was_written_is_kept(run, hubspot_fake, mailerlite_fake):
    """Issue 15 item 9: the README says what is kept in this case, not "nothing was written"."""
    seed_contacts(hubspot_fake, 120)
    batches = []

    def revoked_after_first_batch(request):
        if request.path.endswith("/batch"):
            batches.append(1)
            if len(batches) > 1:
                return mailerlite_fake.json_response({"message": "Unauthenticated."}, 401)
        return None
    mailerlite_fake.faults.rate, mailerlite_fake.faults.kinds = 1.0, (revoked_after_first_batch,)
    first = run()
    assert first.code == 2 and "MAILERLITE_API_KEY" in first.err, first.err
    written = len(mailerlite_fake.subscribers)
    assert written > 0
    mailerlite_fake.faults.rate = 0.0
    second = run()
    assert second.code == 0, second.err
    assert second.summary["created"] == 120 - written  # the first run's writes were recorded, not redone
