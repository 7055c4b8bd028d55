"""The rules of consent and departures, as pure functions: who is unsubscribed, who leaves which
groups, who is forgotten.

The rules (the README's "Consent" section says the same to users):
- An opt-out (any of the mapping's opt-out properties true) always reaches MailerLite. When the
  full upsert cannot carry it (its data is refused, locally or by MailerLite, or the upsert
  failed; the contact is a duplicate of another holding the address; it leaves the sync's
  scope), the unsubscribe goes on its own: {"email", "status": "unsubscribed"}, nothing else.
- An opt-out made together with a new address (accepted or refused), no address, or a merge
  into the opted-out record also reaches the address that leaves, unless another live,
  in-scope contact still holds it (that contact's consent is its own).
- Nobody outside the sync's scope is created in MailerLite: an out-of-scope contact that opts
  out is only unsubscribed when its address is synced (by it or another contact).
- A contact leaving the sync gets the on_leave policy; "unsubscribe" is never applied to an
  address another live, in-scope contact still holds (only the managed groups are removed).
- A merge's new record takes over the subscriber of the merged-away record with its address.
- Every action is stored before it is tried and kept until MailerLite takes it; the contact is
  forgotten only then.
- The mass-leave guard: one pass making too many synced contacts leave stops the leaving (a
  dry run forecasts the same).
- The consent ledger (one row per address, state.LedgerRow) is the evidence: what MailerLite says
  about an address is never forgotten (an address it was seen holding as unsubscribed, bounced or
  junk is never created or made active by the sync again, also after its deletion there, until
  MailerLite itself shows it active); whether to send an unsubscribe is decided from what HubSpot
  says about the address now and what MailerLite was last seen to hold, never from a row under a
  contact id. The functions below make each new row from the last one and the new evidence.

`departures.Departures` follows one run by these rules; `actions.ConsentWriter` applies what they
decide. Nothing here reads or writes anything.
"""


from __future__ import annotations

from dataclasses import dataclass, replace
from typing import FrozenSet, List, Optional, Tuple

from ..mailerlite_answers import INACTIVE
from ..mapping import Mapping
from ..state import LedgerRow, PendingAction, Synced

ALLOW_FLAG = "--allow-mass-leave"


@dataclass(frozen=True)
class Leaving:
    """A synced contact that leaves the sync, and why."""

    synced: Synced
    reason: str
    opted_out: bool = False
    # Departures read from absence or scope (unseen in a full pass, archived, out of scope, no
    # email) count toward the mass-leave guard; those seen directly (a new address, a merge) do not.
    guarded: bool = True
    # Whether the contact still holds the synced address (False: its address changed or was emptied).
    # An opt-out then reaches the old address only when no other live contact holds it.
    holds_address: bool = True


def managed_groups(synced: Synced, mapping: Mapping) -> FrozenSet[str]:
    return frozenset(g for g in synced.groups_set if mapping.manages_group(g))


def leave_action(leaving: Leaving, mapping: Mapping, address_held: bool) -> PendingAction:
    """What leaving means in MailerLite. An opt-out of the address unsubscribes whatever on_leave
    says. Any other departure of an address another live, in-scope contact holds takes nothing from
    it (no unsubscribe, no group): the subscriber is that contact's now, with its groups."""
    synced = leaving.synced
    policy = mapping.on_leave
    consent = leaving.opted_out and (leaving.holds_address or not address_held)
    takes = consent or not address_held
    unsubscribe = consent or (policy == "unsubscribe" and takes)
    groups = managed_groups(synced, mapping) if takes and policy in ("remove_from_groups", "unsubscribe") \
        else frozenset()
    return PendingAction(synced.hubspot_id, synced.email, synced.subscriber_id, unsubscribe, groups, True,
                         leaving.reason)


def optout_action(hubspot_id: str, email: str, reason: str) -> PendingAction:
    """An unsubscribe on its own (email and status only), for a contact that stays known."""
    return PendingAction(hubspot_id, email, None, True, frozenset(), False, reason)


def group_removal(hubspot_id: str, email: str, subscriber_id: Optional[str], groups: FrozenSet[str]) -> PendingAction:
    """Groups a synced subscriber leaves because a rule stopped matching."""
    return PendingAction(hubspot_id, email, subscriber_id, False, groups, False, "a group rule stopped matching")


def needs_address_check(leaving: Leaving, mapping: Mapping) -> bool:
    """A departure that takes something from the subscriber (on_leave's groups or unsubscribe, or an
    opt-out of a contact that no longer holds the address) needs to know whether another live
    contact still holds it (leave_action)."""
    if leaving.opted_out:
        return not leaving.holds_address
    return mapping.on_leave in ("remove_from_groups", "unsubscribe")


def merge_plan(new_id: str, email: str, merged: List[Synced]) -> Tuple[Optional[Synced], List[Synced]]:
    """Of the merged-away records: the one with the merged record's address is taken over (no
    leave, no duplicate, no group churn); the others leave as any contact does."""
    taken = next((s for s in merged if email and s.email == email and s.hubspot_id != new_id), None)
    return taken, [s for s in merged if s is not taken and s.hubspot_id != new_id]


def mass_leave_problem(leaving: int, synced: int, mapping: Mapping, allowed: bool) -> Optional[str]:
    """The one line stopping a pass that would make too many synced contacts leave, or None.

    Departures are read from absence (a contact not listed is gone): a truncated listing, a list
    read empty or a scope typed wrong would make everyone leave. More than mass_leave_percent of
    the synced contacts AND more than mass_leave_min of them need a person's confirmation."""
    if allowed or leaving <= mapping.mass_leave_min or leaving * 100 <= mapping.mass_leave_percent * synced:
        return None
    return (f"{leaving} of {synced} synced contacts would leave the sync in this run (more than "
            f"{mapping.mass_leave_percent:g}% and more than {mapping.mass_leave_min}); nobody left. If that is "
            f"right, run once with {ALLOW_FLAG}; never for another client's settings sharing this state (each "
            f"client needs its own: its own --env-file or SYNC_STATE_DB)")


def next_try_ms(attempts: int, now_ms: int, first_ms: int, max_ms: int) -> int:
    """When a consent action that failed `attempts` times is tried again: the next run after the
    first failure, then after first_ms, doubling up to max_ms (a day): one address MailerLite keeps
    refusing costs a request now and then, never every run's budget."""
    if attempts <= 1:
        return 0
    return now_ms + min(max_ms, first_ms * 2 ** min(attempts - 2, 32))


def merged_action(stored: Optional[PendingAction], new: PendingAction) -> PendingAction:
    """A new action for a contact and address that already has one stored: one row, which keeps what
    both still had to do (the union of the groups to leave, the stronger of unsubscribe and forget).
    Its back-off is the stored one's, unless the new one adds an unsubscribe the stored one did not
    have: that is due at once (the back-off belongs to what failed, a person who opted out does not
    wait behind a group removal MailerLite keeps failing); its attempts go on from the stored ones."""
    if stored is None:
        return new
    adds_unsubscribe = new.unsubscribe and not stored.unsubscribe
    return replace(new, subscriber_id=new.subscriber_id or stored.subscriber_id,
                   unsubscribe=new.unsubscribe or stored.unsubscribe, groups=new.groups | stored.groups,
                   forget=new.forget or stored.forget, attempts=stored.attempts,
                   next_try=0 if adds_unsubscribe else stored.next_try)


# -- the consent ledger: each new row a pure function of the last one and the new evidence ----------
# Where MailerLite's status was seen (state.LedgerRow.mailerlite_source).
LISTING = "listing"  # its subscriber listing (adoption, --full, drift repair)
UPSERT = "upsert"  # the subscriber object an upsert's answer carries
REFUSAL = "refusal"  # a 422 "cannot be imported / reactivated" naming the status
WRITE_BACK = "write_back"  # write-back's reads of its unsubscribed, bounced and junk subscribers
UNSUBSCRIBE = "unsubscribe"  # the answer to the sync's own unsubscribe
# Where HubSpot's opt-out was read (state.LedgerRow.hubspot_source).
RECORD = "record"  # the contact record's opt-out properties
ADDRESS = "address"  # consent by address (Communication Preferences)


def seen_in_mailerlite(row: Optional[LedgerRow], email: str, status: str, source: str, now: int,
                       created_by_sync: bool = False) -> LedgerRow:
    """MailerLite was seen holding the address with this status. A subscriber the sync itself just
    created (an upsert answered 201) is no sign the person signed up again: an address last seen
    inactive stays so (the sync unsubscribes it again at once). Any other sighting is what MailerLite
    holds now, active included (the person re-subscribed there: a form, the app)."""
    row = row or LedgerRow(email)
    status = status.strip().lower()
    if created_by_sync and row.mailerlite_status in INACTIVE:
        return row
    return replace(row, mailerlite_status=status, mailerlite_source=source, mailerlite_seen_at=now)


def read_in_hubspot(row: Optional[LedgerRow], email: str, opted_out: bool, source: str, now: int,
                    changed_ms: Optional[int] = None) -> LedgerRow:
    """HubSpot's opt-out of the address, as just read; `changed_ms`: when HubSpot last changed the
    record read (its lastmodifieddate), kept for an opt-out so that a newer one is told from the one
    already delivered (None: a reading by address, whose time is unknown)."""
    row = replace(row or LedgerRow(email), hubspot_opted_out=opted_out, hubspot_source=source, hubspot_read_at=now)
    if opted_out and changed_ms is not None:
        row = replace(row, hubspot_changed_ms=max(changed_ms, row.hubspot_changed_ms or 0))
    return row


def reading_changes(row: Optional[LedgerRow], opted_out: bool, changed_ms: Optional[int]) -> bool:
    """Whether a reading of HubSpot says something the row does not hold yet: another opt-out value,
    or an opt-out made later than the newest one kept."""
    if row is None:
        return False
    if row.hubspot_opted_out != opted_out:
        return True
    return bool(opted_out and changed_ms is not None and changed_ms > (row.hubspot_changed_ms or 0))


def sent_upsert(row: Optional[LedgerRow], email: str, now: int) -> LedgerRow:
    return replace(row or LedgerRow(email), sent="upsert", sent_at=now)


def unsubscribe_shown(status: Optional[str]) -> bool:
    """Whether MailerLite's 200 to an unsubscribe (on its own, or carried by the full upsert) shows it
    taken: the subscriber it answers is unsubscribed, bounced or junk, or it names no status (a 200 to
    a status change). One answered active or unconfirmed was not: MailerLite holds the address so,
    and the unsubscribe stays due (never "delivered" on an answer that says otherwise)."""
    return status is None or status.strip().lower() in INACTIVE


def unsubscribe_taken(row: Optional[LedgerRow], email: str, status: Optional[str], now: int,
                      changed_ms: Optional[int] = None) -> LedgerRow:
    """MailerLite took the sync's unsubscribe (sent because HubSpot holds the address opted out):
    it holds the address as the answer says, unsubscribed when it says nothing (an answer showing
    it active is no taking: unsubscribe_shown; the caller keeps it as a sighting instead). The
    unsubscribe was sent for the newest opt-out HubSpot shows (`changed_ms`, or the row's)."""
    row = replace(row or LedgerRow(email), sent="unsubscribe", sent_at=now)
    if row.hubspot_opted_out is not True:
        row = replace(row, hubspot_opted_out=True, hubspot_read_at=now, hubspot_source=row.hubspot_source or RECORD)
    newest = max((m for m in (changed_ms, row.hubspot_changed_ms) if m is not None), default=None)
    row = replace(row, hubspot_changed_ms=newest, sent_for_ms=newest)
    return replace(row, mailerlite_status=status if status in INACTIVE else "unsubscribed",
                   mailerlite_source=UNSUBSCRIBE, mailerlite_seen_at=now)


def never_made_active(row: Optional[LedgerRow]) -> bool:
    """MailerLite was last seen holding the address as unsubscribed, bounced or junk: the sync never
    creates it or makes it active again (also after its deletion there)."""
    return row is not None and row.mailerlite_status in INACTIVE


def written_by_sync(row: Optional[LedgerRow]) -> bool:
    """The sync wrote the address to MailerLite (an upsert or an unsubscribe): a later opt-out of it
    is followed, whoever holds it now."""
    return row is not None and row.sent is not None


def opted_out_again(row: Optional[LedgerRow], changed_ms: Optional[int]) -> bool:
    """A contact MailerLite has exactly as mapped (nothing to send), opted out: the record shows an
    opt-out HubSpot made after the one the sync's last unsubscribe was delivered for (the person
    signed up again through a MailerLite form, then opted out again), so it is sent again on its own.
    Without both times nothing is sent: the upsert that made the contact as it is carried the opt-out."""
    return (row is not None and row.sent == "unsubscribe" and row.sent_for_ms is not None
            and changed_ms is not None and changed_ms > row.sent_for_ms)


def followed_again(row: Optional[LedgerRow], status: str) -> bool:
    """MailerLite seen holding active an address the sync wrote that no synced contact holds (one the
    sweep unsubscribed and dropped, then signed up again through a form): it is a tombstone again,
    so its next opt-out in HubSpot is followed by the sweep."""
    return written_by_sync(row) and row is not None and row.holder is None and status not in INACTIVE


def unsubscribe_due(row: Optional[LedgerRow], changed_ms: Optional[int] = None) -> bool:
    """An opt-out HubSpot holds now (made at `changed_ms` by HubSpot's clock, None: unknown): the
    unsubscribe on its own is sent, unless the ledger shows it already delivered for this very
    opt-out: the sync's unsubscribe was the last thing it sent, HubSpot has been read opted out since
    (no opt-in read in between), and HubSpot's time of this opt-out is known and no later than the one
    it was sent for. Latest act wins: a MailerLite form sign-up after the delivery is kept while
    HubSpot shows no newer opt-out; an opt-out made after it (or one whose order cannot be told: a
    reading by address, a row from before) is sent, as no mail is the safe side."""
    if row is None:
        return True
    delivered = row.sent == "unsubscribe" and row.hubspot_opted_out is True
    if not delivered or changed_ms is None or row.sent_for_ms is None:
        return True
    return changed_ms > row.sent_for_ms
