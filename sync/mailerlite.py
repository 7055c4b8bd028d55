"""A thin MailerLite API client on `requests`: one session, timeouts, one retry layer.

It knows HTTP and MailerLite's error shapes, nothing about HubSpot. Upsert strategy (batch or
single, when to fall back) belongs to the writer; this module reports what the server said.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Dict, Iterator, List, Optional, Set, Tuple
from urllib.parse import quote, urlsplit

import requests

from . import mailerlite_answers as answers
from .endpoints import connection_refused, endpoint_label, network_failure
from .errors import AbortRun, AuthError
from .http_limits import requests_exchange
from .mailerlite_answers import describe_error, item_code, transport_verdict
from .mailerlite_paging import cursor_page, numbered_page, smaller_limit
from .retrying import RetryPolicy, Transient, parse_retry_after
from .tunables import DEFAULTS, Tunables

log = logging.getLogger(__name__)

__all__ = ["BATCH_LIMIT", "AccountRefused", "BatchNotUnderstood", "ImportLimited", "ItemResult", "MailerLiteClient",
           "NameTaken", "bad_key", "oldest", "refused_account"]

BATCH_LIMIT = 50  # MailerLite's maximum requests in one POST /batch
SUBSCRIBER_LISTING = "subscriber listing"
LIST_LIMIT = 1000  # subscribers per listing page; MailerLite may allow only 100 (unconfirmed): learned


@dataclass(frozen=True)
class ItemResult:
    """One upsert's answer: HTTP code and body, from a single call or one item of a batch."""

    code: int
    body: Any


class ImportLimited(Transient):
    """The import limit (all-upsert batches) is used up; `retry_after` if the server said.
    A rate limit like any other for the retry layer; a batch sends its items as singles instead."""

    def __init__(self, retry_after: Optional[float]) -> None:
        super().__init__("the import limit (429)", retry_after, rate_limited=True)


class AccountRefused(AbortRun):
    """The account may not do this (402, 403, a plan or subscriber limit, a suspended account):
    every contact would be refused alike, so the run stops with one line (exit 3)."""


class BatchNotUnderstood(Exception):
    """A batch answer this version does not understand, as a whole."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NameTaken(AbortRun):
    """MailerLite refused to make a field or group: the name is taken (perhaps in another case)."""


class MailerLiteClient:
    def __init__(self, token: str, base_url: str, retry: Optional[RetryPolicy] = None,
                 timeout: Tuple[float, float] = (10.0, 60.0),
                 on_wait: Optional[Callable[[str, float], None]] = None, tunables: Tunables = DEFAULTS,
                 endpoint: str = "", key_origin: str = "") -> None:
        """`retry` defaults to one built from `tunables`; `endpoint` (host, port and the setting that
        chose them) is named in network errors, `key_origin` (where the key was read) in its refusal."""
        self.base_url = base_url.rstrip("/")
        self.host = urlsplit(self.base_url).hostname or "the MailerLite host"
        self.endpoint = endpoint or endpoint_label(self.base_url)
        self.key_origin = key_origin
        # The account every answer names in its x-account_id header (seen in the recordings, not
        # documented): None until an answer carries it.
        self.account_id: Optional[str] = None
        self.session = requests.Session()
        self.session.headers.update({
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": "hubspot-mailerlite-sync",
        })
        # Plain http is only allowed to loopback (see config): no proxy or .netrc applies there.
        self.session.trust_env = not base_url.startswith("http://")
        self.retry = retry or RetryPolicy.from_tunables(tunables)
        self.max_body_bytes = tunables.max_body_bytes
        self.timeout = timeout
        self.on_wait = on_wait
        self.requests = 0
        self.remaining: Optional[int] = None  # X-RateLimit-Remaining of the last answer
        self.list_limit = LIST_LIMIT

    # -- one request -------------------------------------------------------------------------
    def _send(self, method: str, path: str, body: Any = None) -> Tuple[int, Any]:
        """One HTTP exchange. Raises Transient (worth retrying), ImportLimited, AuthError or
        AccountRefused as the classifier decides; any other answer is returned."""
        self.requests += 1
        try:
            resp = requests_exchange(self.session, method, f"{self.base_url}/{path}", body, self.timeout,
                                     self.max_body_bytes)  # bounded
        except requests.exceptions.SSLError as exc:
            raise AbortRun(_tls_message(self.host, exc)) from None
        except requests.RequestException as exc:
            # The exception text can hold the URL: it is only read to tell a timeout apart.
            text = f"{exc.__class__.__name__} {exc}"
            raise Transient(network_failure(self.endpoint, text), refused=connection_refused(text)) from None
        remaining = resp.headers.get("X-RateLimit-Remaining")  # requests' headers are case-insensitive
        if remaining is not None and remaining.strip().isdigit():
            self.remaining = int(remaining)
        account = (resp.headers.get("x-account_id") or "").strip()
        if account.isdigit():
            self.account_id = account
        status = resp.status_code
        garbled = False
        try:
            data = resp.json() if resp.content else None
        except ValueError:
            data, garbled = None, True
        verdict = transport_verdict(status, data, garbled)
        if verdict is not None:
            raise _failure(verdict, status, data, garbled, resp.headers.get("Retry-After"), self.key_origin)
        return status, data

    def _retrying(self, method: str, path: str, body: Any, what: str) -> Tuple[int, Any]:
        """One request through the retry layer; Transient when it kept failing."""
        return self.retry.call(lambda: self._send(method, path, body), f"MailerLite {what}", log, self.on_wait)

    def request(self, method: str, path: str, body: Any = None, what: str = "") -> Tuple[int, Any]:
        """A request the run cannot do without: when it keeps failing, the run stops (exit 3)."""
        try:
            return self._retrying(method, path, body, what or f"{method} {path}")
        except Transient as exc:
            raise _outage(what or path, exc) from None

    def _expect(self, status: int, data: Any, what: str, ok: Tuple[int, ...] = (200, 201)) -> Any:
        if status not in ok:
            raise AbortRun(f"MailerLite refused the {what} (HTTP {status}): {describe_error(data)}")
        return data

    def prove_key(self) -> None:
        """The cheapest authenticated request (one field of the account's first page): every run makes
        it, so a refused key (exit 2) or an unreachable host (exit 3) is found even when there is nothing
        to send. Its answer names the account too (x-account_id)."""
        status, data = self.request("GET", "fields?limit=1&page=1", what="key check (one field)")
        self._expect(status, data, "key check (one field)", ok=(200,))

    # -- subscribers -----------------------------------------------------------------------------
    def upsert(self, payload: Dict[str, Any]) -> ItemResult:
        """POST /subscribers: one upsert, retried on transient failures (Transient when they last)."""
        status, data = self._retrying("POST", "subscribers", payload, "upsert")
        return ItemResult(status, data)

    def upsert_batch(self, payloads: List[Dict[str, Any]]) -> List[ItemResult]:
        """POST /batch of upserts: the answers in request order, as documented (the writer still takes
        each only for the address it names: a server that jumbles them must not swap two contacts'
        subscribers). Raises BatchNotUnderstood when
        the answer is not one response per request (the caller sends the items on their own),
        ImportLimited untouched, Transient when the batch kept failing."""
        if not 0 < len(payloads) <= BATCH_LIMIT:
            raise ValueError(f"a batch holds 1 to {BATCH_LIMIT} requests")
        body = {"requests": [{"method": "POST", "path": "api/subscribers", "body": p} for p in payloads]}
        limited: List[ImportLimited] = []

        def once() -> Tuple[int, Any]:
            try:
                return self._send("POST", "batch", body)
            except ImportLimited as exc:  # not retried here: the writer sends singles meanwhile
                limited.append(exc)
                return 429, None

        status, data = self.retry.call(once, "MailerLite batch upsert", log, self.on_wait)
        if limited:
            raise limited[-1]
        if status != 200:
            # Account-level refusals were raised by _send; anything else (a changed batch size,
            # say) is about batching, not about these contacts.
            raise BatchNotUnderstood(f"HTTP {status}: {describe_error(data)}")
        responses = data.get("responses") if isinstance(data, dict) else None
        if not isinstance(responses, list) or len(responses) != len(payloads):
            raise BatchNotUnderstood("not one answer per request")
        return [ItemResult(item_code(item), item.get("body") if isinstance(item, dict) else None)
                for item in responses]

    # -- listings: one paginator for both kinds -------------------------------------------------
    def _pages(self, what: str, page: Callable[[Any, Set[Any]], Tuple[List[Dict[str, Any]], Any]],
               retried: bool = True) -> Iterator[Dict[str, Any]]:
        """The one paginator. `page(position, seen)` fetches one page (position None is the
        first) and returns its entries and the next position, or None at the end; it raises
        BadPage for a page that is not what MailerLite documents, or that leads back to a position
        in `seen`. Such a page is asked for again and, when it stays wrong, the run stops (exit 3):
        a half-read listing must never look complete. `retried=False` inside an attempt that is
        itself retried (see _create): one retry layer, never one inside another."""
        position: Any = None
        seen: Set[Any] = set()
        while True:
            fetch = partial(page, position, seen)
            if retried:
                try:
                    items, following = self.retry.call(fetch, f"MailerLite {what}", log, self.on_wait)
                except Transient as exc:
                    raise _outage(what, exc) from None
            else:
                items, following = fetch()
            yield from items
            if following is None:
                return
            seen.add(position)
            position = following

    def _subscriber_page(self, status: Optional[str], include_groups: bool, cursor: Optional[str],
                         seen: Set[Any]) -> Tuple[List[Dict[str, Any]], Optional[str]]:
        """One page of the cursor listing of subscribers."""
        while True:
            query = (f"subscribers?limit={self.list_limit}" + (f"&filter[status]={status}" if status else "")
                     + ("&include=groups" if include_groups else ""))
            code, data = self._send("GET", query + (f"&cursor={cursor}" if cursor else ""))
            smaller = smaller_limit(data, self.list_limit) if code == 422 else None
            if smaller is None:
                break
            # MailerLite's largest page is unconfirmed (1000 or 100): ask again with what it names
            # (strictly smaller each time, so this ends).
            log.info("MailerLite lists at most %d subscribers a page", smaller)
            self.list_limit = smaller
        # A server that clamps the limit silently serves meta.per_page a page: the cursor carries on
        # from whatever a page held, so a smaller page is never taken for the end.
        return cursor_page(self._expect(code, data, SUBSCRIBER_LISTING, ok=(200,)), cursor, seen, SUBSCRIBER_LISTING)

    def iter_subscribers(self, status: Optional[str] = None, include_groups: bool = False) -> Iterator[Dict[str, Any]]:
        """Every subscriber (optionally of one status), following meta.next_cursor; with
        `include_groups`, each carries its groups (`include=groups`, the one documented include)."""
        return self._pages(SUBSCRIBER_LISTING, partial(self._subscriber_page, status, include_groups))

    def subscriber_page(self, cursor: Optional[str], include_groups: bool = True) -> Tuple[List[Dict[str, Any]],
                                                                                         Optional[str]]:
        """One page of the subscriber listing from `cursor` (None: the first) and the next cursor (None
        at the end), through the retry layer. Unlike iter_subscribers, a page that keeps failing raises
        Transient to the caller (adoption_listing.py), which ends its listing as incomplete instead of
        stopping the run; loops are the caller's to catch (by subscriber id, whatever the cursors say)."""
        fetch = partial(self._subscriber_page, None, include_groups, cursor, set())
        return self.retry.call(fetch, f"MailerLite {SUBSCRIBER_LISTING}", log, self.on_wait)

    def count_subscribers(self) -> Optional[int]:
        """How many subscribers the account holds (`limit=0` answers `{"total": N}`); None when
        the answer does not say."""
        status, data = self.request("GET", "subscribers?limit=0", what="subscriber count")
        total = self._expect(status, data, "subscriber count", ok=(200,))
        value = total.get("total") if isinstance(total, dict) else None
        return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None

    def find_subscriber(self, email: str) -> Optional[Dict[str, Any]]:
        """GET /subscribers/{email}: the subscriber MailerLite holds with this address; None when it
        answers 404 (it holds none). Transient when it keeps failing; AbortRun for an answer not understood."""
        what = "subscriber lookup"
        status, data = self._retrying("GET", f"subscribers/{quote(email, safe='@')}", None, what)
        if status == 404:
            return None
        body = self._expect(status, data, what, ok=(200,))
        found = body.get("data") if isinstance(body, dict) else None
        if not isinstance(found, dict):
            raise AbortRun(f"MailerLite answered the {what} without a subscriber")
        return found

    # -- fields and groups -------------------------------------------------------------------------
    def _numbered_page(self, path: str, extra: str, what: str, page: Optional[int],
                       seen: Set[Any]) -> Tuple[List[Dict[str, Any]], Optional[int]]:
        """One page of a numbered listing (fields, groups); `seen` is not needed: numbers only grow."""
        number = page or 1
        code, data = self._send("GET", f"{path}?limit=100&page={number}{extra}")
        items, last = numbered_page(self._expect(code, data, what, ok=(200,)), number, what)
        return items, (number + 1 if number < last else None)

    def _numbered(self, path: str, what: str, extra: str = "", retried: bool = True) -> Iterator[Dict[str, Any]]:
        return self._pages(what, partial(self._numbered_page, path, extra, what), retried)

    def list_fields(self, retried: bool = True) -> List[Dict[str, Any]]:
        return list(self._numbered("fields", "field listing", retried=retried))

    def _create(self, path: str, body: Dict[str, Any], what: str,
                find: Callable[[], Optional[Dict[str, Any]]]) -> Dict[str, Any]:
        """POST that makes something. Creating is not idempotent: when an attempt failed (a
        timeout, say), the server may have made it anyway, so look before trying again. The
        look-up is part of the attempt, so it is not retried on its own."""
        attempts = {"n": 0}

        def attempt() -> Tuple[int, Any]:
            attempts["n"] += 1
            if attempts["n"] > 1:
                # An attempt that timed out may still be running on the server: give it as long
                # again as we waited for it before looking, or we would make a second one.
                self.retry.sleep(self.timeout[1])
                found = find()
                if found is not None:
                    return 201, {"data": found}
            return self._send("POST", path, body)

        try:
            status, data = self.retry.call(attempt, f"MailerLite {what}", log, self.on_wait)
        except Transient as exc:
            raise _outage(what, exc) from None
        if status == 422 and any("taken" in reason for reason in _name_errors(data)):
            raise NameTaken(f"MailerLite refused the {what} (HTTP 422): {describe_error(data)}")
        data = self._expect(status, data, what)
        if not isinstance(data, dict) or not isinstance(data.get("data"), dict) or not data["data"].get("id"):
            raise AbortRun(f"MailerLite's answer to the {what} names no id")
        return data["data"]

    def create_field(self, name: str, type_: str) -> Dict[str, Any]:
        def find() -> Optional[Dict[str, Any]]:
            return next((f for f in self.list_fields(retried=False)
                         if f.get("key") == name or f.get("name") == name), None)

        return self._create("fields", {"name": name, "type": type_}, f"creation of field {name!r}", find)

    def list_groups(self) -> List[Dict[str, Any]]:
        """Every group of the account (at most 1000, so at most 10 pages)."""
        return list(self._numbered("groups", "group listing"))

    def find_groups(self, name: str, retried: bool = True) -> List[Dict[str, Any]]:
        """Groups whose name is exactly `name` (MailerLite's filter[name] is a partial match)."""
        return [g for g in self._numbered("groups", "group listing", f"&filter[name]={requests.utils.quote(name)}",
                                          retried=retried)
                if g.get("name") == name]

    def create_group(self, name: str) -> Dict[str, Any]:
        def find() -> Optional[Dict[str, Any]]:
            return oldest(self.find_groups(name, retried=False))

        return self._create("groups", {"name": name}, f"creation of group {name!r}", find)

    def unassign(self, subscriber_id: str, group_id: str) -> None:
        status, data = self.request("DELETE", f"subscribers/{subscriber_id}/groups/{group_id}", what="group removal")
        self._expect(status, data, "group removal", ok=(200, 204, 404))


def _outage(what: str, exc: Transient) -> AbortRun:
    return AbortRun(f"MailerLite kept failing on the {what} ({exc.reason}); stopped, the next run continues where "
                    f"this one stopped")


def _name_errors(data: Any) -> List[str]:
    errors = data.get("errors") if isinstance(data, dict) else None
    reasons = errors.get("name") if isinstance(errors, dict) else None
    return [str(r).lower() for r in reasons] if isinstance(reasons, list) else []


def _tls_message(host: str, exc: Exception) -> str:
    if "CERTIFICATE_VERIFY_FAILED" in str(exc) or "certificate verify failed" in str(exc).lower():
        return f"TLS certificate verification failed for {host}"
    return f"TLS connection to {host} failed ({exc.__class__.__name__}); check MAILERLITE_BASE_URL"


def _failure(verdict: str, status: int, data: Any, garbled: bool, retry_after: Optional[str],
             key_origin: str = "") -> Exception:
    """The exception for an answer the classifier says no caller may take as an answer."""
    if verdict == answers.AUTH:
        return bad_key(key_origin)
    if verdict == answers.ACCOUNT:
        return refused_account(status, describe_error(data))
    if verdict == answers.IMPORT_LIMITED:
        return ImportLimited(parse_retry_after(retry_after))
    if status == 429:
        return Transient("rate limited (429)", parse_retry_after(retry_after), rate_limited=True)
    if garbled:
        return Transient(f"HTTP {status} with a body that is not JSON")
    if 200 <= status < 300:
        return Transient(f"HTTP {status} with a body of an unexpected shape")
    return Transient(f"HTTP {status}")


def bad_key(origin: str = "") -> AuthError:
    """`origin`: "MAILERLITE_API_KEY, read from <file>" (or the environment), when known."""
    return AuthError(f"MailerLite rejected the API key (401 Unauthenticated): check {origin or 'MAILERLITE_API_KEY'}")


def refused_account(code: int, reason: str) -> AccountRefused:
    return AccountRefused(f"MailerLite refused the account (HTTP {code}: {reason}); check the plan and status of "
                          f"the MailerLite account, then run again")


def oldest(groups: List[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """Of several groups with one name, always the same one: the oldest (lowest id). Ids are
    strings of numbers; one that is not (never seen, but not ours to rule out) sorts after them."""
    usable = [g for g in groups if isinstance(g.get("id"), (str, int)) and str(g["id"]).strip()]
    if not usable:
        return None
    return min(usable, key=lambda g: (0, int(g["id"]), "") if str(g["id"]).isdigit() else (1, 0, str(g["id"])))
