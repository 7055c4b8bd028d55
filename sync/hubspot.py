"""Reading contacts from HubSpot (and, for write-back, writing two properties) on the date-based API.

All HubSpot access lives here. Requests go through `hubspot-api-client`'s ApiClient, which holds
the token, the connection pool and the TLS settings; the paths are our own, because the client's
generated APIs are pinned to the /crm/v3 paths HubSpot retires in September 2027. The reader
yields plain dicts `{"id": str, "properties": {name: str | None}, "archived": bool}`.
"""

from __future__ import annotations

import email.utils
import json
import logging
import time
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Set, Tuple
from urllib.parse import quote, urlsplit

import urllib3
from hubspot import HubSpot  # type: ignore[import-untyped]
from hubspot.crm.contacts.exceptions import ApiException  # type: ignore[import-untyped]

from . import hubspot_schema as hs
from .casting import property_options, to_epoch_ms
from .endpoints import connection_refused, endpoint_label, network_failure
from .errors import AbortRun, AuthError, ConfigError
from .http_limits import bound_api_client, decode
from .hubspot_answers import (
    AUTH,
    DAILY_LIMIT,
    MISSING_SCOPES,
    NOT_FOUND_WORDS,
    OK,
    RATE_LIMITED,
    RETRY,
    Verdict,
    classify,
)
from .hubspot_paging import (
    CONTACT_STAMP,
    SearchKey,
    is_record_id,
    next_cursor,
    next_search_key,
    paginate,
    results_of,
    search_filters,
)
from .mapping import normalise_email
from .retrying import RetryPolicy, Transient
from .tunables import DEFAULTS, Tunables

log = logging.getLogger(__name__)

__all__ = ["Contact", "HubSpotReader", "HubSpotWriter", "HubSpotRefused", "engagement_property_problem", "to_epoch_ms"]

Contact = Dict[str, Any]


class HubSpotRefused(AbortRun):
    """HubSpot refused a request with a 4xx other than auth or rate limits."""

    def __init__(self, message: str, status: int, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason or message


class MissingScopes(AuthError):
    """HubSpot refused the token for a scope it lacks (the token itself is valid)."""


class HubSpotOutage(AbortRun):
    """HubSpot kept failing on one request past its retries (5xx, dropped connections, garbled
    answers): the run stops, unless the caller can do without that answer (consent/by_address.py)."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason


class TLSFailure(AbortRun):
    """The server's certificate could not be verified: retrying cannot help, nor is it safe to go on."""


def _exception_for(verdict: Verdict, what: str, interval_s: float, token_origin: str = "") -> Exception:
    """The exception a non-OK verdict raises inside a request's retried attempt; `token_origin`
    (the setting and the file it was read from) is added when the token itself is refused."""
    if verdict.kind == RATE_LIMITED:
        wait = verdict.retry_after
        if wait is None and verdict.policy == "TEN_SECONDLY_ROLLING":
            wait = interval_s  # wait for the rolling window to clear
        return Transient(verdict.reason, wait, rate_limited=True)
    if verdict.kind == DAILY_LIMIT:
        return AbortRun("HubSpot's daily API limit is used up; the next run after midnight "
                        "(account time zone) continues where this one stopped")
    if verdict.kind == RETRY:
        return Transient(verdict.reason, verdict.retry_after)
    if verdict.kind == MISSING_SCOPES:
        detail = f"missing scope {', '.join(verdict.scopes)}" if verdict.scopes else verdict.reason
        return MissingScopes(f"HubSpot rejected the access token: {detail}")
    if verdict.kind == AUTH:
        origin = f" ({token_origin}; check it, or make a new token)" if token_origin else ""
        return AuthError(f"HubSpot rejected the access token: {verdict.reason}{origin}")
    return HubSpotRefused(f"HubSpot refused {what} (HTTP {verdict.status}): {verdict.reason}", verdict.status,
                          verdict.reason)


def _batches(ids: Iterable[str], size: int) -> Iterator[List[str]]:
    """Ids in lists of at most `size`, in their order, without holding them all."""
    batch: List[str] = []
    for cid in ids:
        batch.append(cid)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _require_object(data: Any) -> Dict[str, Any]:
    if not isinstance(data, dict):
        raise Transient("HubSpot sent an answer of an unexpected shape")
    return data


class HubSpotReader:
    """Pages through HubSpot contacts within its rate limits, retrying in one layer."""

    def __init__(self, token: str, base_url: str, retry: Optional[RetryPolicy] = None,
                 timeout: Tuple[float, float] = (10.0, 60.0), on_wait: Optional[Callable[[str, float], None]] = None,
                 api_version: str = hs.DEFAULT_API_VERSION, tunables: Tunables = DEFAULTS,
                 sleep: Callable[[float], None] = time.sleep, endpoint: str = "", token_origin: str = "") -> None:
        """`retry` defaults to one built from `tunables`; `sleep` is the pacing's (not the retries').
        `endpoint` (host, port and the setting that chose them) and `token_origin` (the token's
        setting and where it was read) are named in network errors and token refusals."""
        # retry=False turns urllib3's own retries off: retries live in ONE layer (ours).
        client = HubSpot(access_token=token, host=base_url, retry=False)
        # Any generated API's ApiClient sends any path with the token, pool and TLS settings.
        # Build it once: each attribute access builds a new ApiClient and pool.
        self._http = client.crm.contacts.basic_api.api_client
        # Every answer, error answers too, read within the total time and the size cap.
        bound_api_client(self._http, tunables.max_body_bytes)
        self._token = token
        self._base_url = base_url.rstrip("/")
        self._host = urlsplit(base_url).hostname or base_url
        self._endpoint = endpoint or endpoint_label(base_url)
        self._token_origin = token_origin
        self.api_version = api_version
        self.retry = retry or RetryPolicy.from_tunables(tunables)
        self.timeout = timeout
        self.search_interval = tunables.search_interval_s
        self._sleep = sleep
        self.on_wait = on_wait
        self.requests = 0
        self.server_time: Optional[float] = None  # epoch seconds from the first answer's Date header
        self._remaining: Optional[int] = None
        self._max: Optional[int] = None
        self._interval_s = hs.DEFAULT_INTERVAL_S
        self._last_search = 0.0
        self.search_total: Optional[int] = None  # `total` of the first search page (for an ETA)

    def _path(self, template: str, **parts: str) -> str:
        return template.format(v=self.api_version, **{k: quote(v, safe="") for k, v in parts.items()})

    # -- one request -----------------------------------------------------------------------
    def _exchange(self, method: str, path: str, query: Optional[List[Tuple[str, str]]],
                  body: Optional[Dict[str, Any]]) -> Tuple[int, Any, str]:
        """One HTTP exchange through the client's ApiClient: (status, headers, raw body).

        Network failures are Transient; a TLS failure ends the run. The ApiClient's `request` (not
        `call_api`) is used: `call_api` turns an SSLError into "unexpected AttributeError" (it
        decodes a body that is None) and deserialises into models the sync does not use."""
        headers = dict(self._http.default_headers, Accept="application/json")
        headers["Content-Type"] = "application/json"
        self._http.update_params_for_auth(headers, [], ["oauth2"])
        try:
            response = self._http.request(method, self._base_url + path, query_params=query or None,
                                          headers=headers, body=body, _preload_content=False,
                                          _request_timeout=self.timeout)
            # Decoded with surrogateescape: one contact's invalid bytes cannot make a page unreadable.
            return response.status, response.headers, decode(response.data)
        except ApiException as exc:  # the client raises for every non-2xx status, body read
            if exc.status:
                answer = exc.body or b""
                return int(exc.status), exc.headers or {}, decode(answer) if isinstance(answer, bytes) else str(answer)
            reason = str(exc.reason or "")
            if "SSLError" in reason or "CERTIFICATE" in reason.upper():  # how the client reports TLS failures
                if "CERTIFICATE_VERIFY_FAILED" in reason.upper():
                    raise TLSFailure(f"TLS certificate verification failed for {self._host}") from None
                raise TLSFailure(f"TLS connection to {self._host} failed") from None
            raise Transient(network_failure(self._endpoint, reason), refused=connection_refused(reason)) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            text = f"{exc.__class__.__name__} {exc}"
            raise Transient(network_failure(self._endpoint, text), refused=connection_refused(text)) from None

    def _call(self, what: str, method: str, path: str, query: Optional[List[Tuple[str, str]]] = None,
              body: Optional[Dict[str, Any]] = None, search: bool = False,
              check: Callable[[Dict[str, Any]], Any] = _require_object) -> Any:
        """One request, retried; `check` runs inside each attempt, so a garbled answer is asked again.
        Returns what `check` returns (by default the answer, a dict)."""

        def attempt() -> Any:
            self._pace(search)
            self.requests += 1
            status, headers, raw = self._exchange(method, path, query, body)
            self._note_headers(headers, search)
            verdict = classify(status, raw, headers)
            if verdict.kind != OK:
                raise _exception_for(verdict, what, self._interval_s, self._token_origin)
            try:
                data = json.loads(raw)
            except ValueError:
                raise Transient("HubSpot sent a body that is not JSON") from None
            return check(_require_object(data))

        try:
            return self.retry.call(attempt, f"HubSpot {what}", log, self.on_wait)
        except Transient as exc:
            raise HubSpotOutage(f"HubSpot kept failing on {what} ({exc.reason}); stopped, the next run continues "
                                f"where this one stopped", exc.reason) from None

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
                self._sleep(wait)
            self._last_search = time.monotonic()
        elif self._remaining is not None and self._max and self._remaining < max(1, self._max // 10):
            # Close to the rolling limit: go at the sustainable rate of one slot per max/interval.
            self._sleep(self._interval_s / self._max)

    # -- contacts --------------------------------------------------------------------------
    @staticmethod
    def _contacts_of(results: List[Any]) -> List[Contact]:
        """The page's contacts; an entry without a plain numeric id cannot be synced and is reported."""
        out = []
        for raw in results:
            if isinstance(raw, dict) and is_record_id(raw.get("id")):
                props = raw.get("properties")
                out.append({"id": str(raw["id"]), "properties": props if isinstance(props, dict) else {},
                            "archived": raw.get("archived") is True})
            else:
                shown = raw.get("id") if isinstance(raw, dict) else type(raw).__name__
                log.warning("HubSpot sent a contact entry without a usable id (%.40r); skipped", shown)
        return out

    def _cursor_pages(self, what: str, path: str, query: List[Tuple[str, str]]) -> Iterator[List[Any]]:
        """A listing paged by HubSpot's `after` cursor."""

        def fetch(after: Optional[str], seen: Set[Optional[str]]) -> Tuple[List[Any], Optional[str]]:
            params = query + ([("after", after)] if after else [])

            def check(page: Dict[str, Any]) -> Tuple[List[Any], Optional[str]]:
                return results_of(page), next_cursor(page, {s for s in seen if s})

            return self._call(what, "GET", path, params, check=check)

        return paginate(fetch, None)

    def iter_contacts(self, properties: List[str], archived: bool = False) -> Iterator[Contact]:
        """Every contact, 100 a page; only the properties asked for."""
        query = [("limit", str(hs.PAGE_SIZE))] + [("properties", p) for p in properties]
        if archived:
            query.append(("archived", "true"))  # the spec's boolean; the client would send "True"
        what = "archived contact listing" if archived else "contact listing"
        for results in self._cursor_pages(what, self._path(hs.CONTACTS_PATH), query):
            yield from self._contacts_of(results)

    def _search_pages(self, what: str, base: List[Dict[str, Any]], properties: List[str],
                      first: SearchKey, path: str = hs.SEARCH_PATH,
                      stamp: str = CONTACT_STAMP) -> Iterator[List[Any]]:
        """A search paged by keyset (see hubspot_paging): never by offset over a live index. `path`
        and `stamp` (its modification-time property) for another object's search."""

        def fetch(key: SearchKey, seen: Set[SearchKey]) -> Tuple[List[Any], Optional[SearchKey]]:
            filters, sort = search_filters(key, base, stamp)
            body = {"filterGroups": [{"filters": filters}], "sorts": [sort], "properties": properties,
                    "limit": hs.SEARCH_PAGE_SIZE, "after": "0"}

            def check(page: Dict[str, Any]) -> Tuple[List[Any], Optional[SearchKey]]:
                results = results_of(page)
                more = next_cursor(page, set()) is not None
                if path == hs.SEARCH_PATH and self.search_total is None and isinstance(page.get("total"), int):
                    self.search_total = page["total"]
                return results, next_search_key(key, results, more, seen, stamp)

            return self._call(what, "POST", self._path(path), body=body, search=True, check=check)

        return paginate(fetch, first)

    def count_contacts(self) -> Optional[int]:
        """How many contacts there are (one search request; the listing has no total)."""
        body = {"filterGroups": [], "sorts": [], "properties": ["email"], "limit": 1, "after": "0"}
        page = self._call("contact count", "POST", self._path(hs.SEARCH_PATH), body=body, search=True)
        total = page.get("total")
        return total if isinstance(total, int) and not isinstance(total, bool) else None

    def search_modified_since(self, since_ms: int, properties: List[str]) -> Iterator[Contact]:
        """Contacts with lastmodifieddate >= since_ms, oldest change first.

        Keyset paging asks again from the newest instant read, so the contacts of that instant
        come twice: only they are remembered, never every id read (a run after a mass edit of a
        million contacts stays as small as any other). A contact edited while this runs comes
        again later with its new data, which is then what MailerLite gets.
        """
        props = sorted(set(properties) | {"lastmodifieddate"})
        newest: Optional[int] = None
        at_newest: Set[str] = set()  # ids read at the newest instant so far
        for results in self._search_pages("contact search", [], props, ("GTE", since_ms, 0)):
            for contact in self._contacts_of(results):
                ms = to_epoch_ms(contact["properties"].get("lastmodifieddate"))
                if ms is not None and (newest is None or ms > newest):
                    newest, at_newest = ms, set()
                if contact["id"] not in at_newest:
                    at_newest.add(contact["id"])
                    yield contact

    def contacts_with_email(self, email: str, properties: List[str]) -> List[Contact]:
        """Live contacts whose primary address is `email` (one search; case is ignored)."""
        base = [{"propertyName": "email", "operator": "IN", "values": [email]}]
        props = sorted(set(properties) | {"email"})
        return [contact for results in self._search_pages("contact search by email", base, props, ("ID", 0, 0))
                for contact in self._contacts_of(results)]

    def read_by_ids(self, ids: Iterable[str], properties: List[str]) -> Iterator[Contact]:
        """Contacts by id, 100 a request; ids that no longer exist are simply absent."""
        for batch in _batches(ids, hs.BATCH_READ_SIZE):
            yield from self._read_batch(batch, properties)

    def read_archived_by_ids(self, ids: Iterable[str], properties: List[str]) -> Iterator[Contact]:
        """Archived (deleted) contacts by id, 100 a request. Ids HubSpot does not answer (live, purged
        90 days after the delete, GDPR-deleted) are simply absent; a merged-away id may come as the
        record it was merged into, under that record's id (unconfirmed): callers match the ids."""
        for batch in _batches(ids, hs.BATCH_READ_SIZE):
            yield from self._read_archived(batch, properties)

    def _read_archived(self, ids: List[str], properties: List[str]) -> List[Contact]:
        try:
            return self._read_batch(ids, properties, archived=True)
        except HubSpotRefused:
            # Unconfirmed: an id it cannot answer may fail the whole batch (a 404) rather than be named
            # in a 207's errors: halve until the refused id stands alone, unanswered.
            if len(ids) == 1:
                return []
            half = len(ids) // 2
            return self._read_archived(ids[:half], properties) + self._read_archived(ids[half:], properties)

    def _read_batch(self, ids: List[str], properties: List[str], archived: bool = False) -> List[Contact]:
        # propertiesWithHistory is required by the published spec: none wanted.
        body = {"inputs": [{"id": i} for i in ids], "properties": properties, "propertiesWithHistory": []}
        query = [("archived", "true")] if archived else None  # the spec's boolean, as in iter_contacts
        what = "archived contact batch read" if archived else "contact batch read"
        results = self._call(what, "POST", self._path(hs.BATCH_READ_PATH), query, body=body, check=results_of)
        return self._contacts_of(results)

    def list_members(self, list_id: str) -> Iterator[int]:
        """Record ids of a list's members (250 a page)."""
        path = self._path(hs.LIST_MEMBERSHIPS_PATH, list_id=list_id)
        query = [("limit", str(hs.MEMBERSHIPS_PAGE_SIZE))]
        try:
            for results in self._cursor_pages(f"list {list_id} memberships", path, query):
                for member in results:
                    record = member.get("recordId") if isinstance(member, dict) else None
                    if is_record_id(record):
                        yield int(str(record))
        except HubSpotRefused as exc:
            if exc.status == 404:
                raise ConfigError(f"HubSpot has no list with id {list_id}; check the mapping file") from None
            raise

    def granted_scopes(self) -> Optional[Set[str]]:
        """The token's scopes from HubSpot's token-information endpoint; None where it does not
        answer (service keys, perhaps): unknown, never taken for missing."""
        try:
            data = self._call("token information", "POST", hs.TOKEN_INFO_PATH, body={"tokenKey": self._token})
        except (HubSpotRefused, AuthError):
            return None
        scopes = data.get("scopes")
        return {str(s) for s in scopes} if isinstance(scopes, list) else None

    def consent_batch(self, what: str, template: str, emails: List[str]) -> List[Any]:
        """One Communication Preferences batch read (sync/consent/by_address.py reads its answer)."""
        return self._call(what, "POST", self._path(template), [("channel", "EMAIL")], body={"inputs": emails},
                          check=results_of)
    def list_size(self, list_id: str) -> Tuple[Optional[int], bool]:
        """A list's own member count, and whether it is settled (processingStatus COMPLETE): a
        membership listing shorter than a settled size was cut short, not left."""
        answer = self._call(f"list {list_id}", "GET", self._path(hs.LIST_PATH, list_id=list_id))
        found = answer.get("list")
        found = found if isinstance(found, dict) else {}
        size = found.get("size")
        settled = found.get("processingStatus") == hs.LIST_PROCESSED
        return (size if isinstance(size, int) and not isinstance(size, bool) else None), settled

    def lists_of(self, record_ids: Iterable[int]) -> Dict[int, Set[str]]:
        """The lists each contact is in, for the ids HubSpot answered about (an id it does not
        answer for is absent: no evidence either way), 100 a request."""
        ids = sorted(set(record_ids))
        found: Dict[int, Set[str]] = {}
        for start in range(0, len(ids), hs.MEMBERSHIPS_BATCH_SIZE):
            body = {"inputs": [{"objectTypeId": hs.CONTACT_OBJECT_TYPE, "recordId": str(i)}
                               for i in ids[start:start + hs.MEMBERSHIPS_BATCH_SIZE]]}
            results = self._call("list memberships batch read", "POST", self._path(hs.RECORD_MEMBERSHIPS_PATH),
                                 body=body, check=results_of)
            for item in results:
                record = item.get("recordId") if isinstance(item, dict) else None
                lists = item.get("recordListMemberships") if isinstance(item, dict) else None
                if is_record_id(record) and isinstance(lists, list):
                    found[int(str(record))] = {str(m.get("listId")) for m in lists if isinstance(m, dict)}
        return found
    def portal_id(self) -> Optional[str]:
        """The HubSpot account (portal) the token belongs to, from the account details; None where
        they are not answered (unknown, never taken for a mismatch). A refused token stops the run."""
        try:
            data = self._call("account details", "GET", self._path(hs.ACCOUNT_DETAILS_PATH))
        except (HubSpotRefused, MissingScopes):
            return None
        portal = data.get("portalId")
        return str(portal) if isinstance(portal, (int, str)) and str(portal).strip() else None

    def property_definitions(self) -> Dict[str, Dict[str, Any]]:
        """Contact property definitions by name (type, label, options)."""
        results = self._call("property definitions", "GET", self._path(hs.PROPERTIES_PATH), check=results_of)
        return {p["name"]: p for p in results if isinstance(p, dict) and isinstance(p.get("name"), str)}


def missing_status_options(definition: Dict[str, Any]) -> List[str]:
    """Values of the sync's status options that an existing mailerlite_status property lacks."""
    have = {str(o.get("value")) for o in property_options(definition)}
    return [str(o["value"]) for o in hs.STATUS_OPTIONS if o["value"] not in have]


def status_property_problem(definition: Dict[str, Any]) -> Optional[str]:
    """Why an existing mailerlite_status property cannot take the sync's values (None if it can)."""
    if definition.get("type") != "enumeration":
        return (f"HubSpot property {hs.STATUS_PROPERTY} exists with type {str(definition.get('type'))[:30]!r}; "
                f"write-back needs an enumeration: rename or delete that property in HubSpot")
    if "options" in definition and not isinstance(definition.get("options"), list):
        return f"HubSpot sent the options of property {hs.STATUS_PROPERTY} in an unexpected shape; run again"
    return None


def engagement_property_problem(definition: Dict[str, Any]) -> Optional[str]:
    """Why an existing engagement property cannot take the sync's values (None if it can)."""
    want = next((p for p in hs.ENGAGEMENT_PROPERTIES if p["name"] == definition.get("name")), None)
    if want is None or definition.get("type") == want["type"]:
        return None
    return (f"HubSpot property {want['name']} exists with type {str(definition.get('type'))[:30]!r}; "
            f"engagement needs a {want['type']}: rename or delete that property in HubSpot")


class HubSpotWriter(HubSpotReader):
    """What write-back needs on top of reading: properties of its own, and batch updates."""

    write_scopes_known: Optional[bool] = None  # set by missing_write_scopes()

    def missing_write_scopes(self) -> List[str]:
        """Write scopes the token is known to lack. Learnt without writing anything; when they cannot
        be learnt, the first write's 403 stops the run instead (exit 2, naming the scope)."""
        granted = self.granted_scopes()
        self.write_scopes_known = granted is not None
        return [] if granted is None else [s for s in hs.WRITE_BACK_SCOPES if s not in granted]

    def _ensure_property_group(self) -> List[str]:
        """The sync's own property group ("MailerLite", shared by write-back and engagement), created if
        missing; returns what it made."""
        groups = self._call("property groups", "GET", self._path(hs.PROPERTY_GROUPS_PATH), check=results_of)
        has_group = any(isinstance(g, dict) and g.get("name") == hs.WRITE_BACK_GROUP["name"] for g in groups)
        if not has_group and self._create("property group creation", hs.PROPERTY_GROUPS_PATH, hs.WRITE_BACK_GROUP):
            return [f"group {hs.WRITE_BACK_GROUP['name']}"]
        return []

    def _ensure_properties(self, specs: Sequence[Dict[str, Any]],
                           unusable: Callable[[Dict[str, Any]], Optional[str]] = lambda have: None,
                           ) -> Tuple[List[str], Dict[str, Dict[str, Any]]]:
        """The sync's property group and these properties, created where missing. An existing one that
        `unusable` objects to stops it (ConfigError) before anything is created. Returns what was made
        and the definitions of those that already existed."""
        made = self._ensure_property_group()
        existing = self.property_definitions()
        found = {str(p["name"]): existing[str(p["name"])] for p in specs if str(p["name"]) in existing}
        for have in found.values():
            problem = unusable(have)
            if problem:
                raise ConfigError(problem)
        for prop in specs:
            if str(prop["name"]) not in found and self._create("property creation", hs.PROPERTIES_PATH, prop):
                made.append(str(prop["name"]))
        return made, found

    def ensure_write_back_properties(self) -> List[str]:
        """Create the property group and properties if missing, and add missing options to an
        existing mailerlite_status; returns what it did."""
        made, found = self._ensure_properties(hs.WRITE_BACK_PROPERTIES)
        if hs.STATUS_PROPERTY in found:
            made.extend(self._add_status_options(found[hs.STATUS_PROPERTY]))
        return made

    def ensure_engagement_properties(self) -> List[str]:
        """Create the sync's property group and the engagement properties if missing (the same
        group write-back uses); returns what it made. One of another type stops the pass."""
        made, _ = self._ensure_properties(hs.ENGAGEMENT_PROPERTIES, engagement_property_problem)
        return made

    def _create(self, what: str, template: str, body: Dict[str, Any]) -> bool:
        try:
            self._call(what, "POST", self._path(template), body=dict(body))
        except HubSpotRefused as exc:
            if exc.status == 409:  # created meanwhile (another run, a person): fine
                return False
            raise
        return True

    def _add_status_options(self, definition: Dict[str, Any]) -> List[str]:
        problem = status_property_problem(definition)
        if problem:
            raise ConfigError(problem)
        missing = missing_status_options(definition)
        if not missing:
            return []
        # PATCH replaces the option list: send the existing options too, as the spec's OptionInput.
        kept = [{"label": str(o.get("label") or o.get("value")), "value": str(o.get("value")),
                 "displayOrder": o["displayOrder"] if isinstance(o.get("displayOrder"), int) else -1,
                 "hidden": o.get("hidden") is True} for o in property_options(definition)]
        options = kept + [dict(o) for o in hs.STATUS_OPTIONS if o["value"] in missing]
        self._call("property update", "PATCH", self._path(hs.PROPERTY_PATH, name=hs.STATUS_PROPERTY),
                   body={"options": options})
        return [f"options {', '.join(missing)} of {hs.STATUS_PROPERTY}"]

    def ids_by_email(self, emails: List[str]) -> Dict[str, str]:
        """HubSpot contact ids for these addresses (IN searches; the oldest contact of an address)."""
        found: Dict[str, str] = {}
        size, start = hs.IN_VALUES, 0
        while start < len(emails):
            chunk = emails[start:start + size]
            try:
                part = self._ids_for(chunk)
            except HubSpotRefused as exc:
                if exc.status != 400 or size == 1:
                    raise
                size = max(1, size // 2)  # HubSpot's limit on IN values is unconfirmed: ask for fewer
                log.info("HubSpot refused an IN filter of %d values; trying %d", len(chunk), size)
                continue
            for address, cid in part.items():
                found.setdefault(address, cid)
            start += len(chunk)
        return found

    def _ids_for(self, emails: List[str]) -> Dict[str, str]:
        found: Dict[str, str] = {}
        base = [{"propertyName": "email", "operator": "IN", "values": emails}]
        for results in self._search_pages("contact search by email", base, ["email"], ("ID", 0, 0)):
            for contact in self._contacts_of(results):
                email = normalise_email(contact["properties"].get("email"))
                if email and email not in found:  # sorted by id: the oldest contact with the address
                    found[email] = contact["id"]
        return found

    def update_contacts(self, inputs: List[Dict[str, Any]], gone: Optional[Set[str]] = None) -> Dict[str, str]:
        """Batch updates; returns {id: HubSpot's reason} for each contact not updated. An id is never
        sent twice in one batch (HubSpot refuses the whole batch for that). `gone`, when given,
        collects the refused ids HubSpot said do not exist (deleted, archived, merged away)."""
        failed: Dict[str, str] = {}
        found_missing: Set[str] = set() if gone is None else gone
        rounds: List[List[Dict[str, Any]]] = []
        for item in inputs:
            target = next((r for r in rounds if all(i["id"] != item["id"] for i in r)
                           and len(r) < hs.BATCH_UPDATE_SIZE), None)
            if target is None:
                target = []
                rounds.append(target)
            target.append(item)
        for batch in rounds:
            self._update(batch, failed, found_missing)
        return failed

    def _update(self, inputs: List[Dict[str, Any]], failed: Dict[str, str], gone: Set[str]) -> None:
        try:
            page = self._call("contact batch update", "POST", self._path(hs.BATCH_UPDATE_PATH),
                              body={"inputs": inputs})
        except HubSpotRefused as exc:
            # The whole batch refused for what may be one record (an unknown id, a validation
            # rule): halve until the refused ones stand alone, each with HubSpot's reason.
            if len(inputs) == 1:
                failed[str(inputs[0]["id"])] = exc.reason
                if exc.status == 404 or NOT_FOUND_WORDS.search(exc.reason):
                    gone.add(str(inputs[0]["id"]))  # refused alone, for not existing
                return
            half = len(inputs) // 2
            self._update(inputs[:half], failed, gone)
            self._update(inputs[half:], failed, gone)
            return
        errors = page.get("errors")
        for error in errors if isinstance(errors, list) else []:
            verdict = classify(0, error)
            if verdict.kind in (AUTH, MISSING_SCOPES):
                raise _exception_for(verdict, "contact batch update", self._interval_s)
            context = error.get("context") if isinstance(error, dict) else None
            ids = context.get("ids") if isinstance(context, dict) else None
            missing = isinstance(error, dict) and str(error.get("category") or "").upper() == "OBJECT_NOT_FOUND"
            for cid in ids if isinstance(ids, list) else []:
                failed[str(cid)] = verdict.reason
                if missing:
                    gone.add(str(cid))
        results = page.get("results")
        done = {str(r.get("id")) for r in results if isinstance(r, dict)} if isinstance(results, list) else set()
        for item in inputs:
            if str(item["id"]) not in done and str(item["id"]) not in failed:
                failed[str(item["id"])] = "HubSpot did not confirm the update"
