"""Reading contacts from HubSpot (CRM v3) through `hubspot-api-client`.

All HubSpot access lives here (HubSpot plans to retire the v3 paths in 2027). The reader yields
plain dicts `{"id": str, "properties": {name: str | None}}`, one at a time.
"""

from __future__ import annotations

import email.utils
import json
import logging
import time
from datetime import datetime, timezone
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Set, Tuple

import urllib3
from hubspot import HubSpot
from hubspot.crm.contacts.exceptions import ApiException as ContactsApiException
from hubspot.crm.lists.exceptions import ApiException as ListsApiException
from hubspot.crm.properties.exceptions import ApiException as PropertiesApiException

from .errors import AbortRun, AuthError, ConfigError
from .http_limits import hubspot_exchange
from .mapping import normalise_email
from .retrying import RetryPolicy, Transient, parse_retry_after

log = logging.getLogger(__name__)

# Each generated API package has its own exception class.
API_EXCEPTIONS = (ContactsApiException, PropertiesApiException, ListsApiException)
PAGE_SIZE = 100  # the list endpoint's maximum
SEARCH_PAGE_SIZE = 200  # the search endpoint's maximum
SEARCH_RESULT_CAP = 10_000  # search refuses to page past this many results of one query
BATCH_READ_SIZE = 100
DEFAULT_INTERVAL_S = 10.0  # the rolling window when no header has told us yet
SEARCH_INTERVAL_S = 0.2  # search allows 5 requests a second per account and sends no headers to pace by

Contact = Dict[str, Any]


def to_epoch_ms(value: Optional[str]) -> Optional[int]:
    """A HubSpot datetime value (ISO 8601 or epoch milliseconds) as epoch milliseconds."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return int(text)
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp() * 1000)


class HubSpotRefused(AbortRun):
    """HubSpot answered a 4xx other than auth or rate limits: the request itself was refused."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def _error_details(body: Any) -> Tuple[str, Dict[str, Any]]:
    """HubSpot's error message and parsed body; every field is optional."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    try:
        data = json.loads(body) if body else {}
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    message = str(data.get("message") or "").strip()
    return message[:300], data


def _missing_scopes(data: Dict[str, Any]) -> List[str]:
    scopes: List[str] = []
    for err in data.get("errors") or []:
        context = err.get("context") if isinstance(err, dict) else None
        if isinstance(context, dict):
            for key in ("requiredGranularScopes", "requiredScopes"):
                scopes.extend(str(s) for s in context.get(key) or [])
    return scopes


class HubSpotReader:
    """Pages through HubSpot contacts within its rate limits, retrying in one layer."""

    def __init__(self, token: str, base_url: str, retry: Optional[RetryPolicy] = None,
                 timeout: Tuple[float, float] = (10.0, 60.0), search_interval: Optional[float] = None,
                 on_wait: Optional[Callable[[str, float], None]] = None) -> None:
        # retry=False turns urllib3's own retries off: retries live in ONE layer (ours).
        client = HubSpot(access_token=token, host=base_url, retry=False)
        # Each attribute access builds a new ApiClient and pool: build them once.
        self._basic = client.crm.contacts.basic_api
        self._search = client.crm.contacts.search_api
        self._batch = client.crm.contacts.batch_api
        self._properties = client.crm.properties.core_api
        self._memberships = client.crm.lists.memberships_api
        self._property_groups = client.crm.properties.groups_api
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self.search_interval = SEARCH_INTERVAL_S if search_interval is None else search_interval
        self.on_wait = on_wait
        self.requests = 0
        self.server_time: Optional[float] = None  # epoch seconds from the first answer's Date header
        self._remaining: Optional[int] = None
        self._max: Optional[int] = None
        self._interval_s = DEFAULT_INTERVAL_S
        self._last_search = 0.0
        self.search_total: Optional[int] = None  # `total` of the latest search page (for an ETA)

    # -- one request -----------------------------------------------------------------------
    def _call(self, what: str, func: Callable[..., Any], *args: Any, search: bool = False, **kwargs: Any) -> Any:
        def attempt() -> Any:
            self._pace(search)
            self.requests += 1
            try:
                response, raw = hubspot_exchange(func, *args, timeout=self.timeout, **kwargs)  # bounded
            except API_EXCEPTIONS as exc:
                raise self._classify(exc, what) from None
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                raise Transient(f"network error ({exc.__class__.__name__})") from None
            self._note_headers(response.headers, search)
            try:
                data = json.loads(raw)
            except ValueError:
                raise Transient("HubSpot sent a body that is not JSON") from None
            # Every answer used here is an object, with `results` a list when present: anything
            # else is a proxy's or a glitch's doing, worth another try.
            if not isinstance(data, dict) or not isinstance(data.get("results", []), (list, type(None))):
                raise Transient("HubSpot sent an answer of an unexpected shape")
            return data

        try:
            return self.retry.call(attempt, f"HubSpot {what}", log, self.on_wait)
        except Transient as exc:
            raise AbortRun(f"HubSpot kept failing on {what} ({exc.reason}); stopped, the next run continues "
                           f"where this one stopped") from None

    def _classify(self, exc: Any, what: str) -> Exception:
        """Turn a client exception into Transient (retry) or a run-ending error, in one place."""
        status = int(getattr(exc, "status", 0) or 0)
        message, data = _error_details(getattr(exc, "body", None))
        headers = getattr(exc, "headers", None) or {}
        if status == 429:
            self._note_headers(headers, search=False)  # a 429 can still say how long the window is
            policy = str(data.get("policyName") or "").upper()
            if policy == "DAILY":
                return AbortRun("HubSpot's daily API limit is used up; the next run after midnight "
                                "(account time zone) continues where this one stopped")
            retry_after = parse_retry_after(headers.get("Retry-After"))
            if retry_after is None and policy == "TEN_SECONDLY_ROLLING":
                retry_after = self._interval_s  # wait for the rolling window to clear
            return Transient(f"rate limited ({policy or '429'})", retry_after, rate_limited=True)
        if status in (401, 403):
            scopes = _missing_scopes(data)
            detail = f"missing scope {', '.join(scopes)}" if scopes else (message or f"HTTP {status}")
            return AuthError(f"HubSpot rejected the access token: {detail}")
        if status == 0 or status >= 500:
            return Transient(f"HubSpot answered {status or 'with a connection error'}")
        return HubSpotRefused(f"HubSpot refused {what} (HTTP {status}): {message or 'no reason given'}", status)

    def _note_headers(self, headers: Any, search: bool) -> None:
        if self.server_time is None and headers.get("Date"):
            try:
                self.server_time = email.utils.parsedate_to_datetime(headers["Date"]).timestamp()
            except (TypeError, ValueError):
                pass
        if search:
            return
        try:
            self._remaining = int(headers["X-HubSpot-RateLimit-Remaining"])
            self._max = int(headers["X-HubSpot-RateLimit-Max"])
            self._interval_s = int(headers["X-HubSpot-RateLimit-Interval-Milliseconds"]) / 1000
        except (KeyError, TypeError, ValueError):
            pass

    def _pace(self, search: bool) -> None:
        """Spread requests so the limits are rarely hit (429s should be rare, not routine)."""
        if search:
            wait = self._last_search + self.search_interval - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self._last_search = time.monotonic()
        elif self._remaining is not None and self._max and self._remaining < max(1, self._max // 10):
            # Close to the rolling limit: go at the sustainable rate of one slot per max/interval.
            time.sleep(self._interval_s / self._max)

    # -- contacts --------------------------------------------------------------------------
    @staticmethod
    def _contact(raw: Dict[str, Any]) -> Contact:
        props = raw.get("properties")
        return {"id": str(raw.get("id", "")), "properties": props if isinstance(props, dict) else {},
                "archived": bool(raw.get("archived", False))}

    def _contacts_of(self, page: Dict[str, Any]) -> List[Contact]:
        """The page's contacts; an entry without a usable id cannot be synced and is reported."""
        out = []
        for raw in page.get("results") or []:
            if isinstance(raw, dict) and str(raw.get("id") or "").isdigit():
                out.append(self._contact(raw))
            else:
                log.warning("HubSpot sent a contact entry without an id; skipped: %.80r", raw)
        return out

    @staticmethod
    def _next_after(page: Dict[str, Any]) -> Optional[str]:
        paging = page.get("paging")
        following = paging.get("next") if isinstance(paging, dict) else None
        after = following.get("after") if isinstance(following, dict) else None
        return str(after) if after not in (None, "") else None

    def iter_contacts(self, properties: List[str], archived: bool = False) -> Iterator[Contact]:
        """Every contact, 100 a page; only the properties asked for."""
        after: Optional[str] = None
        extra = {"archived": "true"} if archived else {}  # the client would send "False"/"True"
        while True:
            kwargs: Dict[str, Any] = {"limit": PAGE_SIZE, "properties": properties, **extra}
            if after:
                kwargs["after"] = after
            page = self._call("contact listing", self._basic.get_page, **kwargs)
            yield from self._contacts_of(page)
            next_after = self._next_after(page)
            if not next_after or next_after == after:  # a repeated cursor would loop forever
                return
            after = next_after

    def _search_page(self, filters: List[Dict[str, Any]], sort: str, properties: List[str],
                     after: int) -> Dict[str, Any]:
        body: Dict[str, Any] = {
            "filterGroups": [{"filters": filters}],
            "sorts": [{"propertyName": sort, "direction": "ASCENDING"}],
            "properties": properties,
            "limit": SEARCH_PAGE_SIZE,
        }
        if after:
            body["after"] = str(after)
        page = self._call("contact search", self._search.do_search, body, search=True)
        if not after and isinstance(page.get("total"), int):
            self.search_total = page["total"]
        return page

    def count_contacts(self) -> Optional[int]:
        """How many contacts there are (one search request; the listing has no total)."""
        body = {"filterGroups": [], "properties": ["email"], "limit": 1}
        page = self._call("contact count", self._search.do_search, body, search=True)
        total = page.get("total")
        return total if isinstance(total, int) else None

    def _search_all(self, filters: List[Dict[str, Any]], sort: str,
                    properties: List[str]) -> Iterator[Tuple[Contact, bool]]:
        """One query's results up to the cap; the flag says whether the cap cut it short."""
        after = 0
        while True:
            page = self._search_page(filters, sort, properties, after)
            results = self._contacts_of(page)
            next_after = self._next_after(page)
            if next_after is not None and not next_after.isdigit():
                raise AbortRun(f"HubSpot's search paging went wrong (after={next_after[:20]!r}); run again")
            capped = next_after is not None and int(next_after) + SEARCH_PAGE_SIZE > SEARCH_RESULT_CAP
            for i, contact in enumerate(results):
                yield contact, capped and i == len(results) - 1
            if next_after is None or capped or not results or int(next_after) <= after:
                return
            after = int(next_after)

    def search_modified_since(self, since_ms: int, properties: List[str]) -> Iterator[Contact]:
        """Contacts with lastmodifieddate >= since_ms, oldest change first, past the 10,000 cap.

        When a query reaches the cap, a new one starts from the last seen lastmodifieddate,
        skipping the ids already given at that instant; if a whole capped query shares one
        instant, that instant is walked by hs_object_id instead.
        """
        props = sorted(set(properties) | {"lastmodifieddate"})
        start, seen_at_start = since_ms, set()  # type: Tuple[int, Set[str]]
        while True:
            last_ms, ids_at_last, capped = start, set(seen_at_start), False
            date_filter = [{"propertyName": "lastmodifieddate", "operator": "GTE", "value": str(start)}]
            for contact, at_cap in self._search_all(date_filter, "lastmodifieddate", props):
                capped = at_cap
                ms =  to_epoch_ms(contact["properties"].get("lastmodifieddate")) or start
                if ms == start and contact["id"] in seen_at_start:
                    continue
                yield contact
                if ms != last_ms:
                    last_ms, ids_at_last = ms, set()
                ids_at_last.add(contact["id"])
            if not capped:
                return
            if last_ms == start:  # no progress past one instant: walk it by id
                yield from self._walk_instant(start, ids_at_last, props)
                start, seen_at_start = start + 1, set()
            else:
                start, seen_at_start = last_ms, ids_at_last

    def _walk_instant(self, instant_ms: int, already: Set[str], props: List[str]) -> Iterator[Contact]:
        last_id = 0
        while True:
            filters = [{"propertyName": "lastmodifieddate", "operator": "EQ", "value": str(instant_ms)},
                       {"propertyName": "hs_object_id", "operator": "GT", "value": str(last_id)}]
            capped = False
            for contact, at_cap in self._search_all(filters, "hs_object_id", props):
                capped = at_cap
                last_id = max(last_id, int(contact["id"]))
                if contact["id"] not in already:
                    yield contact
            if not capped:
                return

    def contacts_with_email(self, email: str, properties: List[str]) -> List[Contact]:
        """Live contacts whose primary address is `email` (one search; case is ignored)."""
        filters = [{"propertyName": "email", "operator": "IN", "values": [email]}]
        return [contact for contact, _ in self._search_all(filters, "hs_object_id", properties)]

    def read_by_ids(self, ids: Iterable[str], properties: List[str]) -> Iterator[Contact]:
        """Contacts by id, 100 a request; ids that no longer exist are simply absent."""
        batch: List[str] = []
        for cid in ids:
            batch.append(cid)
            if len(batch) == BATCH_READ_SIZE:
                yield from self._read_batch(batch, properties)
                batch = []
        if batch:
            yield from self._read_batch(batch, properties)

    def _read_batch(self, ids: List[str], properties: List[str]) -> Iterator[Contact]:
        body = {"inputs": [{"id": i} for i in ids], "properties": properties}
        page = self._call("contact batch read", self._batch.read, body)
        yield from self._contacts_of(page)

    def list_members(self, list_id: str) -> Iterator[int]:
        """Record ids of a list's members (Lists v3 memberships, 250 a page)."""
        after: Optional[str] = None
        while True:
            kwargs: Dict[str, Any] = {"limit": 250}
            if after:
                kwargs["after"] = after
            try:
                page = self._call(f"list {list_id} memberships", self._memberships.get_page, list_id, **kwargs)
            except HubSpotRefused as exc:
                if exc.status == 404:
                    raise ConfigError(f"HubSpot has no list with id {list_id}; check the mapping file") from None
                raise
            for member in page.get("results") or []:
                record = str(member.get("recordId", "")) if isinstance(member, dict) else ""
                if record.isdigit():
                    yield int(record)
            next_after = self._next_after(page)
            if not next_after or next_after == after:
                return
            after = next_after

    def property_definitions(self) -> Dict[str, Dict[str, Any]]:
        """Contact property definitions by name (type, label, options)."""
        page = self._call("property definitions", self._properties.get_all, "contacts")
        return {str(p["name"]): p for p in page.get("results") or [] if isinstance(p, dict) and p.get("name")}


WRITE_BACK_GROUP = {"name": "mailerlite", "label": "MailerLite", "displayOrder": -1}
STATUS_PROPERTY = "mailerlite_status"
CHANGED_PROPERTY = "mailerlite_status_changed_at"
WRITE_BACK_PROPERTIES = (
    {"name": STATUS_PROPERTY, "label": "MailerLite status", "type": "enumeration", "fieldType": "select",
     "groupName": "mailerlite",
     "description": "Set by hubspot-mailerlite-sync when the subscriber unsubscribed, bounced or reported spam "
                    "in MailerLite. It does not change HubSpot's own subscription status.",
     "options": [{"label": "Unsubscribed", "value": "unsubscribed", "displayOrder": 0},
                 {"label": "Bounced", "value": "bounced", "displayOrder": 1},
                 {"label": "Spam complaint (junk)", "value": "junk", "displayOrder": 2}]},
    {"name": CHANGED_PROPERTY, "label": "MailerLite status changed at", "type": "datetime", "fieldType": "date",
     "groupName": "mailerlite",
     "description": "When MailerLite recorded the status in 'MailerLite status'."},
)
EMAIL_SEARCH_CHUNK = 100


class HubSpotWriter(HubSpotReader):
    """What write-back needs on top of reading: properties of its own, and batch updates."""

    def ensure_write_back_properties(self) -> List[str]:
        """Create the property group and properties if missing; returns what it created."""
        made: List[str] = []
        groups = self._call("property groups", self._property_groups.get_all, "contacts")
        if not any(isinstance(g, dict) and g.get("name") == WRITE_BACK_GROUP["name"]
                   for g in groups.get("results") or []):
            self._call("property group creation", self._property_groups.create, "contacts", dict(WRITE_BACK_GROUP))
            made.append(f"group {WRITE_BACK_GROUP['name']}")
        existing = self.property_definitions()
        for prop in WRITE_BACK_PROPERTIES:
            if prop["name"] not in existing:
                self._call("property creation", self._properties.create, "contacts", dict(prop))
                made.append(str(prop["name"]))
        return made

    def ids_by_email(self, emails: List[str]) -> Dict[str, str]:
        """HubSpot contact ids for these addresses (search, 100 addresses a query)."""
        found: Dict[str, str] = {}
        for start in range(0, len(emails), EMAIL_SEARCH_CHUNK):
            chunk = emails[start:start + EMAIL_SEARCH_CHUNK]
            filters = [{"propertyName": "email", "operator": "IN", "values": chunk}]
            for contact, _ in self._search_all(filters, "hs_object_id", ["email"]):
                email = normalise_email(contact["properties"].get("email"))
                if email and email not in found:  # sorted by id: the oldest contact with the address
                    found[email] = contact["id"]
        return found

    def update_contacts(self, inputs: List[Dict[str, Any]]) -> Set[str]:
        """Batch update (at most 100); returns the ids HubSpot reported as failed (207)."""
        page = self._call("contact batch update", self._batch.update, {"inputs": inputs})
        failed: Set[str] = set()
        for error in page.get("errors") or []:
            context = error.get("context") if isinstance(error, dict) else None
            if isinstance(context, dict):
                failed.update(str(i) for i in context.get("ids") or [])
        done = {str(r.get("id")) for r in page.get("results") or [] if isinstance(r, dict)}
        failed.update(str(i["id"]) for i in inputs if str(i["id"]) not in done)
        return failed

    def missing_write_scopes(self) -> List[str]:
        """Probe, writing nothing, whether the token may write contacts and create properties:
        an empty batch update and an incomplete property are refused with 403 when a scope is
        missing and with 400 otherwise."""
        missing = []
        probes = (("crm.objects.contacts.write", self._batch.update, ({"inputs": []},)),
                  ("crm.schemas.contacts.write", self._properties.create, ("contacts", {"name": ""})))
        for scope, func, args in probes:
            try:
                self._call(f"scope check for {scope}", func, *args)
            except AuthError:
                missing.append(scope)
            except HubSpotRefused:
                pass  # a 400: the scope is there, the probe was (deliberately) invalid
        return missing
