"""Consent by email address: HubSpot's Communication Preferences, read per address.

HubSpot keeps an email opt-out with the ADDRESS, not the record: it survives the record's delete,
merge or change of address. So whenever the sync is about to let go of an address it wrote to
MailerLite, and once a day for the addresses it let go of (the consent sweep), it asks HubSpot
about the address itself:
- `statuses/batch/unsubscribe-all/read`: an address UNSUBSCRIBED from all email (portal or
  business-unit wide) is opted out;
- `statuses/batch/read`, only when the mapping's `[consent] optout_properties` names
  per-subscription properties (`hs_email_optout_<subscription id>`): an address UNSUBSCRIBED from
  one of those subscriptions is opted out.
Answers are matched by address, never by position; an address HubSpot does not answer for (no
status, or left out) is not taken as opted out, and an answer naming an address not asked about
is ignored. A token without the scope (a 403 naming it, or the token's scopes read without it) gets
None ("unknown"): the caller falls back to the records' opt-out properties, and the run says once
what it then cannot follow. So does a run in which HubSpot kept failing on a consent read (an outage
of that API) or refused it without naming a scope: it says so, and the sweep is due again next run.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, FrozenSet, Iterable, List, Optional, Sequence, Set

from .. import hubspot_schema as hs
from ..errors import AuthError
from ..hubspot import HubSpotOutage, HubSpotReader, HubSpotRefused
from ..mapping import OPTOUT_PROPERTY, normalise_email
from ..redaction import clip

log = logging.getLogger(__name__)

SUBSCRIPTION_PREFIX = OPTOUT_PROPERTY + "_"
CONSENT_SCOPE_ADVICE = "hubspot-consent-scope"
CONSENT_SCOPE_MESSAGE = (f"the HubSpot token lacks the scope {hs.CONSENT_READ_SCOPE}: opt-outs are read from the "
                         f"contact records only, so an opt-out of an address whose contact was merged away, or of an "
                         f"address the sync no longer tracks (its contact was deleted, changed address or left the "
                         f"sync's scope), cannot be followed; add the scope to the service key or private app")


def subscription_ids(optout_properties: Sequence[str]) -> FrozenSet[str]:
    """The subscription ids behind the mapping's per-subscription opt-out properties."""
    return frozenset(p[len(SUBSCRIPTION_PREFIX):] for p in optout_properties
                     if p.startswith(SUBSCRIPTION_PREFIX) and p[len(SUBSCRIPTION_PREFIX):].isdigit())


def unsubscribed_addresses(results: List[Any], asked: Set[str], key: str,
                           counts: Optional[FrozenSet[str]] = None) -> Set[str]:
    """The asked addresses a batch answer shows UNSUBSCRIBED. `key`: "wideStatuses" or "statuses";
    `counts`: for per-subscription statuses, the subscription ids that count."""
    out: Set[str] = set()
    for result in results:
        if not isinstance(result, dict):
            continue
        address = normalise_email(result.get("subscriberIdString"))
        if address not in asked:
            if address:
                log.warning("HubSpot answered a consent status for an address not asked about; ignored")
            continue
        statuses = result.get(key)
        for status in statuses if isinstance(statuses, list) else []:
            if not isinstance(status, dict) or status.get("status") != "UNSUBSCRIBED":
                continue
            if counts is None or str(status.get("subscriptionId")) in counts:
                out.add(address)
    return out


class AddressConsent:
    """Reads which addresses are opted out in HubSpot, a hundred per request, remembering the
    run's answers (an address is asked once per run)."""

    def __init__(self, hubspot: HubSpotReader, optout_properties: Sequence[str]) -> None:
        self.hubspot = hubspot
        self.subscriptions = subscription_ids(optout_properties)
        self.available: Optional[bool] = None  # False once HubSpot refused the scope
        # HubSpot kept failing on a consent read in this run: unknown for the rest of it, as without the
        # scope, so an outage of that one API never stops everyone else's sync (and opt-outs).
        self.down = False
        self._known: Dict[str, bool] = {}  # address -> opted out, for this run's departures

    def opted_out(self, emails: Iterable[str]) -> Optional[Set[str]]:
        """The opted-out addresses among these (remembered for the run); None when the token cannot
        read consent by address."""
        asked = [e for e in (normalise_email(x) for x in emails) if e]
        wanted = sorted(set(asked) - self._known.keys())
        for start in range(0, len(wanted), hs.CONSENT_BATCH_SIZE):
            batch = wanted[start:start + hs.CONSENT_BATCH_SIZE]
            opted = self.read_batch(batch)
            if opted is None:
                return None
            self._known.update({e: e in opted for e in batch})
        if self.available is False:
            return None
        return {e for e in asked if self._known.get(e)}

    def read_batch(self, batch: List[str]) -> Optional[Set[str]]:
        """One batch (at most CONSENT_BATCH_SIZE addresses, normalised), nothing remembered: the
        sweep streams a million this way. None when the token cannot read consent by address."""
        if self.available is False or self.down:
            return None
        try:
            opted = self._statuses("consent (unsubscribed from all) read", hs.CONSENT_WIDE_READ_PATH, batch,
                                   "wideStatuses", None)
            rest = [e for e in batch if e not in opted]
            if self.subscriptions and rest:
                opted |= self._statuses("consent (subscriptions) read", hs.CONSENT_READ_PATH, rest, "statuses",
                                        self.subscriptions)
        except AuthError as exc:
            if self._lacks_scope(exc):
                log.debug("consent by address unavailable: %s", exc)
                self.available = False
                return None
            # A refusal that names no scope (a permission hiccup, a portal setting) is no evidence the
            # token lacks it: nothing is claimed, and the sweep is due again next run, as after an outage.
            log.warning("HubSpot refused reading consent by address (%s) without naming a missing scope: this run "
                        "reads opt-outs from the contact records only; the consent sweep is due again next run",
                        clip(str(exc), 200))
            self.down = True
            return None
        except HubSpotOutage as exc:
            log.warning("HubSpot kept failing on reading consent by address (%s): this run reads opt-outs from the "
                        "contact records only; the addresses it lets go of are kept for the consent sweep, due "
                        "again next run", exc.reason)
            self.down = True
            return None
        self.available = True
        return opted

    def _lacks_scope(self, refusal: AuthError) -> bool:
        """Only a refusal naming the consent scope, or the token's own scopes read without it, mean the
        token lacks the scope; the token-information read answers None where it cannot say."""
        if hs.CONSENT_READ_SCOPE in str(refusal):
            return True
        granted = self.hubspot.granted_scopes()
        return granted is not None and hs.CONSENT_READ_SCOPE not in granted

    def _statuses(self, what: str, path: str, batch: List[str], key: str,
                  counts: Optional[FrozenSet[str]]) -> Set[str]:
        """One batch read. A batch refused (400) for what may be one address HubSpot will not take
        is halved until that address stands alone; it then counts as unknown (not opted out), so
        one address never blocks the others."""
        try:
            results = self.hubspot.consent_batch(what, path, batch)
        except HubSpotRefused as exc:
            if exc.status != 400:
                raise
            if len(batch) == 1:
                log.warning("HubSpot refused to read the consent of %s (%s); taken as not opted out", batch[0],
                            clip(exc.reason, 200))
                return set()
            half = len(batch) // 2
            return (self._statuses(what, path, batch[:half], key, counts)
                    | self._statuses(what, path, batch[half:], key, counts))
        return unsubscribed_addresses(results, set(batch), key, counts)
