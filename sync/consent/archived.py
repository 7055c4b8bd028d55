"""Read: the opt-outs on the archived records of synced contacts a full pass found gone.

A --full pass knows which synced contacts it did not find (read by id and not answered as
themselves: archived, purged, GDPR-deleted or merged away), so it reads exactly their archived
records, 100 ids a request (`POST .../contacts/batch/read?archived=true`), instead of the whole
archived listing (every contact deleted in the last 90 days, 100 a page). Only the daily check of
an hourly run, which knows no candidates, lists them all (owner.py).

A record HubSpot does not answer (purged after 90 days, GDPR-deleted) carries no opt-out to read:
the departure reads its address's consent before the address is let go (departures.py), which
covers it whenever the token has the consent scope. An answer under another id (a merged-away id
answered by the record it was merged into) is that record's, whose address is not the one leaving.
"""

from __future__ import annotations

from typing import Iterable, Set

from ..hubspot import HubSpotReader
from ..mapping import Mapping


def archived_optouts(hubspot: HubSpotReader, ids: Iterable[str], mapping: Mapping) -> Set[str]:
    """Of these ids, those whose own record HubSpot answers with an opt-out."""
    asked = set(ids)
    records = hubspot.read_archived_by_ids(sorted(asked, key=int), ["email", *mapping.optout_properties])
    # An answer naming an id not asked for is not about these contacts (a merged record, say).
    return {c["id"] for c in records if c["id"] in asked and mapping.opted_out(c["properties"])}
