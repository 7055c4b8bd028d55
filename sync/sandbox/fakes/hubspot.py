"""A stateful fake of the parts of HubSpot's date-based CRM API (2026-09) the sync uses.

Behaviour follows ../shared/api/hubspot.md and the published OpenAPI specs: string property
values, cursor paging, search with filters/sort/10,000-result cap over a live index (an edit
moves a contact to the end of a lastmodifieddate sort, so offset paging shifts; `search_lag_ms`
hides recent writes), Bearer auth, the ten-secondly rolling limit with its headers, the separate
search limit (no headers), a daily limit, and the token-information endpoint. Requests the spec
calls invalid (a batch read without propertiesWithHistory, an option without hidden, a search
without after or with sorts that are not strings) are refused with 400, as a validating proxy
would. Switches choose between readings of behaviour HubSpot has not confirmed.

Consent is kept per email ADDRESS, as HubSpot keeps it (`address_consent`): it survives the archive,
merge or edit of the record that set it, and the Communication Preferences batch reads answer it by
address. A record's hs_email_optout (and hs_email_optout_<subscription id>) mirror the status of
its primary address when that changes hands (created, email changed, merged) and whenever the
address's status is set (`set_address_consent`, or an edit of those properties on the record).
"""

from __future__ import annotations

import bisect
import time
import uuid
from collections import deque
from datetime import datetime, timezone
from typing import Any, Deque, Dict, Iterable, List, Optional, Set

from werkzeug.routing import BaseConverter, Map, Rule
from werkzeug.wrappers import Request, Response

from .base import FakeAPI, RollingCounter
from .hubspot_objects import (
    COMPANIES_READ_SCOPE,
    COMPANIES_SCHEMA_SCOPE,
    DEALS_READ_SCOPE,
    DEALS_SCHEMA_SCOPE,
    OBJECT_SCOPES,
    SCHEMA_SCOPES,
    AssociatedObjects,
)

READ_SCOPE = "crm.objects.contacts.read"
WRITE_SCOPE = "crm.objects.contacts.write"
SCHEMA_READ_SCOPE = "crm.schemas.contacts.read"
SCHEMA_WRITE_SCOPE = "crm.schemas.contacts.write"
LISTS_READ_SCOPE = "crm.lists.read"
CONSENT_READ_SCOPE = "communication_preferences.statuses.batch.read"
OPTOUT_ALL = "hs_email_optout"
OPTOUT_PREFIX = "hs_email_optout_"  # + a subscription type id
ALL = "all"  # address_consent's key for "unsubscribed from all email"

SEARCH_RESULT_CAP = 10_000

# Property definitions as GET /crm/properties/2026-09/contacts describes them (a realistic subset).
DEFAULT_PROPERTIES: List[Dict[str, Any]] = [
    {"name": "email", "label": "Email", "type": "string", "fieldType": "text"},
    {"name": "firstname", "label": "First Name", "type": "string", "fieldType": "text"},
    {"name": "lastname", "label": "Last Name", "type": "string", "fieldType": "text"},
    {"name": "company", "label": "Company Name", "type": "string", "fieldType": "text"},
    {"name": "phone", "label": "Phone Number", "type": "string", "fieldType": "phonenumber"},
    {"name": "city", "label": "City", "type": "string", "fieldType": "text"},
    {"name": "state", "label": "State/Region", "type": "string", "fieldType": "text"},
    {"name": "zip", "label": "Postal Code", "type": "string", "fieldType": "text"},
    {"name": "country", "label": "Country/Region", "type": "string", "fieldType": "text"},
    {"name": "jobtitle", "label": "Job Title", "type": "string", "fieldType": "text"},
    {"name": "numemployees", "label": "Number of Employees", "type": "number", "fieldType": "number"},
    {"name": "date_of_birth", "label": "Date of birth", "type": "date", "fieldType": "date"},
    {"name": "createdate", "label": "Create Date", "type": "datetime", "fieldType": "date"},
    {"name": "lastmodifieddate", "label": "Last Modified Date", "type": "datetime", "fieldType": "date"},
    {"name": "hs_object_id", "label": "Record ID", "type": "number", "fieldType": "number"},
    {"name": "hs_email_optout", "label": "Unsubscribed from all email", "type": "bool",
     "fieldType": "booleancheckbox",
     "options": [{"label": "True", "value": "true"}, {"label": "False", "value": "false"}]},
    {"name": "lifecyclestage", "label": "Lifecycle Stage", "type": "enumeration", "fieldType": "radio",
     "options": [
         {"label": "Subscriber", "value": "subscriber"},
         {"label": "Lead", "value": "lead"},
         {"label": "Marketing Qualified Lead", "value": "marketingqualifiedlead"},
         {"label": "Sales Qualified Lead", "value": "salesqualifiedlead"},
         {"label": "Opportunity", "value": "opportunity"},
         {"label": "Customer", "value": "customer"},
     ]},
    {"name": "hs_additional_emails", "label": "Additional email addresses", "type": "enumeration",
     "fieldType": "checkbox", "options": []},
]

_OPERATORS = {
    "EQ": lambda a, b: a == b,
    "NEQ": lambda a, b: a != b,
    "LT": lambda a, b: a < b,
    "LTE": lambda a, b: a <= b,
    "GT": lambda a, b: a > b,
    "GTE": lambda a, b: a >= b,
}


def iso_ms(ms: int) -> str:
    """Epoch milliseconds as HubSpot writes datetimes: 2024-01-05T10:00:00.123Z."""
    dt = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def parse_time_value(value: Any) -> int:
    """A filter value for a datetime property: epoch ms (number or digits) or ISO 8601."""
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        return int(text)
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp() * 1000)


def _options(options: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Options as HubSpot answers them (label, value, hidden, displayOrder), given fields kept."""
    return [dict({"hidden": False, "displayOrder": i}, **o) for i, o in enumerate(options)]


def _batch_error(category: str, message: str, ids: List[str]) -> Dict[str, Any]:
    """One item of a batch answer's `errors`, with every field the spec's StandardError requires."""
    return {"status": "error", "category": category, "message": message, "context": {"ids": ids},
            "errors": [], "links": {}}


def _is_optout(name: str) -> bool:
    return name == OPTOUT_ALL or (name.startswith(OPTOUT_PREFIX) and name[len(OPTOUT_PREFIX):].isdigit())


def _error(message: str, category: str, status: int, **extra: Any) -> Response:
    body = {"status": "error", "message": message, "correlationId": str(uuid.uuid4()), "category": category}
    body.update(extra)
    return FakeAPI.json_response(body, status)


def batch_read_refusal(body: Dict[str, Any]) -> Optional[Response]:
    """HubSpot's answer to a batch read it refuses (contacts, companies and deals alike): both
    property lists are required, and at most 100 inputs; None when the body is acceptable."""
    if "propertiesWithHistory" not in body or "properties" not in body:
        return _error("Invalid input JSON: properties and propertiesWithHistory are required",
                      "VALIDATION_ERROR", 400)
    if len(body.get("inputs") or []) > 100:
        return _error("Batch read is limited to 100 inputs", "VALIDATION_ERROR", 400)
    return None


class _Version(BaseConverter):
    """A date-based API version in a path: 2026-09."""

    regex = r"[0-9]{4}-[0-9]{2}"


class FakeHubSpot(AssociatedObjects, FakeAPI):
    url_map = Map([
        # Companies, deals and associations (hubspot_objects.py).
        Rule("/crm/associations/<version:v>/<from_type>/<to_type>/batch/read", methods=["POST"],
             endpoint="association_read"),
        Rule("/crm/objects/<version:v>/<any(companies, deals):object_type>/batch/read", methods=["POST"],
             endpoint="object_batch_read"),
        Rule("/crm/objects/<version:v>/<any(companies, deals):object_type>/search", methods=["POST"],
             endpoint="object_search"),
        Rule("/crm/properties/<version:v>/<any(companies, deals):object_type>", methods=["GET"],
             endpoint="object_properties"),
        Rule("/crm/pipelines/<version:v>/deals", methods=["GET"], endpoint="deal_pipelines"),
        Rule("/crm/objects/<version:v>/contacts", methods=["GET"], endpoint="list_contacts"),
        Rule("/crm/objects/<version:v>/contacts/search", methods=["POST"], endpoint="search"),
        Rule("/crm/objects/<version:v>/contacts/batch/read", methods=["POST"], endpoint="batch_read"),
        Rule("/crm/objects/<version:v>/contacts/batch/update", methods=["POST"], endpoint="batch_update"),
        Rule("/crm/objects/<version:v>/contacts/<cid>", methods=["GET"], endpoint="get_contact"),
        Rule("/crm/properties/<version:v>/contacts", methods=["GET"], endpoint="list_properties"),
        Rule("/crm/properties/<version:v>/contacts", methods=["POST"], endpoint="create_property"),
        Rule("/crm/properties/<version:v>/contacts/groups", methods=["GET"], endpoint="list_property_groups"),
        Rule("/crm/properties/<version:v>/contacts/groups", methods=["POST"], endpoint="create_property_group"),
        Rule("/crm/properties/<version:v>/contacts/<name>", methods=["PATCH"], endpoint="update_property"),
        Rule("/crm/lists/<version:v>/<list_id>/memberships", methods=["GET"], endpoint="memberships"),
        Rule("/crm/lists/<version:v>/records/memberships/batch/read", methods=["POST"],
             endpoint="record_memberships"),
        Rule("/crm/lists/<version:v>/<list_id>", methods=["GET"], endpoint="get_list"),
        Rule("/oauth/v2/private-apps/get/access-token-info", methods=["POST"], endpoint="token_info"),
        Rule("/communication-preferences/<version:v>/statuses/batch/unsubscribe-all/read", methods=["POST"],
             endpoint="consent_wide_read"),
        Rule("/communication-preferences/<version:v>/statuses/batch/read", methods=["POST"],
             endpoint="consent_read"),
        Rule("/account-info/<version:v>/details", methods=["GET"], endpoint="account_details"),
    ], converters={"version": _Version})

    def __init__(self, time_scale: float = 1.0, ten_secondly_limit: int = 190,
                 search_per_second: int = 5, daily_limit: int = 1_000_000,
                 search_result_cap: int = SEARCH_RESULT_CAP) -> None:
        super().__init__(time_scale)
        self.search_result_cap = search_result_cap  # results a search pages through by offset, at most
        self.tokens: Dict[str, Set[str]] = {
            "hs-test-token": {READ_SCOPE, SCHEMA_READ_SCOPE, LISTS_READ_SCOPE, CONSENT_READ_SCOPE,
                              COMPANIES_READ_SCOPE, DEALS_READ_SCOPE, COMPANIES_SCHEMA_SCOPE, DEALS_SCHEMA_SCOPE},
        }
        self._init_objects()
        # address (lower case) -> {ALL or a subscription id: SUBSCRIBED | UNSUBSCRIBED}
        self.address_consent: Dict[str, Dict[str, str]] = {}
        # The spec is silent on an address HubSpot holds no status for: "empty" answers it with no
        # statuses, "omitted" leaves it out of the results and names it in a 207's errors.
        self.unknown_addresses = "empty"
        self.refused_addresses: Set[str] = set()  # a batch holding one of these is refused (400)
        # One entry per coming consent read: "plain" answers 403 naming no scope (a permission hiccup,
        # a portal setting: unconfirmed what else HubSpot means by it), "scope" a 403 naming the consent
        # scope, as a token without it gets, "503" an outage, any other ("") lets that read through.
        # Empty: answered as the token's scopes say.
        self.consent_refusals: Deque[str] = deque()
        self.contacts: Dict[int, Dict[str, Any]] = {}
        self._ids: List[int] = []  # sorted ids, for cursor paging
        self._merged_index: Dict[str, int] = {}  # merged-away id -> the record it was merged into
        self._next_id = 1001
        self.properties: List[Dict[str, Any]] = [dict(p, groupName="contactinformation", hidden=False,
                                                      calculated=False, hubspotDefined=True, description="",
                                                      options=_options(p.get("options", [])))
                                                 for p in DEFAULT_PROPERTIES]
        self.lists: Dict[str, List[int]] = {}
        # A list HubSpot is still (re)computing: its size lags its members (processingStatus PROCESSING).
        self.processing_lists: Dict[str, int] = {}  # list id -> the stale size it answers meanwhile
        self.short_membership_reads: Dict[str, int] = {}  # list id -> next reads that end early...
        self.short_read_pages = 1  # ...after this many pages (the last one sent without `paging`)
        self.membership_page_max = 250  # the documented page size cap; smaller makes short reads bite on small lists
        # Unconfirmed: a memberships batch read naming a record that does not exist (archived,
        # deleted) either lists it in a 207's errors, or answers it with no memberships. Tests try both.
        self.unknown_record_memberships = "207"  # or "empty"
        # A batch read with archived=true answers archived records only (the spec: "only results that
        # have been archived"). Unconfirmed: an id it does not answer (live, purged 90 days after its
        # delete, GDPR-deleted) is named in a 207's errors ("207"), silently left out ("absent"), or fails
        # the whole batch with a 404 ("404"); a merged-away id is answered as its own archived record
        # ("own") or by the record it was merged into ("merged"; HubSpot's plain batch read answers an
        # old id so, ../shared/api/hubspot.md).
        self.archived_read_unknown = "207"
        self.archived_read_merged = "own"
        self.property_groups: List[Dict[str, Any]] = [
            {"name": "contactinformation", "label": "Contact information", "displayOrder": 0, "archived": False}]
        self.failing_update_ids: Set[str] = set()  # batch updates of these ids fail (207 multi-status)
        self.general_limit = RollingCounter(self, ten_secondly_limit, 10.0)
        self.search_limit = RollingCounter(self, search_per_second, 1.0)
        self.daily_limit = daily_limit
        self.daily_used = 0
        self.send_retry_after = False  # unconfirmed whether HubSpot sends it: tests try both
        # Unconfirmed: does a batch update answer 207 per bad id, or 400 for the whole batch?
        self.batch_errors = "207"  # or "400"
        self.validation_rules: Dict[str, str] = {}  # contact id -> an admin validation rule's refusal
        self.in_values_limit = 100  # values one IN filter may hold (unconfirmed: tests try a smaller one)
        self.token_info_answers = True  # False: the token-information endpoint 404s (service keys?)
        self.portal_id = 1  # the HubSpot account (portal) these tokens belong to
        # A requested property that does not exist: left out of the answer ("absent", as HubSpot is said
        # to do; unconfirmed) or answered as null like an empty one ("null"). Either way never an error.
        self.unknown_properties = "absent"
        self.account_info_answers = True  # False: the account details endpoint 404s (unconfirmed for every token)
        self.search_lag_ms = 0  # changes this recent are not yet visible to search
        self._clock_ms = 0

    # -- seeding and inspection --------------------------------------------------------
    def now_ms(self) -> int:
        # Strictly increasing, so every change has its own lastmodifieddate.
        self._clock_ms = max(self._clock_ms + 1, int(time.time() * 1000))
        return self._clock_ms

    def add_contact(self, properties: Dict[str, Optional[str]], modified_ms: Optional[int] = None) -> str:
        with self.lock:
            cid = self._next_id
            self._next_id += 1
            ms = modified_ms if modified_ms is not None else self.now_ms()
            props = {k: (None if v is None else str(v)) for k, v in properties.items()}
            props.update(hs_object_id=str(cid), createdate=iso_ms(ms), lastmodifieddate=iso_ms(ms))
            self.contacts[cid] = {"properties": props, "created": ms, "modified": ms, "archived": False}
            self._ids.append(cid)
            self._note_merged(cid, props)
            # Creating a record never resubscribes its address: only an opt-out given is kept by address.
            given = {k: v for k, v in properties.items() if _is_optout(k) and str(v).lower() == "true"}
            self._keep_consent(props.get("email"), given)
            if not any(_is_optout(k) for k in properties):
                self._mirror_consent(props)
            return str(cid)

    def update_contact(self, cid: str, properties: Dict[str, Optional[str]]) -> None:
        with self.lock:
            record = self.contacts[int(cid)]
            record["properties"].update({k: (None if v is None else str(v)) for k, v in properties.items()})
            self._note_merged(int(cid), record["properties"])
            given = {k: v for k, v in properties.items() if _is_optout(k)}
            self._keep_consent(record["properties"].get("email"), given)
            if "email" in properties and not given:
                self._mirror_consent(record["properties"])  # the record now shows its new address's status
            record["modified"] = self.now_ms()
            record["properties"]["lastmodifieddate"] = iso_ms(record["modified"])

    def reindex(self) -> None:
        """The derived indexes rebuilt, after the records were restored from a snapshot."""
        self._merged_index = {}
        for cid, record in self.contacts.items():
            self._note_merged(cid, record["properties"])
        self.reindex_links()

    def _note_merged(self, cid: int, props: Dict[str, Optional[str]]) -> None:
        """Index the ids a record says were merged into it, so a read of one finds it at once."""
        for old in str(props.get("hs_merged_object_ids") or "").split(";"):
            if old.strip().isdigit() and int(old) != cid:
                self._merged_index[old.strip()] = cid

    def _keep_consent(self, email: Optional[str], given: Dict[str, Any]) -> None:
        """Opt-out properties written on a record set the status of its primary address."""
        if not email or not given:
            return
        statuses = self.address_consent.setdefault(str(email).lower(), {})
        for name, value in given.items():
            key = ALL if name == OPTOUT_ALL else name[len(OPTOUT_PREFIX):]
            statuses[key] = "UNSUBSCRIBED" if str(value).lower() == "true" else "SUBSCRIBED"

    def _mirror_consent(self, props: Dict[str, Any]) -> None:
        """The record's opt-out properties show its primary address's statuses."""
        statuses = self.address_consent.get(str(props.get("email") or "").lower(), {})
        if OPTOUT_ALL in props or statuses:
            props[OPTOUT_ALL] = "true" if statuses.get(ALL) == "UNSUBSCRIBED" else "false"
        for key, status in statuses.items():
            if key != ALL:
                props[OPTOUT_PREFIX + key] = "true" if status == "UNSUBSCRIBED" else "false"

    def set_address_consent(self, email: str, unsubscribed_all: Optional[bool] = None,
                            subscriptions: Optional[Dict[str, bool]] = None) -> None:
        """An address's status changed (a person clicked unsubscribe, say): kept by address, and shown
        on every record, live or archived, holding it as primary email."""
        given: Dict[str, Any] = {OPTOUT_PREFIX + k: str(v).lower() for k, v in (subscriptions or {}).items()}
        if unsubscribed_all is not None:
            given[OPTOUT_ALL] = str(unsubscribed_all).lower()
        with self.lock:
            self._keep_consent(email, given)
            for record in self.contacts.values():
                if str(record["properties"].get("email") or "").lower() == email.lower():
                    self._mirror_consent(record["properties"])
                    record["modified"] = self.now_ms()
                    record["properties"]["lastmodifieddate"] = iso_ms(record["modified"])

    def archive_contact(self, cid: str) -> None:
        with self.lock:
            record = self.contacts[int(cid)]
            record["archived"] = True
            record["modified"] = self.now_ms()

    def restore_contact(self, cid: str) -> None:
        """A deleted (archived) contact restored from the recycling bin: live again, with its own id."""
        with self.lock:
            record = self.contacts[int(cid)]
            record["archived"] = False
            self._mirror_consent(record["properties"])
            record["modified"] = self.now_ms()
            record["properties"]["lastmodifieddate"] = iso_ms(record["modified"])

    def purge_contact(self, cid: str) -> None:
        """Gone for good: purged 90 days after its delete, or GDPR-deleted. No read answers it any more;
        the consent of its address stays with the address."""
        with self.lock:
            del self.contacts[int(cid)]
            self._ids.remove(int(cid))
            for members in self.lists.values():
                if int(cid) in members:
                    members.remove(int(cid))

    def add_property(self, name: str, type_: str, label: str = "", options: Optional[list] = None,
                     field_type: str = "text") -> None:
        self.properties.append({"name": name, "label": label or name, "type": type_, "fieldType": field_type,
                                "groupName": "contactinformation", "options": _options(options or []),
                                "description": "", "hidden": False, "calculated": False, "hubspotDefined": False})

    def add_optout_property(self, subscription_id: str, name: str = "Marketing information") -> str:
        """A per-subscription opt-out property, as HubSpot defines one per subscription type."""
        prop = f"hs_email_optout_{subscription_id}"
        self.properties.append({"name": prop, "label": f"Opted out of email: {name}", "type": "enumeration",
                                "fieldType": "booleancheckbox", "groupName": "emailinformation",
                                "options": [{"label": "Yes", "value": "true"}, {"label": "No", "value": "false"}],
                                "hidden": False, "calculated": False, "hubspotDefined": True})
        return prop

    def merge_contacts(self, primary_id: str, secondary_id: str, new_id: bool) -> str:
        """Merge secondary into primary; returns the id of the merged record.

        new_id=False (the older behaviour): the primary keeps its id. new_id=True (HubSpot's
        current behaviour): the merged record gets a new id. Either way the merged record's
        hs_merged_object_ids names the ids merged into it, it keeps the primary's address (the
        secondary's goes to hs_additional_emails), and the merged-away records are gone (archived).
        """
        with self.lock:
            primary, secondary = self.contacts[int(primary_id)], self.contacts[int(secondary_id)]
            props = dict(secondary["properties"])
            props.update({k: v for k, v in primary["properties"].items() if v not in (None, "")})
            before = [i for i in str(primary["properties"].get("hs_merged_object_ids") or "").split(";") if i]
            merged = before + ([primary_id, secondary_id] if new_id else [secondary_id])
            props["hs_merged_object_ids"] = ";".join(merged)
            props["hs_additional_emails"] = secondary["properties"].get("email")
            # The secondary's opt-outs stay with its address; the record shows its own address's.
            for name in [k for k in props if _is_optout(k)]:
                props[name] = primary["properties"].get(name)
            self._mirror_consent(props)
            gone = [int(primary_id), int(secondary_id)] if new_id else [int(secondary_id)]
            for cid in gone:
                self.contacts[cid]["archived"] = True
                self.contacts[cid]["modified"] = self.now_ms()
        if not new_id:
            kept = ("hs_merged_object_ids", "hs_additional_emails")
            with self.lock:
                self.contacts[int(primary_id)]["properties"].update({k: props[k] for k in props
                                                                     if k in kept or _is_optout(k)})
            self.update_contact(primary_id, {})
            return primary_id
        for list_members in self.lists.values():  # the merged record is in the lists its parts were in
            if int(primary_id) in list_members or int(secondary_id) in list_members:
                list_members.append(self._next_id)
        props.pop("hs_object_id", None)
        props.pop("createdate", None)
        return self.add_contact(props)

    # -- auth and limits ---------------------------------------------------------------
    def before_request(self, request: Request, endpoint: str) -> Optional[Response]:
        if endpoint == "token_info":  # the token to describe is in the body, not the header
            return None
        auth = request.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else ""
        scopes = self.tokens.get(token)
        if scopes is None:
            return _error("Authentication credentials not found. This API supports OAuth 2.0 authentication "
                          "and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
                          "INVALID_AUTHENTICATION", 401)
        needed = self._scope_for(request, endpoint)
        if needed and needed not in scopes:
            return _error("This app hasn't been granted all required scopes to make this call.",
                          "MISSING_SCOPES", 403,
                          errors=[{"message": "One or more of the following scopes are required.",
                                   "context": {"requiredGranularScopes": [needed]}}])
        with self.lock:
            if self.daily_used >= self.daily_limit:
                return self._rate_limited("DAILY", "You have reached your daily limit.")
            if endpoint in ("search", "object_search"):
                if not self.search_limit.try_take():
                    return self._rate_limited("SECONDLY", "You have reached your secondly limit.")
            elif not self.general_limit.try_take():
                return self._rate_limited("TEN_SECONDLY_ROLLING", "You have reached your ten_secondly_rolling limit.")
            self.daily_used += 1
        return None

    @staticmethod
    def _scope_for(request: Request, endpoint: str) -> str:
        parts = request.path.strip("/").split("/")
        if endpoint == "association_read":  # the read scope of the object that is not the contact
            other = parts[4] if parts[3] == "contacts" else parts[3]
            return OBJECT_SCOPES.get(other, READ_SCOPE)
        if endpoint in ("object_batch_read", "object_search"):
            return OBJECT_SCOPES[parts[3]]
        if endpoint == "object_properties":
            return SCHEMA_SCOPES[parts[3]]
        if endpoint == "deal_pipelines":
            return DEALS_READ_SCOPE
        if endpoint == "account_details":
            return ""  # any valid token may read its own account's details
        if endpoint in ("list_properties", "list_property_groups"):
            return SCHEMA_READ_SCOPE
        if endpoint in ("create_property", "create_property_group", "update_property"):
            return SCHEMA_WRITE_SCOPE
        if endpoint == "batch_update":
            return WRITE_SCOPE
        if endpoint in ("memberships", "record_memberships", "get_list"):
            return LISTS_READ_SCOPE
        if endpoint in ("consent_wide_read", "consent_read"):
            return CONSENT_READ_SCOPE
        return READ_SCOPE

    def _rate_limited(self, policy: str, message: str) -> Response:
        headers = {}
        if self.send_retry_after:
            headers["Retry-After"] = f"{self.real_seconds(1.0 if policy != 'DAILY' else 3600):.3f}"
        body = {"status": "error", "message": message, "errorType": "RATE_LIMIT", "correlationId": str(uuid.uuid4()),
                "policyName": policy}
        if policy != "SECONDLY":  # search answers carry no rate-limit headers, even its 429s
            headers.update(self._limit_headers())
        return self.json_response(body, 429, headers)

    def rate_limited_response(self) -> Response:
        response = self._rate_limited("TEN_SECONDLY_ROLLING", "You have reached your ten_secondly_rolling limit.")
        response.headers["Retry-After"] = f"{self.real_seconds(1.0):.3f}"
        return response

    def _limit_headers(self) -> Dict[str, str]:
        return {
            "X-HubSpot-RateLimit-Max": str(self.general_limit.limit),
            "X-HubSpot-RateLimit-Remaining": str(self.general_limit.remaining()),
            # Scaled with the fake's clock, so a client that paces from this header stays right.
            "X-HubSpot-RateLimit-Interval-Milliseconds": str(int(self.real_seconds(10.0) * 1000)),
            "X-HubSpot-RateLimit-Daily": str(self.daily_limit),
            "X-HubSpot-RateLimit-Daily-Remaining": str(max(0, self.daily_limit - self.daily_used)),
        }

    def ok(self, data: Any, status: int = 200) -> Response:
        return self.json_response(data, status, self._limit_headers())

    # -- rendering -------------------------------------------------------------------
    def _render(self, cid: int, wanted: Optional[List[str]]) -> Dict[str, Any]:
        record = self.contacts[cid]
        props = record["properties"]
        names = wanted or ["email", "firstname", "lastname", "createdate", "lastmodifieddate", "hs_object_id"]
        if self.unknown_properties == "absent":  # a property with a value on the record exists, whatever else
            defined = {p["name"] for p in self.properties}
            names = [name for name in names if name in defined or name in props]
        out = {name: props.get(name) for name in names}
        # HubSpot always includes these three.
        for always in ("createdate", "lastmodifieddate", "hs_object_id"):
            out[always] = props.get(always)
        return {
            "id": str(cid),
            "properties": out,
            "createdAt": iso_ms(record["created"]),
            "updatedAt": iso_ms(record["modified"]),
            "archived": record["archived"],
            **({"archivedAt": iso_ms(record["modified"])} if record["archived"] else {}),
        }

    @staticmethod
    def _properties_arg(request: Request) -> List[str]:
        names: List[str] = []
        for value in request.args.getlist("properties"):
            names.extend(n for n in value.split(",") if n)
        return names

    # -- endpoints ---------------------------------------------------------------------
    def on_list_contacts(self, request: Request, v: str = "") -> Response:
        try:
            limit = min(int(request.args.get("limit", "10")), 100)
        except ValueError:
            return _error("Invalid input JSON on line 1", "VALIDATION_ERROR", 400)
        archived = request.args.get("archived", "false").lower() == "true"
        after = request.args.get("after")
        start = bisect.bisect_right(self._ids, int(after)) if after and after.isdigit() else 0
        wanted = self._properties_arg(request)
        results: List[Dict[str, Any]] = []
        i = start
        while i < len(self._ids) and len(results) < limit:
            cid = self._ids[i]
            if self.contacts[cid]["archived"] == archived:
                results.append(self._render(cid, wanted))
            i += 1
        body: Dict[str, Any] = {"results": results}
        more = any(self.contacts[c]["archived"] == archived for c in self._iter_ids_from(i))
        if results and more:
            last = results[-1]["id"]
            body["paging"] = {"next": {"after": last, "link": f"{self.url}/crm/objects/{v}/contacts?after={last}"}}
        return self.ok(body)

    def _iter_ids_from(self, index: int) -> Iterable[int]:
        for j in range(index, len(self._ids)):
            yield self._ids[j]

    def on_get_contact(self, request: Request, cid: str, v: str = "") -> Response:
        record = self.contacts.get(int(cid)) if cid.isdigit() else None
        if record is None or record["archived"]:
            return _error("Object not found.", "OBJECT_NOT_FOUND", 404)
        return self.ok(self._render(int(cid), self._properties_arg(request)))

    def _matches(self, cid: int, group: List[Dict[str, Any]]) -> bool:
        return filters_match(cid, self.contacts[cid], group, "lastmodifieddate")

    def _search_problem(self, body: Dict[str, Any]) -> Optional[str]:
        """What the published spec (or HubSpot's limits) refuse in a search body."""
        missing = [k for k in ("after", "filterGroups", "limit", "properties", "sorts") if k not in body]
        if missing:
            return f"missing required fields: {', '.join(missing)}"
        if not all(isinstance(s, str) for s in body.get("sorts") or []):
            return "sorts must be property names (strings)"
        for group in body.get("filterGroups") or []:
            for flt in group.get("filters", []):
                if flt.get("operator") == "IN" and len(flt.get("values") or []) > self.in_values_limit:
                    return f"an IN filter takes at most {self.in_values_limit} values"
        return None

    def on_search(self, request: Request, v: str = "") -> Response:
        body = self.json_body(request) or {}
        problem = self._search_problem(body)
        if problem:
            return _error(f"Invalid input JSON: {problem}", "VALIDATION_ERROR", 400)
        limit = int(body.get("limit", 10))
        if limit > 200:
            return _error("limit must be at most 200", "VALIDATION_ERROR", 400)
        offset = int(body.get("after") or 0)
        if offset + limit > self.search_result_cap:
            return _error("There was a problem with the request.", "VALIDATION_ERROR", 400,
                          errors=[{"message": f"Paging past {self.search_result_cap} results is not supported"}])
        groups = body.get("filterGroups") or []
        visible_before = int(time.time() * 1000) - self.search_lag_ms
        ids = [cid for cid in self._ids
               if not self.contacts[cid]["archived"]
               and (not self.search_lag_ms or self.contacts[cid]["modified"] <= visible_before)
               and (not groups or any(self._matches(cid, g.get("filters", [])) for g in groups))]
        sorts = body.get("sorts") or []
        if sorts:
            sort = sorts[0]
            name = sort.get("propertyName") if isinstance(sort, dict) else str(sort).lstrip("-")
            if isinstance(sort, dict):
                descending = sort.get("direction") == "DESCENDING"
            else:
                descending = str(sort).startswith("-")
            if name == "lastmodifieddate":
                ids.sort(key=lambda c: self.contacts[c]["modified"], reverse=descending)
            elif name == "hs_object_id":
                ids.sort(reverse=descending)
        page = ids[offset:offset + limit]
        out: Dict[str, Any] = {"total": len(ids), "results": [self._render(c, body.get("properties")) for c in page]}
        if offset + limit < len(ids):
            out["paging"] = {"next": {"after": str(offset + limit)}}
        return self.json_response(out)  # search answers carry no rate-limit headers

    def on_batch_read(self, request: Request, v: str = "") -> Response:
        body = self.json_body(request) or {}
        refusal = batch_read_refusal(body)
        if refusal is not None:
            return refusal
        inputs = body.get("inputs") or []
        if request.args.get("archived", "false").lower() == "true":
            return self._archived_batch_read(inputs, body.get("properties"))
        results, missing = [], []
        for item in inputs:
            cid = str(item.get("id", ""))
            merged_into = self._merged_into(cid)
            if cid.isdigit() and int(cid) in self.contacts and not self.contacts[int(cid)]["archived"]:
                results.append(self._render(int(cid), body.get("properties")))
            elif merged_into is not None:
                # HubSpot answers a merged-away id with the record it was merged into, under that
                # record's id (../shared/api/hubspot.md, "Merges"): asked for 5, it answers 9.
                results.append(self._render(merged_into, body.get("properties")))
            else:
                missing.append(cid)
        return self._batch_read_answer(results, missing)

    def _archived_batch_read(self, inputs: List[Dict[str, Any]], wanted: Optional[List[str]]) -> Response:
        """A batch read with archived=true: archived records only, each reading of what is not answered."""
        results, missing = [], []
        for item in inputs:
            cid = str(item.get("id", ""))
            record = self.contacts.get(int(cid)) if cid.isdigit() else None
            archived = record is not None and record["archived"]
            merged_into = self._merged_into(cid) if archived and self.archived_read_merged == "merged" else None
            if merged_into is not None:
                results.append(self._render(merged_into, wanted))
            elif archived:
                results.append(self._render(int(cid), wanted))
            else:
                missing.append(cid)
        if missing and self.archived_read_unknown == "404":
            return _error("Could not get some CONTACT objects, they may be deleted or not exist.",
                          "OBJECT_NOT_FOUND", 404)
        return self._batch_read_answer(results, missing if self.archived_read_unknown == "207" else [])

    def _merged_into(self, cid: str) -> Optional[int]:
        """The live record a merged-away id was merged into (its hs_merged_object_ids names the id)."""
        target = self._merged_index.get(cid)
        record = self.contacts.get(target) if target is not None else None
        if record is None or record["archived"]:
            return None
        if cid not in str(record["properties"].get("hs_merged_object_ids") or "").split(";"):
            return None  # the property was edited since: no longer a merge of it
        return target

    def _batch_read_answer(self, results: List[Dict[str, Any]], missing: List[str]) -> Response:
        out: Dict[str, Any] = {"status": "COMPLETE", "results": results,
                               "startedAt": iso_ms(self.now_ms()), "completedAt": iso_ms(self.now_ms())}
        if missing:
            out["numErrors"] = 1
            out["errors"] = [_batch_error("OBJECT_NOT_FOUND", "Could not get some CONTACT objects, they may be "
                                                              "deleted or not exist.", missing)]
            return self.ok(out, 207)
        return self.ok(out)

    def _property_problem(self, name: str, value: Any) -> Optional[str]:
        prop = next((p for p in self.properties if p["name"] == name), None)
        if prop is None:
            return f"Property \"{name}\" does not exist"
        if prop.get("type") == "enumeration" and value not in (None, ""):
            allowed = {str(o.get("value")) for o in prop.get("options") or []}
            if str(value) not in allowed:
                return f"{value} was not one of the allowed options: {sorted(allowed)}"
        if prop.get("type") == "number" and value not in (None, ""):
            try:
                float(str(value))
            except ValueError:
                return f"{value} is not a valid number"
        return None

    def _item_problem(self, item: Dict[str, Any]) -> Optional[str]:
        """Why one batch-update input cannot be applied (None if it can)."""
        cid = str(item.get("id", ""))
        if (not cid.isdigit() or int(cid) not in self.contacts or self.contacts[int(cid)].get("archived")
                or cid in self.failing_update_ids):  # an archived (deleted) contact is not found, as in HubSpot
            return "Object not found"
        if cid in self.validation_rules:  # enforced on CRM writes from 2026-09 on
            return self.validation_rules[cid]
        return None

    def on_batch_update(self, request: Request, v: str = "") -> Response:
        body = self.json_body(request) or {}
        inputs = body.get("inputs")
        if not isinstance(inputs, list) or not inputs:
            return _error("inputs must not be empty", "VALIDATION_ERROR", 400)
        if len(inputs) > 100:
            return _error("Batch update is limited to 100 inputs", "VALIDATION_ERROR", 400)
        ids = [str(i.get("id", "")) for i in inputs]
        if len(set(ids)) != len(ids):
            return _error("Duplicate IDs found in batch input", "VALIDATION_ERROR", 400)
        for item in inputs:  # a bad property or value fails the whole batch, as HubSpot does
            for name, value in (item.get("properties") or {}).items():
                problem = self._property_problem(name, value)
                if problem:
                    return _error(f"Property values were not valid: {problem}", "VALIDATION_ERROR", 400)
        refused = {str(i.get("id", "")): p for i in inputs for p in [self._item_problem(i)] if p}
        if refused and self.batch_errors == "400":  # the other reading: one bad id fails the batch
            first = next(iter(refused.items()))
            return _error(f"{first[1]} (id {first[0]})", "VALIDATION_ERROR", 400)
        results = []
        for item in inputs:
            cid = str(item.get("id", ""))
            if cid not in refused:
                self.update_contact(cid, item.get("properties") or {})
                results.append(self._render(int(cid), list((item.get("properties") or {}).keys())))
        out: Dict[str, Any] = {"status": "COMPLETE", "results": results,
                               "startedAt": iso_ms(self.now_ms()), "completedAt": iso_ms(self.now_ms())}
        if refused:
            out["numErrors"] = len(refused)
            out["errors"] = [_batch_error("OBJECT_NOT_FOUND" if reason == "Object not found" else "VALIDATION_ERROR",
                                          reason, [cid]) for cid, reason in refused.items()]
            return self.ok(out, 207)
        return self.ok(out)

    def on_list_property_groups(self, request: Request, v: str = "") -> Response:
        return self.ok({"results": self.property_groups})

    def on_create_property_group(self, request: Request, v: str = "") -> Response:
        body = self.json_body(request) or {}
        if not body.get("name") or not body.get("label"):
            return _error("name and label are required", "VALIDATION_ERROR", 400)
        if any(g["name"] == body["name"] for g in self.property_groups):
            return _error("Property group already exists", "OBJECT_ALREADY_EXISTS", 409)
        group = {"name": body["name"], "label": body["label"], "displayOrder": body.get("displayOrder", -1),
                 "archived": False}
        self.property_groups.append(group)
        return self.ok(group, 201)

    def on_list_properties(self, request: Request, v: str = "") -> Response:
        return self.ok({"results": self.properties})

    def on_create_property(self, request: Request, v: str = "") -> Response:
        body = self.json_body(request) or {}
        missing = [k for k in ("name", "label", "type", "fieldType", "groupName") if not body.get(k)]
        if missing:
            return _error(f"Missing required fields: {', '.join(missing)}", "VALIDATION_ERROR", 400)
        if not any(g["name"] == body["groupName"] for g in self.property_groups):
            return _error(f"Property group {body['groupName']} does not exist", "VALIDATION_ERROR", 400)
        if any(p["name"] == body.get("name") for p in self.properties):
            return _error("Property already exists", "OBJECT_ALREADY_EXISTS", 409)
        problem = self._options_problem(body.get("options"))
        if problem:
            return _error(problem, "VALIDATION_ERROR", 400)
        prop = dict(body, hubspotDefined=False, hidden=False, calculated=False)
        prop.setdefault("options", [])
        prop.setdefault("description", "")
        self.properties.append(prop)
        return self.ok(prop, 201)

    @staticmethod
    def _options_problem(options: Any) -> Optional[str]:
        """The spec's OptionInput requires label, value, displayOrder and hidden on every option."""
        if options is None:
            return None
        if not isinstance(options, list):
            return "options must be a list"
        for option in options:
            missing = [k for k in ("label", "value", "displayOrder", "hidden")
                       if not isinstance(option, dict) or k not in option]
            if missing:
                return f"Invalid input JSON: option fields required: {', '.join(missing)}"
        return None

    def on_update_property(self, request: Request, name: str, v: str = "") -> Response:
        body = self.json_body(request) or {}
        prop = next((p for p in self.properties if p["name"] == name), None)
        if prop is None:
            return _error(f"Property {name} does not exist", "OBJECT_NOT_FOUND", 404)
        problem = self._options_problem(body.get("options"))
        if problem:
            return _error(problem, "VALIDATION_ERROR", 400)
        prop.update({k: value for k, value in body.items() if k in ("label", "description", "options", "groupName",
                                                             "hidden", "displayOrder", "fieldType", "type")})
        return self.ok(prop)

    def on_token_info(self, request: Request, v: str = "") -> Response:
        if not self.token_info_answers:
            return self.not_found(request)
        body = self.json_body(request) or {}
        scopes = self.tokens.get(str(body.get("tokenKey") or ""))
        if scopes is None:
            return _error("The token is not a private app access token", "INVALID_AUTHENTICATION", 401)
        return self.ok({"userId": 1, "hubId": self.portal_id, "appId": 1, "scopes": sorted(scopes)})

    def on_account_details(self, request: Request, v: str = "") -> Response:
        if not self.account_info_answers:
            return self.not_found(request)
        return self.ok({"portalId": self.portal_id, "accountType": "STANDARD", "timeZone": "Europe/Ljubljana",
                        "companyCurrency": "EUR", "additionalCurrencies": [], "utcOffset": "+01:00",
                        "utcOffsetMilliseconds": 3600000, "uiDomain": "app-eu1.hubspot.com",
                        "dataHostingLocation": "eu1"})

    def on_memberships(self, request: Request, list_id: str, v: str = "") -> Response:
        if list_id not in self.lists:
            return _error(f"List {list_id} does not exist.", "OBJECT_NOT_FOUND", 404)
        members = self.lists[list_id]
        limit = min(int(request.args.get("limit", "100")), self.membership_page_max)
        offset = int(request.args.get("after") or 0)
        page = members[offset:offset + limit]
        stamp = iso_ms(self.now_ms())
        out: Dict[str, Any] = {"results": [{"recordId": str(m), "membershipTimestamp": stamp} for m in page]}
        cut_short = (offset // max(limit, 1) + 1 == self.short_read_pages
                     and self.short_membership_reads.get(list_id, 0) > 0)
        if cut_short:  # a page without `paging` half-way: the listing looks complete
            self.short_membership_reads[list_id] -= 1
        if offset + limit < len(members) and not cut_short:
            out["paging"] = {"next": {"after": str(offset + limit)}}
        return self.ok(out)

    # -- Communication Preferences (consent by address) ----------------------------------
    def _consent_batch(self, request: Request, render: Any) -> Response:
        """A batch status read: {"inputs": [addresses]} -> one result per known address."""
        with self.lock:
            refusal = self.consent_refusals.popleft() if self.consent_refusals else None
        if refusal == "503":  # an outage (any other entry, "" say, lets the read through)
            return _error("Service unavailable", "SERVICE_UNAVAILABLE", 503)
        if refusal == "plain":
            return _error("This request is not allowed for this portal.", "FORBIDDEN", 403)
        if refusal == "scope":
            return _error("This app hasn't been granted all required scopes to make this call.", "MISSING_SCOPES",
                          403, errors=[{"message": "One or more of the following scopes are required.",
                                        "context": {"requiredGranularScopes": [CONSENT_READ_SCOPE]}}])
        if request.args.get("channel") != "EMAIL":
            return _error("channel is required and must be EMAIL", "VALIDATION_ERROR", 400)
        body = self.json_body(request) or {}
        inputs = body.get("inputs")
        if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
            return _error("Invalid input JSON: inputs must be a list of strings", "VALIDATION_ERROR", 400)
        if len(inputs) > 100:
            return _error("Batch read is limited to 100 inputs", "VALIDATION_ERROR", 400)
        refused = [a for a in inputs if a.lower() in self.refused_addresses]
        if refused:  # unconfirmed how HubSpot meets an address it will not take: the harsher reading
            return _error(f"Invalid email address: {refused[0]}", "VALIDATION_ERROR", 400)
        stamp = iso_ms(self.now_ms())
        results, unknown = [], []
        for address in inputs:
            statuses = self.address_consent.get(address.lower())
            if statuses is None and self.unknown_addresses == "omitted":
                unknown.append(address)
                continue
            results.append(render(address.lower(), statuses or {}, stamp))
        out: Dict[str, Any] = {"status": "COMPLETE", "results": results, "startedAt": stamp, "completedAt": stamp}
        if unknown:
            out["numErrors"] = len(unknown)
            out["errors"] = [_batch_error("OBJECT_NOT_FOUND", "No subscription status for these addresses", unknown)]
            return self.ok(out, 207)
        return self.ok(out)

    def on_consent_wide_read(self, request: Request, v: str = "") -> Response:
        def render(address: str, statuses: Dict[str, str], stamp: str) -> Dict[str, Any]:
            wide = [{"channel": "EMAIL", "status": statuses[ALL], "subscriberIdString": address, "timestamp": stamp,
                     "wideStatusType": "PORTAL_WIDE"}] if ALL in statuses else []
            return {"subscriberIdString": address, "wideStatuses": wide}
        return self._consent_batch(request, render)

    def on_consent_read(self, request: Request, v: str = "") -> Response:
        def render(address: str, statuses: Dict[str, str], stamp: str) -> Dict[str, Any]:
            rows = [{"channel": "EMAIL", "source": "Self Service Resubscription", "status": status,
                     "subscriberIdString": address, "subscriptionId": int(key), "timestamp": stamp}
                    for key, status in sorted(statuses.items()) if key != ALL]
            return {"subscriberIdString": address, "statuses": rows}
        return self._consent_batch(request, render)
    def on_get_list(self, request: Request, list_id: str, v: str = "") -> Response:
        if list_id not in self.lists:
            return _error(f"List {list_id} does not exist.", "OBJECT_NOT_FOUND", 404)
        processing = list_id in self.processing_lists
        size = self.processing_lists[list_id] if processing else len(self.lists[list_id])
        return self.ok({"list": {"listId": list_id, "listVersion": 1, "name": f"List {list_id}", "objectTypeId": "0-1",
                                 "processingStatus": "PROCESSING" if processing else "COMPLETE",
                                 "processingType": "DYNAMIC", "size": size}})

    def on_record_memberships(self, request: Request, v: str = "") -> Response:
        inputs = (self.json_body(request) or {}).get("inputs")
        if not isinstance(inputs, list) or any(not isinstance(i, dict) or not i.get("objectTypeId")
                                               or not i.get("recordId") for i in inputs):
            return _error("Invalid input JSON: inputs need objectTypeId and recordId", "VALIDATION_ERROR", 400)
        if len(inputs) > 100:
            return _error("Batch read is limited to 100 inputs", "VALIDATION_ERROR", 400)
        stamp = iso_ms(self.now_ms())
        results, missing = [], []
        for item in inputs:
            rid = str(item["recordId"])
            live = rid.isdigit() and int(rid) in self.contacts and not self.contacts[int(rid)]["archived"]
            if not live and self.unknown_record_memberships == "207":
                missing.append(rid)
                continue
            lists = [lid for lid, members in self.lists.items() if live and int(rid) in members]
            results.append({"objectTypeId": str(item["objectTypeId"]), "recordId": rid, "recordListMemberships": [
                {"listId": lid, "listVersion": 1, "firstAddedTimestamp": stamp, "lastAddedTimestamp": stamp,
                 "isPublicList": True} for lid in lists]})
        out: Dict[str, Any] = {"status": "COMPLETE", "results": results, "startedAt": stamp, "completedAt": stamp}
        if missing:
            out["numErrors"] = 1
            out["errors"] = [_batch_error("OBJECT_NOT_FOUND", "Could not find some records.", missing)]
            return self.ok(out, 207)
        return self.ok(out)


def filters_match(oid: int, record: Dict[str, Any], group: List[Dict[str, Any]], modified_name: str) -> bool:
    """Whether a record passes one filter group of a CRM search: the one matcher of contacts,
    companies and deals (`modified_name` is the object's last-modified property)."""
    for flt in group:
        name, op, value = flt.get("propertyName"), flt.get("operator"), flt.get("value")
        if name == modified_name:
            left: Any = record["modified"]
            right: Any = parse_time_value(value)
        elif name == "hs_object_id":
            left, right = oid, int(str(value))
        else:
            left, right = record["properties"].get(name), value
            if op == "HAS_PROPERTY":
                if left in (None, ""):
                    return False
                continue
            if left is None:
                return False
        if op == "IN":
            fold = str.lower if name == "email" else str  # email matching ignores case
            if fold(str(left)) not in [fold(str(v)) for v in flt.get("values", [])]:
                return False
            continue
        if op not in _OPERATORS or not _OPERATORS[op](left, right):
            return False
    return True
