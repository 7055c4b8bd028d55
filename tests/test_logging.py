"""--verbose shows the sync's own lines, not the libraries' debug output."""

from __future__ import annotations

from tests.conftest import seed_contacts
from tests.test_cli_subprocess import fake_env, run_main


def test_verbose_shows_the_syncs_own_lines_not_library_debug(hubspot_fake, mailerlite_fake, tmp_path):
    seed_contacts(hubspot_fake, 3)
    done = run_main(["--verbose"], fake_env(hubspot_fake, mailerlite_fake, tmp_path), tmp_path)
    assert done.returncode == 0 and "full sync: read 3" in done.stderr
    assert "acquire" not in done.stderr.lower() and "Starting new HTTP" not in done.stderr  # filelock, urllib3
