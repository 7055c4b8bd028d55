"""A thin MailerLite API client on `requests`: one session, timeouts, one retry layer.

It knows HTTP and MailerLite's error shapes, nothing about HubSpot. Upsert strategy (batch or
single, when to fall back) belongs to the writer; this module reports what the server said.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import requests

from .errors import AbortRun, AuthError
from .http_limits import requests_exchange
from .retrying import RetryPolicy, Transient, parse_retry_after

log = logging.getLogger(__name__)

BATCH_LIMIT = 50  # MailerLite's maximum requests in one POST /batch
IMPORT_LIMIT_HINT = "import"  # the import limit's 429 says "rate limited on import creation"


@dataclass(frozen=True)
class ItemResult:
    """One upsert's answer: HTTP code and body, from a single call or one item of a batch."""

    code: int
    body: Any


class ImportLimited(Exception):
    """The import limit (all-upsert batches) is used up; `retry_after` if the server said."""

    def __init__(self, retry_after: Optional[float]) -> None:
        super().__init__("MailerLite import limit reached")
        self.retry_after = retry_after


class MailerLiteClient:
    def __init__(self, token: str, base_url: str, retry: Optional[RetryPolicy] = None,
                 timeout: Tuple[float, float] = (10.0, 60.0),
                 on_wait: Optional[Callable[[str, float], None]] = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        self.session.headers.update({
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": "hubspot-mailerlite-sync",
        })
        # Plain http is only allowed to loopback (see config): no proxy or .netrc applies there.
        self.session.trust_env = not base_url.startswith("http://")
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self.on_wait = on_wait
        self.requests = 0
        self.remaining: Optional[int] = None  # X-RateLimit-Remaining of the last answer

    # -- one request -------------------------------------------------------------------------
    def _send(self, method: str, path: str, body: Any = None) -> Tuple[int, Any]:
        """One HTTP exchange; Transient for what is worth retrying, ImportLimited, AuthError."""
        self.requests += 1
        try:
            resp = requests_exchange(self.session, method, f"{self.base_url}/{path}", body, self.timeout)  # bounded
        except requests.RequestException as exc:
            # The exception text can hold the URL; only its class name leaves this module.
            raise Transient(f"network error ({exc.__class__.__name__})") from None
        remaining = resp.headers.get("X-RateLimit-Remaining")  # requests' headers are case-insensitive
        if remaining is not None and remaining.strip().isdigit():
            self.remaining = int(remaining)
        status = resp.status_code
        try:
            data = resp.json() if resp.content else None
        except ValueError:
            data = None
            if 200 <= status < 300 or status == 422:
                raise Transient(f"MailerLite answered {status} with a body that is not JSON") from None
        if status == 401:
            raise AuthError("MailerLite rejected the API key (401 Unauthenticated): check MAILERLITE_API_KEY")
        if status == 429:
            retry_after = parse_retry_after(resp.headers.get("Retry-After"))
            message = str((data or {}).get("message", "")) if isinstance(data, dict) else ""
            if IMPORT_LIMIT_HINT in message.lower():
                raise ImportLimited(retry_after)
            raise Transient("rate limited (429)", retry_after, rate_limited=True)
        if status >= 500 or status in (408, 409):
            raise Transient(f"MailerLite answered {status}")
        if 200 <= status < 300 and data is not None and not isinstance(data, dict):
            raise Transient(f"MailerLite answered {status} with a body of an unexpected shape")
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
            raise AbortRun(f"MailerLite refused {what} (HTTP {status}): {describe_error(data)}")
        return data

    # -- subscribers -----------------------------------------------------------------------------
    def upsert(self, payload: Dict[str, Any]) -> ItemResult:
        """POST /subscribers: one upsert, retried on transient failures."""
        status, data = self._retrying("POST", "subscribers", payload, "upsert")  # the writer handles Transient
        return ItemResult(status, data)

    def upsert_batch(self, payloads: List[Dict[str, Any]]) -> List[ItemResult]:
        """POST /batch of upserts, answers in request order. Raises ImportLimited untouched."""
        if not 0 < len(payloads) <= BATCH_LIMIT:
            raise ValueError(f"a batch holds 1 to {BATCH_LIMIT} requests")
        body = {"requests": [{"method": "POST", "path": "api/subscribers", "body": p} for p in payloads]}

        def once() -> Tuple[int, Any]:
            status, data = self._send("POST", "batch", body)
            responses = data.get("responses") if isinstance(data, dict) else None
            if status == 200 and (not isinstance(responses, list) or len(responses) != len(payloads)):
                # Upserts are idempotent, so asking again is safe.
                raise Transient("MailerLite's batch answer does not list one response per request")
            return status, responses

        status, responses = self.retry.call(once, "MailerLite batch upsert", log, self.on_wait)
        if status != 200:
            raise AbortRun(f"MailerLite refused a batch (HTTP {status})")
        return [ItemResult(_code(item), item.get("body") if isinstance(item, dict) else None) for item in responses]

    def iter_subscribers(self, status: Optional[str] = None, limit: int = 1000) -> Iterator[Dict[str, Any]]:
        """Every subscriber (optionally of one status), following meta.next_cursor."""
        cursor: Optional[str] = None
        while True:
            query = f"subscribers?limit={limit}" + (f"&filter[status]={status}" if status else "")
            if cursor:
                query += f"&cursor={cursor}"
            status_code, data = self.request("GET", query, what="subscriber listing")
            data = self._expect(status_code, data, "the subscriber listing", ok=(200,))
            yield from data.get("data") or []
            next_cursor = (data.get("meta") or {}).get("next_cursor")
            if not next_cursor or next_cursor == cursor:
                return
            cursor = next_cursor

    def get_subscriber(self, ref: str) -> Optional[Dict[str, Any]]:
        status, data = self.request("GET", f"subscribers/{ref}", what="subscriber lookup")
        if status == 404:
            return None
        return self._expect(status, data, "a subscriber lookup", ok=(200,)).get("data")

    # -- fields and groups -------------------------------------------------------------------------
    def _paged(self, path: str, what: str, extra: str = "") -> Iterator[Dict[str, Any]]:
        page = 1
        while True:
            status, data = self.request("GET", f"{path}?limit=100&page={page}{extra}", what=what)
            data = self._expect(status, data, what, ok=(200,))
            yield from data.get("data") or []
            meta = data.get("meta") or {}
            if int(meta.get("current_page") or page) >= int(meta.get("last_page") or page):
                return
            page += 1

    def list_fields(self) -> List[Dict[str, Any]]:
        return list(self._paged("fields", "the field listing"))

    def _create(self, path: str, body: Dict[str, Any], what: str,
                find: Callable[[], Optional[Dict[str, Any]]]) -> Dict[str, Any]:
        """POST that makes something. Creating is not idempotent: when an attempt failed (a
        timeout, say), the server may have made it anyway, so look before trying again."""
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
        data = self._expect(status, data, what)
        if not isinstance(data.get("data"), dict) or not data["data"].get("id"):
            raise AbortRun(f"MailerLite's answer to {what} names no id")
        return data["data"]

    def create_field(self, name: str, type_: str) -> Dict[str, Any]:
        def find() -> Optional[Dict[str, Any]]:
            return next((f for f in self.list_fields() if f.get("key") == name or f.get("name") == name), None)

        return self._create("fields", {"name": name, "type": type_}, f"creating field {name!r}", find)

    def list_groups(self) -> List[Dict[str, Any]]:
        """Every group of the account (at most 1000, so at most 10 pages)."""
        return list(self._paged("groups", "the group listing"))

    def find_groups(self, name: str) -> List[Dict[str, Any]]:
        """Groups whose name is exactly `name` (MailerLite's filter[name] is a partial match)."""
        return [g for g in self._paged("groups", "the group listing", f"&filter[name]={requests.utils.quote(name)}")
                if g.get("name") == name]

    def create_group(self, name: str) -> Dict[str, Any]:
        def find() -> Optional[Dict[str, Any]]:
            return oldest(self.find_groups(name))

        return self._create("groups", {"name": name}, f"creating group {name!r}", find)

    def assign(self, subscriber_id: str, group_id: str) -> None:
        status, data = self.request("POST", f"subscribers/{subscriber_id}/groups/{group_id}", what="group assign")
        self._expect(status, data, "a group assignment")

    def unassign(self, subscriber_id: str, group_id: str) -> None:
        status, data = self.request("DELETE", f"subscribers/{subscriber_id}/groups/{group_id}", what="group unassign")
        self._expect(status, data, "a group removal", ok=(200, 204, 404))


def _outage(what: str, exc: Transient) -> AbortRun:
    return AbortRun(f"MailerLite kept failing on {what} ({exc.reason}); stopped, the next run continues where "
                    f"this one stopped")


def oldest(groups: List[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """Of several groups with one name, always the same one: the oldest (lowest id)."""
    usable = [g for g in groups if str(g.get("id", "")).isdigit()]
    return min(usable, key=lambda g: int(g["id"])) if usable else None


def _code(item: Any) -> int:
    """An item's HTTP code; 0 (retried) when it is missing or garbled."""
    code = item.get("code") if isinstance(item, dict) else None
    try:
        return int(code)
    except (TypeError, ValueError):
        return 0


def describe_error(data: Any) -> str:
    """MailerLite's reason in one line: the field errors if any, else the message."""
    if not isinstance(data, dict):
        return "no reason given"
    errors = data.get("errors")
    if isinstance(errors, dict) and errors:
        parts = []
        for key, reasons in errors.items():
            text = "; ".join(str(r) for r in reasons) if isinstance(reasons, list) else str(reasons)
            parts.append(f"{key}: {text}")
        return " | ".join(parts)[:500]
    return str(data.get("message") or "no reason given")[:500]
