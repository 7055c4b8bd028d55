"""HubSpot constants: API paths, limits and the write-back property schema. No logic.

HubSpot's REST APIs carry a date version in the path since 2026 (`/crm/objects/2026-09/...`);
each version is supported at least 18 months, and the numeric v1-v4 paths lose support in
September 2027. Request and answer shapes match v3 for everything the sync uses.
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

DEFAULT_API_VERSION = "2026-09"  # HUBSPOT_API_VERSION pins another one

# Paths, with {v} the API version. Only contacts are read or written.
CONTACTS_PATH = "/crm/objects/{v}/contacts"
SEARCH_PATH = "/crm/objects/{v}/contacts/search"
BATCH_READ_PATH = "/crm/objects/{v}/contacts/batch/read"
BATCH_UPDATE_PATH = "/crm/objects/{v}/contacts/batch/update"
PROPERTIES_PATH = "/crm/properties/{v}/contacts"
PROPERTY_PATH = "/crm/properties/{v}/contacts/{name}"
PROPERTY_GROUPS_PATH = "/crm/properties/{v}/contacts/groups"
LIST_MEMBERSHIPS_PATH = "/crm/lists/{v}/{list_id}/memberships"
LIST_PATH = "/crm/lists/{v}/{list_id}"  # the list itself: its size and processingStatus
RECORD_MEMBERSHIPS_PATH = "/crm/lists/{v}/records/memberships/batch/read"  # the lists each record is in
CONTACT_OBJECT_TYPE = "0-1"
# A merged record lists the ids merged into it here ("1;2"); the merged-away ids answer with it.
MERGED_PROPERTY = "hs_merged_object_ids"


def merged_ids(value: Any) -> List[str]:
    """The record ids a merged record's MERGED_PROPERTY lists ("1;2"), in order; [] for none."""
    return [i.strip() for i in str(value or "").split(";") if i.strip()]


LIST_PROCESSED = "COMPLETE"  # processingStatus of a list whose size is settled
# The documented way to learn a private-app token's scopes (not versioned; whether service keys
# answer there is unconfirmed: a refusal means "unknown", never "missing").
TOKEN_INFO_PATH = "/oauth/v2/private-apps/get/access-token-info"
# Consent by email address (Communication Preferences): "unsubscribed from all", and per subscription.
CONSENT_WIDE_READ_PATH = "/communication-preferences/{v}/statuses/batch/unsubscribe-all/read"
CONSENT_READ_PATH = "/communication-preferences/{v}/statuses/batch/read"
CONSENT_BATCH_SIZE = 100  # the spec states no limit; assumed, as for every other batch
# The account's details (portalId), for any token kind (the published Account Info spec; whether
# every token kind may read it is unconfirmed: a refusal means "unknown").
ACCOUNT_DETAILS_PATH = "/account-info/{v}/details"

# Companies and deals (issue 30), with {kind} "companies" or "deals" (hubspot_associations.py).
OBJECT_BATCH_READ_PATH = "/crm/objects/{v}/{kind}/batch/read"
OBJECT_SEARCH_PATH = "/crm/objects/{v}/{kind}/search"
OBJECT_PROPERTIES_PATH = "/crm/properties/{v}/{kind}"
ASSOCIATIONS_READ_PATH = "/crm/associations/{v}/{from_type}/{to_type}/batch/read"
DEAL_PIPELINES_PATH = "/crm/pipelines/{v}/deals"
OBJECT_STAMP = "hs_lastmodifieddate"  # companies' and deals' modification time (contacts: lastmodifieddate)
ASSOCIATIONS_BATCH_SIZE = 1000  # ids per associations batch read (a 2025-02 changelog entry; the spec says none)
OBJECT_READ_SCOPES = {"companies": "crm.objects.companies.read", "deals": "crm.objects.deals.read"}
OBJECT_SCHEMA_SCOPES = {"companies": "crm.schemas.companies.read", "deals": "crm.schemas.deals.read"}

# Limits.
PAGE_SIZE = 100  # the contact listing's maximum
SEARCH_PAGE_SIZE = 200  # the search endpoint's maximum
MEMBERSHIPS_PAGE_SIZE = 250  # the list memberships' maximum
BATCH_READ_SIZE = 100
MEMBERSHIPS_BATCH_SIZE = 100  # records per memberships batch read (the spec gives none; HubSpot's batch norm)
BATCH_UPDATE_SIZE = 100
IN_VALUES = 100  # values in one IN filter; unconfirmed, so halved on a refusal
DEFAULT_INTERVAL_S = 10.0  # the rolling window when no header has told us yet
DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%S.000Z"  # how the sync writes datetime properties (UTC, ISO 8601)
SEARCH_INTERVAL_S = 0.2  # search allows 5 requests a second per account and sends no headers to pace by
LOCKED_WAIT_S = 2.0  # 423 Locked / 477 Migration in progress without a Retry-After

# Scopes.
READ_SCOPE = "crm.objects.contacts.read"
WRITE_SCOPE = "crm.objects.contacts.write"
SCHEMA_WRITE_SCOPE = "crm.schemas.contacts.write"
WRITE_BACK_SCOPES = (WRITE_SCOPE, SCHEMA_WRITE_SCOPE)
CONSENT_READ_SCOPE = "communication_preferences.statuses.batch.read"

# Write-back: two properties of the sync's own, in a group of its own.
STATUS_PROPERTY = "mailerlite_status"
CHANGED_PROPERTY = "mailerlite_status_changed_at"
WRITE_BACK_GROUP: Dict[str, Any] = {"name": "mailerlite", "label": "MailerLite", "displayOrder": -1}
# `hidden` is required on every option by HubSpot's published spec.
STATUS_OPTIONS: Tuple[Dict[str, Any], ...] = (
    {"label": "Unsubscribed", "value": "unsubscribed", "displayOrder": 0, "hidden": False},
    {"label": "Bounced", "value": "bounced", "displayOrder": 1, "hidden": False},
    {"label": "Spam complaint (junk)", "value": "junk", "displayOrder": 2, "hidden": False},
)
WRITE_BACK_PROPERTIES: Tuple[Dict[str, Any], ...] = (
    {"name": STATUS_PROPERTY, "label": "MailerLite status", "type": "enumeration", "fieldType": "select",
     "groupName": WRITE_BACK_GROUP["name"],
     "description": "Set by hubspot-mailerlite-sync when the subscriber unsubscribed, bounced or reported spam "
                    "in MailerLite. It does not change HubSpot's own subscription status.",
     "options": list(STATUS_OPTIONS)},
    {"name": CHANGED_PROPERTY, "label": "MailerLite status changed at", "type": "datetime", "fieldType": "date",
     "groupName": WRITE_BACK_GROUP["name"],
     "description": "When MailerLite recorded the status in 'MailerLite status'."},
)

# Engagement (opt-in): MailerLite's email figures per subscriber, in the same group. Rates are
# published as percentages (0-100) whatever form MailerLite answers in (see sync/engagement.py).
SENT_PROPERTY = "mailerlite_emails_sent"
OPENS_PROPERTY = "mailerlite_opens"
CLICKS_PROPERTY = "mailerlite_clicks"
OPEN_RATE_PROPERTY = "mailerlite_open_rate"
CLICK_RATE_PROPERTY = "mailerlite_click_rate"
ENGAGEMENT_UPDATED_PROPERTY = "mailerlite_engagement_updated_at"
_BY_SYNC = "Set by hubspot-mailerlite-sync from MailerLite"


def _number_property(name: str, label: str, description: str) -> Dict[str, Any]:
    return {"name": name, "label": label, "type": "number", "fieldType": "number",
            "groupName": WRITE_BACK_GROUP["name"], "description": description}


ENGAGEMENT_PROPERTIES: Tuple[Dict[str, Any], ...] = (
    _number_property(SENT_PROPERTY, "MailerLite emails sent",
                     f"{_BY_SYNC}: how many MailerLite campaign emails were sent to this address."),
    _number_property(OPENS_PROPERTY, "MailerLite opens",
                     f"{_BY_SYNC}: how many of those emails were opened (as MailerLite counts opens)."),
    _number_property(CLICKS_PROPERTY, "MailerLite clicks",
                     f"{_BY_SYNC}: how many of those emails had a link clicked (as MailerLite counts clicks)."),
    _number_property(OPEN_RATE_PROPERTY, "MailerLite open rate %",
                     f"{_BY_SYNC}: the share of emails sent that were opened, in percent (0-100)."),
    _number_property(CLICK_RATE_PROPERTY, "MailerLite click rate %",
                     f"{_BY_SYNC}: the share of emails sent with a click, in percent (0-100)."),
    {"name": ENGAGEMENT_UPDATED_PROPERTY, "label": "MailerLite engagement updated at", "type": "datetime",
     "fieldType": "date", "groupName": WRITE_BACK_GROUP["name"],
     "description": f"{_BY_SYNC}: when the MailerLite figures above last changed and were written "
                    f"(checked every SYNC_ENGAGEMENT_HOURS; unchanged figures are not rewritten)."},
)
ENGAGEMENT_NUMBERS = (SENT_PROPERTY, OPENS_PROPERTY, CLICKS_PROPERTY, OPEN_RATE_PROPERTY, CLICK_RATE_PROPERTY)
