"""SIGKILL the sync at random moments; a final run must leave MailerLite exactly right."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import seed_contacts
from tests.test_cli_subprocess import MAIN, fake_env

CONTACTS = 1500
BATCH = 50


def start(env, cwd):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("HUBSPOT_", "MAILERLITE_", "SYNC_"))}
    full_env.update(env)
    return subprocess.Popen([sys.executable, str(MAIN), "--quiet"], env=full_env, cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def kill_loop(hs, ml, tmp_path, kills: int, seed: int, minute_seconds: float) -> None:
    rng = random.Random(seed)
    ml.time_scale = minute_seconds / 60  # slow enough that kills land mid-run
    seed_contacts(hs, CONTACTS)
    for i in range(CONTACTS // 10):  # some opted out, some unsubscribed already
        hs.update_contact(str(1001 + i * 10), {"hs_email_optout": "true"})
    for i in range(0, CONTACTS, 97):
        ml.add_subscriber(f"person{i}@example.com", status="unsubscribed")
    env = fake_env(hs, ml, tmp_path)
    killed = 0
    for _ in range(kills):
        proc = start(env, tmp_path)
        time.sleep(rng.uniform(0.3, 2.5))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.wait(timeout=30)
        # Between kills, HubSpot keeps changing.
        hs.update_contact(str(1001 + rng.randrange(CONTACTS)), {"city": f"Moved{rng.randrange(1000)}"})
    final = start(env, tmp_path)
    out, err = final.communicate(timeout=300)
    assert final.returncode == 0, err.decode()
    assert b"Traceback" not in err

    # Every contact exactly once, with the fields HubSpot has now, and nobody reactivated.
    assert len(ml.subscribers) == CONTACTS
    assert ml.reactivation_attempts == []
    for record in hs.contacts.values():
        props = record["properties"]
        sub = ml.subscriber(props["email"])
        assert sub is not None
        assert sub["fields"]["name"] == props["firstname"] and sub["fields"]["city"] == props["city"]
        if props["hs_email_optout"] == "true":
            assert sub["status"] == "unsubscribed"
    for i in range(0, CONTACTS, 97):
        assert ml.subscriber(f"person{i}@example.com")["status"] == "unsubscribed"
    # Bounded work: each kill can cost at most the request in flight, never a full re-send.
    changes = kills
    assert ml.upsert_count <= CONTACTS + changes + killed * BATCH, (ml.upsert_count, killed)
    print(f"killed {killed} of {kills} runs; {ml.upsert_count} upserts for {CONTACTS} contacts")
    assert killed >= kills // 3, "the kills must land mid-run to prove anything"


def test_kill_loop_fast(hubspot_fake, mailerlite_fake, tmp_path):
    kill_loop(hubspot_fake, mailerlite_fake, tmp_path, kills=6, seed=7, minute_seconds=3)


@pytest.mark.slow
def test_kill_loop_fifty_runs(hubspot_fake, mailerlite_fake, tmp_path):
    kill_loop(hubspot_fake, mailerlite_fake, tmp_path, kills=50, seed=2026, minute_seconds=15)
