"""Several clients beside one install: each settings file keeps its own state."""

from __future__ import annotations

from sync import cli
from tests.common import client_env_file
from tests.conftest import FAST, seed_contacts
from tests.test_setup_safety import client_b, project_of_env_files  # noqa: F401 (client_b: a fixture)


def test_a_second_client_added_beside_a_working_install_starts_its_own_state(run, tmp_path, monkeypatch,
                                                                              hubspot_fake, mailerlite_fake,
                                                                              client_b):  # noqa: F811
    # Client A has run for months from .env beside main.py (its state: sync_state.db there). The admin
    # adds client B as the README says: clientB.env and a cron line with --env-file. B's first run
    # stopped (exit 2) because the shared state exists and "might be B's", though every run recorded
    # in it came from .env: a new user's first try of the documented setup failed.
    hs_b, ml_b = client_b
    project = project_of_env_files(tmp_path, monkeypatch)
    seed_contacts(hs_b, 6, start=100)
    seed_contacts(hubspot_fake, 4)
    client_env_file(project, hubspot_fake, mailerlite_fake, name=".env")
    assert cli.main(["--quiet"], FAST, project_dir=project) == 0
    assert (project / "sync_state.db").exists()

    env_b = client_env_file(tmp_path / "clients", hs_b, ml_b)
    assert cli.main(["--quiet", "--env-file", str(env_b)], FAST, project_dir=project) == 0, run.capsys.readouterr().err
    assert len(ml_b.subscribers) == 6 and len(mailerlite_fake.subscribers) == 4
    assert (tmp_path / "clients" / "clientB.state.db").exists()
    assert cli.main(["--quiet"], FAST, project_dir=project) == 0  # A goes on with its own state, untouched by B
    assert len(mailerlite_fake.subscribers) == 4

    # A shared state whose runs came from this very file (an older version ran it with the shared state)
    # is still this client's: the run stops and says how to move it, as before (a state with no record of
    # its settings file too: test_setup_safety).
    shared = project / "sync_state.db"
    shared.unlink()
    env_c = client_env_file(tmp_path / "clients", hubspot_fake, mailerlite_fake, name="clientC.env")
    settings_c = env_c.read_text()
    env_c.write_text(settings_c + f"SYNC_STATE_DB={shared}\n")
    assert cli.main(["--quiet", "--env-file", str(env_c)], FAST, project_dir=project) == 0
    env_c.write_text(settings_c)
    run.capsys.readouterr()
    assert cli.main(["--quiet", "--env-file", str(env_c)], FAST, project_dir=project) == 2
    assert f"mv {shared} {tmp_path / 'clients' / 'clientC.state.db'}" in run.capsys.readouterr().err
