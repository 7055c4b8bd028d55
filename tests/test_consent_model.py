"""Issue 28: a model-based test of consent. Random sequences of what people and servers do, the real
program (main.py in-process) run between them against the fake APIs, and after every run the
invariants of tests/consent_model.py checked on the fakes' stored data against a model of the truth.

The default suite runs a bounded, derandomized number of examples (CI_EXAMPLES, about half a minute on
two cores, unshrunk); `python -m pytest -m slow tests/test_consent_model.py` runs SLOW_EXAMPLES for each
seed of SLOW_SEEDS. Each failure it found is also a plain test in tests/test_consent_model_regressions.py.
"""

from __future__ import annotations

import os
from typing import Any, Iterator, Optional

import pytest
from hypothesis import HealthCheck, Phase, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, get_state_machine_test, initialize, precondition, rule

from tests.consent_model import (
    ADDRESSES,
    BAD_NUMBER,
    SCOPE_LIST,
    STAGES,
    WEBINAR_LIST,
    Servers,
    World,
    servers,
)

CI_EXAMPLES = 40
CI_STEPS = 25
# -m slow: each seed's examples, and their steps (more examples: CONSENT_MODEL_EXAMPLES=5000, say)
SLOW_EXAMPLES = int(os.environ.get("CONSENT_MODEL_EXAMPLES", "400"))
SLOW_STEPS = int(os.environ.get("CONSENT_MODEL_STEPS", "40"))
SLOW_SEEDS = tuple(int(s) for s in os.environ.get("CONSENT_MODEL_SEEDS", "1,2,3,4,5").split(","))
ON_LEAVE = ("remove_from_groups", "unsubscribe", "leave")
NAMES = ("Ann", "Bo")
FAULTS = ("hubspot 5xx", "mailerlite 5xx", "consent 403 naming the scope", "consent 403", "short pages", "SIGTERM")
picks = st.integers(min_value=0, max_value=7)


class ConsentModel(RuleBasedStateMachine):
    """People edit HubSpot and MailerLite, servers fail, the sync runs; the invariants hold after each run."""

    servers: Servers
    capsys: Any

    def __init__(self) -> None:
        super().__init__()
        self.world: Optional[World] = None

    @initialize(scoped=st.booleans(), on_leave=st.sampled_from(ON_LEAVE))
    def configure(self, scoped: bool, on_leave: str) -> None:
        self.world = World(self.servers, self.capsys, scoped, on_leave)

    def teardown(self) -> None:
        if self.world is not None:
            self.world.close()

    @property
    def w(self) -> World:
        assert self.world is not None
        return self.world

    def _live(self, pick: int) -> str:
        ids = sorted(self.w.live(), key=int)
        return ids[pick % len(ids)]

    def has_live(self) -> bool:
        return self.world is not None and bool(self.world.live())

    # -- people in HubSpot ----------------------------------------------------------------------
    @rule(address=st.sampled_from(ADDRESSES), name=st.sampled_from(NAMES), stage=st.sampled_from(STAGES),
          in_list=st.booleans(), webinar=st.booleans(), optout=st.booleans(), bad=st.booleans())
    def create_contact(self, address: str, name: str, stage: str, in_list: bool, webinar: bool, optout: bool,
                       bad: bool) -> None:
        props = {"email": address, "firstname": name, "lastname": "Model", "lifecyclestage": stage,
                 "numemployees": BAD_NUMBER if bad else "7"}
        if optout:  # HubSpot keeps an opt-out given on a new record; without one the record shows the address's
            props["hs_email_optout"] = "true"
        cid = self.w.act(lambda: self.w.hs.add_contact(props))
        if optout:
            self.w.note_optout(address)
            self._every_record_shows(address)
        for wanted, list_id in ((in_list, SCOPE_LIST), (webinar, WEBINAR_LIST)):
            if wanted:
                self.w.hs.lists[list_id].append(int(cid))

    @precondition(has_live)
    @rule(pick=picks, name=st.sampled_from(NAMES), optout=st.booleans(), bad=st.none() | st.booleans())
    def edit_contact(self, pick: int, name: str, optout: bool, bad: Optional[bool]) -> None:
        """One edit: a name, maybe an opt-out, maybe data MailerLite cannot take (together, as one save)."""
        cid = self._live(pick)
        props = {"firstname": name}
        if optout:
            props["hs_email_optout"] = "true"
        if bad is not None:
            props["numemployees"] = BAD_NUMBER if bad else "7"
        self.w.act(lambda: self.w.hs.update_contact(cid, props))
        if optout:
            email = self.w.hs.contacts[int(cid)]["properties"].get("email")
            self.w.note_optout(email)
            self._every_record_shows(email)

    def _every_record_shows(self, email: Optional[str]) -> None:
        """An opt-out given on one record is the address's (HubSpot keeps it by address), so every record
        holding the address shows it, as the fake's docstring says; the fake's add and update set only the
        address's status and the record edited, so the other records are brought in line here."""
        if email:
            self.w.hs.set_address_consent(email, unsubscribed_all=True)

    @rule(address=st.sampled_from(ADDRESSES), opt_out=st.booleans())
    def address_consent(self, address: str, opt_out: bool) -> None:
        """The person clicks unsubscribe in a HubSpot email (Communication Preferences, by address), or
        subscribes again in HubSpot. Unsubscribing an address HubSpot already holds unsubscribed changes
        nothing there (HubSpot sends it no email to click in, and its status and time stay): no new opt-out,
        so a MailerLite form sign-up made since stays the person's latest act."""
        already = self.w.opted_out(address)
        self.w.act(lambda: self.w.hs.set_address_consent(address, unsubscribed_all=opt_out))
        if opt_out and not already:
            self.w.note_optout(address)

    @precondition(has_live)
    @rule(pick=picks)
    def delete_contact(self, pick: int) -> None:
        cid = self._live(pick)
        self.w.act(lambda: self.w.hs.archive_contact(cid))

    @precondition(lambda self: self.world is not None and bool(self._restorable()))
    @rule(pick=picks)
    def restore_contact(self, pick: int) -> None:
        ids = self._restorable()
        cid = ids[pick % len(ids)]
        self.w.act(lambda: self.w.hs.restore_contact(cid))

    def _restorable(self) -> list:
        merged = {i for p in self.w.live().values() for i in str(p.get("hs_merged_object_ids") or "").split(";")}
        merged |= {i for rec in self.w.hs.contacts.values()
                   for i in str(rec["properties"].get("hs_merged_object_ids") or "").split(";")}
        return [cid for cid in self.w.archived() if cid not in merged]

    @precondition(lambda self: self.world is not None and len(self.world.live()) >= 2)
    @rule(primary=picks, secondary=picks, new_id=st.booleans())
    def merge(self, primary: int, secondary: int, new_id: bool) -> None:
        ids = sorted(self.w.live(), key=int)
        a = ids[primary % len(ids)]
        b = ids[(primary + 1 + secondary % (len(ids) - 1)) % len(ids)]
        self.w.act(lambda: self.w.hs.merge_contacts(a, b, new_id=new_id))

    @precondition(has_live)
    @rule(pick=picks, address=st.sampled_from(ADDRESSES))
    def change_email(self, pick: int, address: str) -> None:
        cid = self._live(pick)
        self.w.act(lambda: self.w.hs.update_contact(cid, {"email": address}))

    @precondition(has_live)
    @rule(pick=picks, change=st.sampled_from(("scope list", "webinar list") + STAGES))
    def scope_change(self, pick: int, change: str) -> None:
        """Leave or (re-)enter a list (the scope's, or the one mapped to a group), or [scope.where]."""
        cid = self._live(pick)
        if change in STAGES:
            self.w.act(lambda: self.w.hs.update_contact(cid, {"lifecyclestage": change}))
            return
        members = self.w.hs.lists[WEBINAR_LIST if change == "webinar list" else SCOPE_LIST]
        self.w.act(lambda: members.remove(int(cid)) if int(cid) in members else members.append(int(cid)))

    # -- people (and MailerLite) in MailerLite ----------------------------------------------------
    @rule(address=st.sampled_from(ADDRESSES), what=st.sampled_from(("unsubscribed", "bounced", "deleted")))
    def in_mailerlite(self, address: str, what: str) -> None:
        """Unsubscribed through a MailerLite link, bounced, or deleted in MailerLite (a list clean-up)."""
        if self.w.ml.subscriber(address) is None:
            return
        if what == "deleted":
            self.w.act(lambda: self.w.ml.delete_subscriber(address))
            self.w.truth.changed_in_mailerlite.add(address)
        else:
            self.w.act(lambda: self.w.ml.set_status_in_app(address, what))

    @rule(address=st.sampled_from(ADDRESSES), name=st.sampled_from(("Form", "Ann")))
    def mailerlite_form(self, address: str, name: str) -> None:
        """The person signs up (again) through a MailerLite form, with what they typed there."""
        self.w.act(lambda: self.w.ml.resubscribe_by_form(address, {"name": name}))
        self.w.note_form(address)

    # -- servers (for the next run only) -----------------------------------------------------------
    @rule(fault=st.sampled_from(FAULTS), at=st.integers(0, 30))
    def server_fault(self, fault: str, at: int) -> None:
        """A fault in the coming run: `at` places it among the run's requests."""
        if fault.endswith("5xx"):
            fake = self.w.hs if fault.startswith("hubspot") else self.w.ml
            fake.faults.script.extend([None] * (at % 12) + ["503"] * (1 + at % 4))
        elif fault.startswith("consent 403"):
            self.w.hs.consent_refusals.append("scope" if "scope" in fault else "plain")
        elif fault == "short pages":  # the lists' memberships one per page, the listing ending after the first
            self.w.hs.membership_page_max = 1
            self.w.hs.short_membership_reads.update({SCOPE_LIST: 3, WEBINAR_LIST: 3})
        else:  # SIGTERM
            self.w.kill_at = 1 + at
        self.w.faults.append(fault)

    # -- the sync -----------------------------------------------------------------------------------
    def _run(self, kind: str) -> None:
        before, held, due = self.w.before_run()
        outcome = self.w.run(kind)
        problems = self.w.check(outcome, before, held, due)
        self.w.after_run(before)
        context = (f" (run {kind}, exit {outcome.code}, faults {'none' if outcome.clean else 'injected'}); "
                   f"its log:\n{outcome.err[-3000:]}")
        # One assert per invariant, each on its own line: hypothesis tells failures apart by where they are
        # raised, so a run of the test reports (and shrinks) a failure of each invariant separately.
        assert not [p for p in problems if p.startswith("I1") and "live in-scope" in p], f"{problems}{context}"
        assert not [p for p in problems if p.startswith("I1")], f"{problems}{context}"
        assert not [p for p in problems if p.startswith("I2")], f"{problems}{context}"
        assert not [p for p in problems if p.startswith("I3") and "unsubscribed" in p], f"{problems}{context}"
        assert not [p for p in problems if p.startswith("I3")], f"{problems}{context}"
        assert not [p for p in problems if p.startswith("I4")], f"{problems}{context}"
        assert not problems, f"{problems}{context}"

    @rule()
    def run_hourly(self) -> None:
        self._run("hourly")

    @rule()
    def run_full(self) -> None:
        self._run("full")

    @rule()
    def run_sweep_due(self) -> None:
        """A day later: the consent sweep and the archived check are due."""
        self._run("sweep")


def profile(max_examples: int, steps: int, derandomize: bool, shrink: bool) -> settings:
    """No database (CI is reproducible); in CI no shrinking either: each step runs the program, so shrinking
    a failure takes minutes (the -m slow run shrinks, and tests/consent_model_minimize.py goes further)."""
    phases = [Phase.explicit, Phase.reuse, Phase.generate] + ([Phase.shrink] if shrink else [])
    return settings(max_examples=max_examples, stateful_step_count=steps, deadline=None, database=None,
                    derandomize=derandomize, phases=phases, suppress_health_check=list(HealthCheck),
                    print_blob=False)


@pytest.fixture(scope="module")
def both_servers() -> Iterator[Servers]:
    with servers() as both:
        yield both


def explore(both: Servers, capsys: Any, options: settings, with_seed: Optional[int] = None) -> None:
    ConsentModel.servers, ConsentModel.capsys = both, capsys
    test = get_state_machine_test(ConsentModel, settings=options)
    if with_seed is not None:
        test = seed(with_seed)(test)
    test()


def test_consent_holds_whatever_people_and_servers_do(both_servers, capsys):
    explore(both_servers, capsys, profile(CI_EXAMPLES, CI_STEPS, derandomize=True, shrink=False))


@pytest.mark.slow
@pytest.mark.timeout(0)  # thousands of sequences take longer than the suite's per-test limit
@pytest.mark.parametrize("with_seed", SLOW_SEEDS)
def test_consent_holds_over_thousands_of_sequences(both_servers, capsys, with_seed):
    explore(both_servers, capsys, profile(SLOW_EXAMPLES, SLOW_STEPS, derandomize=False, shrink=True), with_seed)
