"""A mapping edited between runs is checked by the next run, idle ones too."""

from __future__ import annotations

from tests.conftest import seed_contacts
from tests.test_cli_subprocess import fake_env, run_main
from tests.test_setup_safety import client_b, project_of_env_files  # noqa: F401 (client_b: a fixture)


def test_a_typo_in_an_edited_mapping_stops_the_next_idle_run(hubspot_fake, mailerlite_fake, tmp_path):
    # The hourly run after an edit is usually idle: it read no contact, so it never met the misspelt
    # property and exited 0 (healthcheck green) until some contact changed, hours or days later.
    seed_contacts(hubspot_fake, 5)
    env = fake_env(hubspot_fake, mailerlite_fake, tmp_path)
    mapping = tmp_path / "mapping.toml"
    mapping.write_text('create_missing_fields = true\n[fields]\njobtitle = "job_title"\n')
    env["SYNC_MAPPING_FILE"] = str(mapping)
    assert run_main([], env, tmp_path).returncode == 0
    assert run_main([], env, tmp_path).returncode == 0

    mapping.write_text('create_missing_fields = true\n[fields]\njob_titel = "job_title"\n')
    hubspot_fake.log.clear()
    mailerlite_fake.log.clear()
    typo = run_main([], env, tmp_path)
    assert typo.returncode == 2, typo.stderr
    assert "job_titel (did you mean jobtitle?)" in typo.stderr and len(typo.stderr.splitlines()) == 1
    assert [r for r in mailerlite_fake.log if r.method != "GET"] == []

    # Fixed: the first run after the edit checks the names once; the idle runs after it cost what they did.
    mapping.write_text('create_missing_fields = true\n[fields]\njobtitle = "job_title"\n')
    assert run_main([], env, tmp_path).returncode == 0
    hubspot_fake.log.clear()
    mailerlite_fake.log.clear()
    assert run_main([], env, tmp_path).returncode == 0
    assert (len(hubspot_fake.log), len(mailerlite_fake.log)) == (2, 1)
