"""Consent by address: one owner (`Consent`, owner.py) that the engine calls at a few named points.

  ledger.py       keep: the consent ledger, one row per address (every piece of evidence about it)
  by_address.py   read: HubSpot's Communication Preferences, per address, matched by address
  archived.py     read: the archived records of contacts a full pass found gone, by id
  evidence.py     evidence: absence from a listing only makes a departure (or group removal) candidate
  rules.py        decide: the rules, as pure functions
  departures.py   decide: one run's opt-outs and departures, by those rules
  actions.py      act: every action stored before it is tried, each with its own back-off
  sweep.py        follow: the addresses the sync let go of (tombstones), read by address when due
"""

from .owner import ARCHIVED_KEY, RECREATED, Consent

__all__ = ["ARCHIVED_KEY", "RECREATED", "Consent"]
