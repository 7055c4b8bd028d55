"""Files an operator writes by hand, as Windows editors save them, and scripts reading --json: each test
drives main.py against the fakes."""

from __future__ import annotations

import json

import pytest

from tests.conftest import HS_TOKEN, ML_TOKEN, seed_contacts
from tests.test_cli_subprocess import run_main

MAPPING = 'create_missing_fields = true\n[fields]\njobtitle = "job_title"\n'


# -- a mapping file saved by Notepad --------------------------------------------------------------------------

def test_a_mapping_saved_with_a_byte_order_mark_is_read(run, hubspot_fake, mailerlite_fake, tmp_path):
    # Notepad (before Windows 10 1903, and "UTF-8 with BOM" since) starts the file with EF BB BF; the
    # .env file was read past it, the mapping file was "not valid TOML (at line 1, column 1)".
    seed_contacts(hubspot_fake, 3, jobtitle="Engineer")
    mapping = tmp_path / "mapping.toml"
    mapping.write_bytes(b"\xef\xbb\xbf" + MAPPING.replace("\n", "\r\n").encode())
    done = run("--mapping", str(mapping))
    assert done.code == 0, done.err
    assert mailerlite_fake.subscriber("person0@example.com")["fields"]["job_title"] == "Engineer"


@pytest.mark.parametrize("encoding, named", [("cp1252", "line 3"), ("utf-16", "UTF-16")])
def test_a_mapping_not_saved_as_utf8_says_so_in_one_line(run, hubspot_fake, mailerlite_fake, tmp_path,
                                                          encoding, named):
    # Notepad's "ANSI" (an accented group name) or "Unicode" (UTF-16): the run said "cannot read mapping
    # file (UnicodeDecodeError)", which troubleshooting.md explains as a permissions problem.
    seed_contacts(hubspot_fake, 3)
    mapping = tmp_path / "mapping.toml"
    mapping.write_bytes('create_missing_fields = true\r\n[groups]\r\nall = ["Clients été"]\r\n'.encode(encoding))
    done = run("--mapping", str(mapping))
    assert done.code == 2
    lines = done.err.splitlines()
    assert len(lines) == 1, done.err
    assert "is not UTF-8 text" in lines[0] and named in lines[0] and "save it as UTF-8" in lines[0], lines[0]
    assert str(mapping) in lines[0] and "UnicodeDecodeError" not in lines[0]
    assert json.loads(done.out)["exit_code"] == 2
    assert [r for r in mailerlite_fake.log if r.method != "GET"] == []


def test_a_settings_file_not_saved_as_utf8_names_the_line(hubspot_fake, mailerlite_fake, tmp_path):
    env_file = tmp_path / "client.env"
    env_file.write_bytes(f"# Café Müller's account\nHUBSPOT_ACCESS_TOKEN={HS_TOKEN}\nMAILERLITE_API_KEY={ML_TOKEN}\n"
                         .encode("cp1252"))
    env_file.chmod(0o600)
    done = run_main(["--env-file", str(env_file)], {}, tmp_path)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr
    assert f"{env_file} is not UTF-8 text (line 1)" in done.stderr and "save it as UTF-8" in done.stderr
    assert "UnicodeDecodeError" not in done.stderr
