"""HubSpot constants: API paths, limits and the write-back property schema. No logic.

HubSpot's REST APIs carry a date version in the path since 2026 (`/crm/objects/2026-09/...`);
each version is supported at least 18 months, and the numeric v1-v4 paths lose support in
September 2027. Request and answer shapes match v3 for everything the sync uses.
"""

from __future__ import annotations

from typing import Any, Dict, Tuple

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
# The documented way to learn a private-app token's scopes (not versioned; whether service keys
# answer there is unconfirmed: a refusal means "unknown", never "missing").
TOKEN_INFO_PATH = "/oauth/v2/private-apps/get/access-token-info"

# Limits.
PAGE_SIZE = 100  # the contact listing's maximum
SEARCH_PAGE_SIZE = 200  # the search endpoint's maximum
MEMBERSHIPS_PAGE_SIZE = 250  # the list memberships' maximum
BATCH_READ_SIZE = 100
BATCH_UPDATE_SIZE = 100
IN_VALUES = 100  # values in one IN filter; unconfirmed, so halved on a refusal
DEFAULT_INTERVAL_S = 10.0  # the rolling window when no header has told us yet
SEARCH_INTERVAL_S = 0.2  # search allows 5 requests a second per account and sends no headers to pace by
LOCKED_WAIT_S = 2.0  # 423 Locked / 477 Migration in progress without a Retry-After

# Scopes.
READ_SCOPE = "crm.objects.contacts.read"
WRITE_SCOPE = "crm.objects.contacts.write"
SCHEMA_WRITE_SCOPE = "crm.schemas.contacts.write"
WRITE_BACK_SCOPES = (WRITE_SCOPE, SCHEMA_WRITE_SCOPE)

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
