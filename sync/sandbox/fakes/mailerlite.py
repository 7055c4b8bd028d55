"""A stateful fake of the parts of MailerLite's API the sync uses.

Behaviour follows ../shared/api/mailerlite.md and answers in the shapes of the real
recordings in ../shared/api/mailerlite-recordings/: upsert by email (201/200, non-destructive,
groups only added), fields, groups, batch with per-item answers, 422 validation errors,
the refusal to reactivate unsubscribed/bounced/junk subscribers, Bearer auth, the global
120/minute limit and the 5/minute import limit for all-upsert batches.
"""

from __future__ import annotations

import base64
import bisect
import json
import math
import re
from collections import deque
from datetime import datetime, timezone
from typing import Any, Callable, Deque, Dict, List, Optional, Set, Tuple

from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from .base import FakeAPI, WindowCounter

STATUSES = ("active", "unsubscribed", "unconfirmed", "bounced", "junk")
INACTIVE = ("unsubscribed", "bounced", "junk")
DEFAULT_FIELDS = [  # (id, name, key) of the default text fields, as in fields-list.yml
    ("1", "Name", "name"), ("2", "Last name", "last_name"), ("3", "Company", "company"),
    ("4", "Country", "country"), ("5", "City", "city"), ("6", "Phone", "phone"),
    ("7", "State", "state"), ("8", "Zip", "z_i_p"),
]
TEXT_MAX = 1024  # unconfirmed on the real service; the fake rejects longer text values (a switch)
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
INVALID = "The given data was invalid."
CANNOT_IMPORT = "This subscriber is {status} and cannot be imported"
# The other plausible wording of the reactivation refusal: in the message, with no field errors.
CANNOT_REACTIVATE = "This subscriber is {status} and can not be reactivated through the API."
# What an account-level refusal says (the fake's reading; the real texts are not recorded).
ACCOUNT_REFUSALS = {
    "402": (402, {"message": "Payment required."}),
    "403-plan": (403, {"message": "You have reached the subscriber limit of your plan. Please upgrade."}),
    "422-limit": (422, {"message": "You have reached the subscribers limit of your plan."}),
    "403-suspended": (403, {"message": "This account is suspended."}),
}


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def field_key(name: str) -> str:
    """MailerLite derives a field's key from its name: "My Field" -> "my_field"."""
    return re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")


class FakeMailerLite(FakeAPI):
    url_map = Map([
        Rule("/api/subscribers", methods=["GET"], endpoint="list_subscribers"),
        Rule("/api/subscribers", methods=["POST"], endpoint="upsert"),
        Rule("/api/subscribers/<ref>", methods=["GET"], endpoint="get_subscriber"),
        Rule("/api/subscribers/<sid>", methods=["PUT"], endpoint="update_subscriber"),
        Rule("/api/subscribers/<sid>/groups/<gid>", methods=["POST"], endpoint="assign"),
        Rule("/api/subscribers/<sid>/groups/<gid>", methods=["DELETE"], endpoint="unassign"),
        Rule("/api/fields", methods=["GET"], endpoint="list_fields"),
        Rule("/api/fields", methods=["POST"], endpoint="create_field"),
        Rule("/api/groups", methods=["GET"], endpoint="list_groups"),
        Rule("/api/groups", methods=["POST"], endpoint="create_group"),
        Rule("/api/batch", methods=["POST"], endpoint="batch"),
    ])

    def __init__(self, time_scale: float = 1.0, per_minute: int = 120, imports_per_minute: int = 5,
                 batch_counts_as_items: bool = False) -> None:
        super().__init__(time_scale)
        self.tokens = {"ml-test-token"}
        # Every answer names the account in x-account_id, as the recordings show; None: no such header
        # (undocumented, so the sync must do without it).
        self.account_id: Optional[str] = "83510"
        self.global_limit = WindowCounter(self, per_minute, 60.0)
        self.import_limit = WindowCounter(self, imports_per_minute, 60.0)
        # The open question in mailerlite.md: does a batch cost 1 request or one per item?
        self.batch_counts_as_items = batch_counts_as_items
        self.import_retry_after = True  # unconfirmed whether the import 429 carries Retry-After
        # The other reading of the consent rule: refuse any upsert of an inactive subscriber.
        self.refuse_inactive_upserts = False
        self.honours_status_filter = True  # False: filter[status] ignored, every status listed
        self.undeliverable_domains: set = set()  # addresses MailerLite's own checks refuse
        self.limits_enabled = True
        self.subscribers: Dict[str, Dict[str, Any]] = {}  # id -> subscriber
        self.by_email: Dict[str, str] = {}
        self._sub_ids: List[int] = []
        self._next_sub = 165968862226941797
        self.fields: List[Dict[str, Any]] = [
            {"id": fid, "name": name, "key": key, "type": "text", "is_default": True, "used_in_automations": False}
            for fid, name, key in DEFAULT_FIELDS
        ]
        self._next_field = 947147
        self.groups: Dict[str, Dict[str, Any]] = {}
        self._next_group = 165971156405323676
        self.reactivation_attempts: List[Dict[str, Any]] = []
        self.item_faults: Deque[Optional[int]] = deque()  # per batch item: an HTTP code to fail it with
        self.failing_emails: Dict[str, int] = {}  # email -> how many more of its upserts get a 503
        # email -> how many more of its upserts are written and then answered 503 (a gateway's 5xx or
        # a timeout after MailerLite took the write): the sync cannot tell it from one never written.
        self.written_then_failing: Dict[str, int] = {}
        # Fault knob, one entry per coming batch: "reversed" answers its items in the wrong order,
        # "foreign" answers its first item with another address's subscriber (a server bug the
        # client must catch: an answer is matched to its request by address, never by position).
        self.batch_disorder: Deque[str] = deque()
        self.refused_group_removals: Set[str] = set()  # emails whose group removals get a 422
        self.upsert_count = 0  # every upsert attempted that passed validation
        # Switches for what mailerlite.md leaves unconfirmed; the defaults are the documented reading.
        # Batch items of an all-upsert batch (an import): "upsert" = {code, body: {data}} like a single
        # upsert; "import" = {"code": 200, "body": null}; "summary" = counts only, no responses.
        self.batch_item_shape = "upsert"
        self.account_refusal: Optional[str] = None  # a key of ACCOUNT_REFUSALS: every write is refused so
        self.account_refusal_per_item = False  # ...as the batch's own status (False) or per batch item
        self.null_clears = True  # False: null is ignored and "" clears
        self.text_max: Optional[int] = TEXT_MAX  # None: no limit
        self.date_with_time = False  # True: date fields want "YYYY-MM-DD HH:MM:SS"
        self.reactivation_wording = "imported"  # or "reactivated" (CANNOT_REACTIVATE)
        # Answers to an upsert of these addresses, odd ways (undocumented: tests of how the sync reads them):
        # "ignored": the requested status is not applied, the answer shows the status held (active);
        # "omitted": it is applied, the answer's subscriber carries no status field.
        self.status_answers: Dict[str, str] = {}
        self.subscriber_list_max = 1000  # the listing's largest limit...
        self.limit_too_big = "clamp"  # ...beyond it: "clamp" silently, or "422"
        # The listing's hostile shapes (all off by default). listing_loops: the last page's next cursor
        # leads back to the first page, freshly encoded each time (never the same string twice).
        self.listing_loops = False
        self._loop_rounds = 0
        # This page of the listing (0: the first, counted in pages of the limit asked) answers 500 for ever.
        self.failing_listing_page: Optional[int] = None
        # Called with the number of listing pages served so far, after each (the account changes
        # mid-listing: a test adds or deletes subscribers there).
        self.after_listing_page: Optional[Callable[[int], None]] = None
        self.listing_pages_served = 0
        self.group_names_unique_ci = False  # True: a group name taken in any case is refused
        # Subscriber rates, unconfirmed: "fraction" (0.25), "percent" (25) or "object" ({"float": 0.25,
        # "string": "25%"}, as group answers carry them). Computed from the counts when answered.
        self.rate_style = "fraction"
        # email -> (sent, opens, clicks) a new subscriber starts with (the sandbox's imported history).
        self.history_for_new: Optional[Callable[[str], Tuple[int, int, int]]] = None

    @property
    def base_url(self) -> str:
        return self.url + "/api"

    # -- seeding and inspection -------------------------------------------------------------
    def add_field(self, name: str, type_: str = "text") -> Dict[str, Any]:
        with self.lock:
            field = {"id": str(self._next_field), "name": name, "key": field_key(name), "type": type_,
                     "is_default": False, "used_in_automations": False}
            self._next_field += 1
            self.fields.append(field)
            return field

    def add_group(self, name: str) -> Dict[str, Any]:
        with self.lock:
            gid = str(self._next_group)
            self._next_group += 1
            group = {"id": gid, "name": name, "active_count": 0, "sent_count": 0, "opens_count": 0,
                     "open_rate": {"float": 0, "string": "0%"}, "clicks_count": 0,
                     "click_rate": {"float": 0, "string": "0%"}, "unsubscribed_count": 0,
                     "unconfirmed_count": 0, "bounced_count": 0, "junk_count": 0, "created_at": _now()}
            self.groups[gid] = group
            return group

    def add_subscriber(self, email: str, status: str = "active", fields: Optional[Dict[str, Any]] = None,
                       groups: Optional[List[str]] = None) -> Dict[str, Any]:
        with self.lock:
            sub = self._new_subscriber(email.lower(), status)
            sub["fields"].update(fields or {})
            sub["groups"] = list(groups or [])
            return sub

    def delete_subscriber(self, email: str) -> None:
        """What deleting a subscriber in MailerLite's app does: gone from every listing and lookup."""
        with self.lock:
            sid = self.by_email.pop(email.lower())
            del self.subscribers[sid]
            self._sub_ids.remove(int(sid))

    def set_status_in_app(self, email: str, status: str) -> None:
        """What a person (an unsubscribe link) or MailerLite (a bounce, a spam complaint) does to a subscriber's
        status: no API call, the status just changes."""
        with self.lock:
            sub = self.subscriber(email)
            if sub is None:
                raise KeyError(email)
            sub["status"] = status
            sub["updated_at"] = _now()
            if status == "unsubscribed":
                sub["unsubscribed_at"] = _now()

    def resubscribe_by_form(self, email: str, fields: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """The person signs up again through a MailerLite form (double opt-in done): the subscriber
        MailerLite held as unsubscribed, bounced or junk is active again, by the person's own act;
        an address it does not hold is created active. `fields`: what the person typed in the form."""
        with self.lock:
            sub = self.subscriber(email) or self._new_subscriber(email.lower(), "active")
            sub.update(status="active", unsubscribed_at=None, source="form", updated_at=_now(), opted_in_at=_now())
            sub["fields"].update(fields or {})
            return sub

    def set_engagement(self, email: str, sent: int, opens: int, clicks: int) -> Dict[str, Any]:
        """A subscriber's email figures, as campaigns would leave them."""
        with self.lock:
            sub = self.subscriber(email)
            if sub is None:
                raise KeyError(email)
            sub.update(sent=sent, opens_count=opens, clicks_count=clicks)
            return sub

    def _rate(self, count: int, sent: int) -> Any:
        fraction = round(count / sent, 4) if sent else 0
        if self.rate_style == "percent":
            return round(fraction * 100, 2)
        if self.rate_style == "object":
            return {"float": fraction, "string": f"{round(fraction * 100, 2):g}%"}
        return fraction

    def subscriber(self, email: str) -> Optional[Dict[str, Any]]:
        sid = self.by_email.get(email.lower())
        return self.subscribers.get(sid) if sid else None

    def _new_subscriber(self, email: str, status: str) -> Dict[str, Any]:
        sid = str(self._next_sub)
        self._next_sub += 1
        stamp = _now()
        sub = {
            "id": sid, "email": email, "status": status, "source": "api", "sent": 0, "opens_count": 0,
            "clicks_count": 0, "open_rate": 0, "click_rate": 0, "ip_address": None,
            "subscribed_at": stamp, "unsubscribed_at": stamp if status == "unsubscribed" else None,
            "created_at": stamp, "updated_at": stamp,
            "fields": {f["key"]: None for f in self.fields}, "groups": [],
            "opted_in_at": None, "optin_ip": None,
        }
        if self.history_for_new is not None:
            sub["sent"], sub["opens_count"], sub["clicks_count"] = self.history_for_new(email)
        self.subscribers[sid] = sub
        self.by_email[email] = sid
        self._sub_ids.append(int(sid))
        return sub

    def _render(self, sub: Dict[str, Any], with_groups: bool = True) -> Dict[str, Any]:
        out = dict(sub)
        sent = int(sub.get("sent") or 0)
        out["open_rate"] = self._rate(int(sub.get("opens_count") or 0), sent)
        out["click_rate"] = self._rate(int(sub.get("clicks_count") or 0), sent)
        out["fields"] = {f["key"]: sub["fields"].get(f["key"]) for f in self.fields}
        if with_groups:
            out["groups"] = [self.groups[g] for g in sub["groups"] if g in self.groups]
        else:
            out.pop("groups")
        return out

    # -- auth and limits ---------------------------------------------------------------------
    def _limit_headers(self) -> Dict[str, str]:
        # Lowercase, as in the recordings: clients must read headers case-insensitively.
        headers = {"x-ratelimit-limit": str(self.global_limit.limit),
                   "x-ratelimit-remaining": str(self.global_limit.remaining())}
        if self.account_id is not None:
            headers["x-account_id"] = self.account_id
        return headers

    def _retry_after(self, counter: WindowCounter) -> str:
        wait = self.real_seconds(counter.seconds_to_reset())
        return str(max(1, math.ceil(wait))) if self.time_scale == 1 else f"{max(wait, 0.001):.3f}"

    def rate_limited_response(self) -> Response:
        headers = {"Retry-After": self._retry_after(self.global_limit),
                   "x-ratelimit-limit": str(self.global_limit.limit), "x-ratelimit-remaining": "0"}
        return self.json_response({"message": "Too Many Attempts."}, 429, headers)

    def before_request(self, request: Request, endpoint: str) -> Optional[Response]:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self.tokens:
            return self.json_response({"message": "Unauthenticated."}, 401)
        if not self.limits_enabled:
            return None
        cost = 1
        is_import = False
        if endpoint == "batch":
            items = (self.json_body(request) or {}).get("requests") or []
            if self.batch_counts_as_items:
                cost = max(1, len(items))
            is_import = bool(items) and all(
                isinstance(i, dict) and str(i.get("method", "")).upper() == "POST"
                and str(i.get("path", "")).strip("/") == "api/subscribers" for i in items)
        with self.lock:
            if self.global_limit.remaining() < cost:
                return self.rate_limited_response()
            if is_import and not self.import_limit.try_take():
                headers = self._limit_headers()
                if self.import_retry_after:
                    headers["Retry-After"] = self._retry_after(self.import_limit)
                return self.json_response({"message": "You're being rate limited on import creation."}, 429, headers)
            self.global_limit.try_take(cost)
        return None

    def ok(self, data: Any, status: int = 200) -> Response:
        if data is None:
            return Response(status=status, headers=self._limit_headers())
        return self.json_response(data, status, self._limit_headers())

    def _json_result(self, result: Tuple[int, Any]) -> Response:
        code, body = result
        return self.ok(body, code)

    # -- subscribers ---------------------------------------------------------------------------
    def _validate(self, body: Any) -> Dict[str, List[str]]:
        errors: Dict[str, List[str]] = {}
        if not isinstance(body, dict):
            return {"email": ["The email field is required."]}
        email = body.get("email")
        if not isinstance(email, str) or not email.strip():
            errors["email"] = ["The email field is required."]
        elif (not EMAIL_RE.match(email.strip()) or len(email) > 255
              or email.strip().lower().rsplit("@", 1)[-1] in self.undeliverable_domains):
            errors["email"] = ["The email must be a valid email address."]
        status = body.get("status")
        if status is not None and status not in STATUSES:
            errors["status"] = ["The selected status is invalid."]
        fields = body.get("fields")
        if fields is not None and not isinstance(fields, dict):
            errors["fields"] = ["The fields must be an array."]
        elif fields:
            types = {f["key"]: f["type"] for f in self.fields}
            for key, value in fields.items():
                problem = self._field_problem(key, value, types)
                if problem:
                    errors[f"fields.{key}"] = [problem]
        groups = body.get("groups")
        if groups is not None:
            if not isinstance(groups, list):
                errors["groups"] = ["The groups must be an array."]
            else:
                for i, gid in enumerate(groups):
                    if not isinstance(gid, (str, int)) or str(gid) not in self.groups:
                        errors[f"groups.{i}"] = [f"The selected groups.{i} is invalid."]
        return errors

    def _field_problem(self, key: str, value: Any, types: Dict[str, str]) -> Optional[str]:
        if key not in types:
            return f"The selected fields.{key} is invalid."
        if value is None or value == "":
            return None  # clears the field (or, with null_clears off, null is ignored)
        kind = types[key]
        if kind == "number":
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                return f"The fields.{key} must be a number."
            try:
                float(value)
            except ValueError:
                return f"The fields.{key} must be a number."
        elif kind == "date":
            try:
                datetime.strptime(str(value), "%Y-%m-%d %H:%M:%S" if self.date_with_time else "%Y-%m-%d")
            except ValueError:
                return f"The fields.{key} is not a valid date."
        elif not isinstance(value, (str, int, float)) or isinstance(value, bool):
            return f"The fields.{key} must be a string."
        elif self.text_max is not None and len(str(value)) > self.text_max:
            return f"The fields.{key} may not be greater than {self.text_max} characters."
        return None

    def upsert(self, body: Any) -> Tuple[int, Any]:
        """POST /subscribers, as one request or as one item of a batch."""
        errors = self._validate(body)
        if errors:
            return 422, {"message": INVALID, "errors": errors}
        email = body["email"].strip().lower()
        status = body.get("status")
        existing = self.subscriber(email)
        if existing is not None and existing["status"] in INACTIVE and (
                status == "active" or self.refuse_inactive_upserts):
            self.reactivation_attempts.append({"email": email, "status_was": existing["status"],
                                               "requested": status})
            if self.reactivation_wording == "reactivated":
                return 422, {"message": CANNOT_REACTIVATE.format(status=existing["status"])}
            return 422, {"message": INVALID,
                         "errors": {"email": [CANNOT_IMPORT.format(status=existing["status"])]}}
        self.upsert_count += 1
        code = 200
        if existing is None:
            existing = self._new_subscriber(email, status or "active")
            code = 201
        elif status and status != existing["status"] and existing["status"] not in ("bounced", "junk") \
                and self.status_answers.get(email) != "ignored":
            # Modelled (unconfirmed): a bounce or spam complaint is a stronger fact than an
            # unsubscribe, so an upsert does not overwrite it.
            existing["status"] = status
            if status == "unsubscribed":
                existing["unsubscribed_at"] = _now()
        for key, value in (body.get("fields") or {}).items():
            if value is None and not self.null_clears:
                continue
            existing["fields"][key] = None if value == "" else value
        for gid in body.get("groups") or []:
            if str(gid) not in existing["groups"]:
                existing["groups"].append(str(gid))
        existing["updated_at"] = _now()
        rendered = self._render(existing)
        if self.status_answers.get(email) == "omitted":
            rendered.pop("status", None)
        return code, {"data": rendered}

    def _fails(self, body: Any, counts: Optional[Dict[str, int]] = None) -> bool:
        counts = self.failing_emails if counts is None else counts
        email = str(body.get("email", "")).strip().lower() if isinstance(body, dict) else ""
        if counts.get(email):
            counts[email] -= 1
            return True
        return False

    def on_upsert(self, request: Request) -> Response:
        body = self.json_body(request)
        if self.account_refusal:
            return self._json_result(ACCOUNT_REFUSALS[self.account_refusal])
        if self._fails(body):
            return self.ok({"message": "Server Error"}, 503)
        if self._fails(body, self.written_then_failing):
            self.upsert(body)
            return self.ok({"message": "Server Error"}, 503)
        return self._json_result(self.upsert(body))

    def on_update_subscriber(self, request: Request, sid: str) -> Response:
        """PUT /subscribers/{id}: like the upsert, but the groups listed replace the old ones."""
        sub = self.subscribers.get(sid)
        if sub is None:
            return self.ok({"message": "No query results for model [App\\Models\\Subscriber\\Subscriber]."}, 404)
        body = self.json_body(request)
        body = dict(body) if isinstance(body, dict) else {}
        body.setdefault("email", sub["email"])
        code, out = self.upsert(body)
        if code == 200 and "groups" in body:
            sub["groups"] = [str(g) for g in body["groups"]]
            out = {"data": self._render(sub)}
        return self.ok(out, code)

    def get_subscriber(self, ref: str) -> Tuple[int, Any]:
        sub = self.subscribers.get(ref) or self.subscriber(ref)
        if sub is None:
            return 404, {"message": "No query results for model [App\\Models\\Subscriber\\Subscriber]."}
        return 200, {"data": self._render(sub)}

    def on_get_subscriber(self, request: Request, ref: str) -> Response:
        return self._json_result(self.get_subscriber(ref))

    def on_list_subscribers(self, request: Request) -> Response:
        limit = int(request.args.get("limit", "25"))
        status = request.args.get("filter[status]") if self.honours_status_filter else None
        if limit == 0:
            total = sum(1 for s in self.subscribers.values() if status is None or s["status"] == status)
            return self.ok({"total": total})
        if limit > self.subscriber_list_max and self.limit_too_big == "422":
            reason = f"The limit may not be greater than {self.subscriber_list_max}."
            return self.ok({"message": reason, "errors": {"limit": [reason]}}, 422)
        limit = min(limit, self.subscriber_list_max)
        cursor = request.args.get("cursor")
        end = len(self._sub_ids)
        if cursor:
            try:
                last = int(json.loads(base64.b64decode(cursor))["id"])
            except (ValueError, KeyError, TypeError):
                return self.ok({"message": "Invalid cursor."}, 400)
            end = bisect.bisect_left(self._sub_ids, last)
        if self.failing_listing_page is not None and (len(self._sub_ids) - end) // limit == self.failing_listing_page:
            return self.ok({"message": "Server Error"}, 500)
        # include=groups (the one documented include) adds each subscriber's groups.
        with_groups = "groups" in request.args.get("include", "").split(",")
        page: List[Dict[str, Any]] = []
        i = end - 1
        while i >= 0 and len(page) < limit:  # newest first, as the recordings show
            sub = self.subscribers[str(self._sub_ids[i])]
            if status is None or sub["status"] == status:
                page.append(self._render(sub, with_groups=with_groups))
            i -= 1
        next_cursor = None
        if i >= 0 and page:
            pointer = {"id": int(page[-1]["id"]), "_pointsToNextItems": True}
            next_cursor = base64.b64encode(json.dumps(pointer).encode()).decode()
        elif self.listing_loops and page:
            # Back to the first page, under a cursor never seen before (past the newest id).
            self._loop_rounds += 1
            pointer = {"id": self._sub_ids[-1] + 1, "_pointsToNextItems": True, "round": self._loop_rounds}
            next_cursor = base64.b64encode(json.dumps(pointer).encode()).decode()
        self.listing_pages_served += 1
        if self.after_listing_page is not None:
            self.after_listing_page(self.listing_pages_served)
        path = f"{self.base_url}/subscribers"
        return self.ok({
            "data": page,
            "links": {"first": None, "last": None, "prev": None,
                      "next": f"{path}?cursor={next_cursor}" if next_cursor else None},
            "meta": {"path": path, "per_page": limit, "next_cursor": next_cursor, "prev_cursor": None},
        })

    def assign(self, sid: str, gid: str) -> Tuple[int, Any]:
        sub, group = self.subscribers.get(sid), self.groups.get(gid)
        if sub is None or group is None:
            return 404, {"message": "Resource not found."}
        if gid not in sub["groups"]:
            sub["groups"].append(gid)
        return 200, {"data": group}

    def on_assign(self, request: Request, sid: str, gid: str) -> Response:
        return self._json_result(self.assign(sid, gid))

    def unassign(self, sid: str, gid: str) -> Tuple[int, Any]:
        sub = self.subscribers.get(sid)
        if sub is None or gid not in self.groups:
            return 404, {"message": "Resource not found."}
        if sub["email"] in self.refused_group_removals:
            return 422, {"message": INVALID, "errors": {"subscriber": ["The subscriber cannot be changed."]}}
        if gid in sub["groups"]:
            sub["groups"].remove(gid)
        return 204, None

    def on_unassign(self, request: Request, sid: str, gid: str) -> Response:
        return self._json_result(self.unassign(sid, gid))

    # -- fields and groups -----------------------------------------------------------------------
    def _page(self, items: List[Dict[str, Any]], request: Request, path: str) -> Response:
        limit = max(1, min(int(request.args.get("limit", "25")), 100))
        page = max(1, int(request.args.get("page", "1")))
        last_page = max(1, math.ceil(len(items) / limit))
        chunk = items[(page - 1) * limit: page * limit]
        url = f"{self.base_url}/{path}"
        return self.ok({
            "data": chunk,
            "links": {"first": f"{url}?page=1", "last": f"{url}?page={last_page}",
                      "prev": f"{url}?page={page - 1}" if page > 1 else None,
                      "next": f"{url}?page={page + 1}" if page < last_page else None},
            "meta": {"current_page": page, "from": (page - 1) * limit + 1 if chunk else None,
                     "last_page": last_page, "path": url, "per_page": limit,
                     "links": [{"url": f"{url}?page={page - 1}" if page > 1 else None, "label": "&laquo; Previous",
                                "active": False}]
                     + [{"url": f"{url}?page={n}", "label": str(n), "active": n == page}
                        for n in range(1, last_page + 1)]
                     + [{"url": f"{url}?page={page + 1}" if page < last_page else None, "label": "Next &raquo;",
                         "active": False}],
                     "to": (page - 1) * limit + len(chunk) if chunk else None, "total": len(items)},
        })

    def on_list_fields(self, request: Request) -> Response:
        return self._page(sorted(self.fields, key=lambda f: f["name"].lower()), request, "fields")

    def create_field(self, body: Any) -> Tuple[int, Any]:
        body = body if isinstance(body, dict) else {}
        errors: Dict[str, List[str]] = {}
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            errors["name"] = ["The name field is required."]
        elif any(f["name"].lower() == name.strip().lower() or f["key"] == field_key(name) for f in self.fields):
            errors["name"] = ["The name has already been taken."]
        if body.get("type") not in ("text", "number", "date"):
            errors["type"] = ["The selected type is invalid."]
        if errors:
            return 422, {"message": INVALID, "errors": errors}
        field = self.add_field(name.strip(), body["type"])
        return 201, {"data": {k: field[k] for k in ("id", "name", "key", "type", "is_default")}}

    def on_create_field(self, request: Request) -> Response:
        return self._json_result(self.create_field(self.json_body(request)))

    def on_list_groups(self, request: Request) -> Response:
        wanted = request.args.get("filter[name]")
        groups = [g for g in self.groups.values() if not wanted or wanted.lower() in g["name"].lower()]
        return self._page(groups, request, "groups")

    def create_group(self, body: Any) -> Tuple[int, Any]:
        name = body.get("name") if isinstance(body, dict) else None
        if not isinstance(name, str) or not name.strip():
            return 422, {"message": INVALID, "errors": {"name": ["The name field is required."]}}
        if len(name) > 255:
            return 422, {"message": INVALID, "errors": {"name": ["The name may not be greater than 255 characters."]}}
        if self.group_names_unique_ci and any(g["name"].lower() == name.lower() for g in self.groups.values()):
            return 422, {"message": INVALID, "errors": {"name": ["The name has already been taken."]}}
        return 201, {"data": self.add_group(name)}

    def on_create_group(self, request: Request) -> Response:
        return self._json_result(self.create_group(self.json_body(request)))

    # -- batch ---------------------------------------------------------------------------------
    def _batch_item(self, item: Any) -> Tuple[int, Any]:
        """One request inside a batch, routed by the same rules as a direct request."""
        if not isinstance(item, dict):
            return 422, {"message": INVALID}
        path = "/" + str(item.get("path", "")).lstrip("/")
        method = str(item.get("method", "GET")).upper()
        body = item.get("body")
        handlers = {  # what a batch may carry here: the calls that have a body-level implementation
            "upsert": lambda a: self.upsert(body),
            "get_subscriber": lambda a: self.get_subscriber(a["ref"]),
            "assign": lambda a: self.assign(a["sid"], a["gid"]),
            "unassign": lambda a: self.unassign(a["sid"], a["gid"]),
            "create_field": lambda a: self.create_field(body),
            "create_group": lambda a: self.create_group(body),
        }
        try:
            endpoint, args = self.url_map.bind("localhost").match(path, method=method)
        except (NotFound, MethodNotAllowed):
            endpoint, args = "", {}
        if endpoint not in handlers:
            return 404, {"message": f"The route {path.lstrip('/')} could not be found."}
        return handlers[endpoint](args)

    def _disorder(self, responses: List[Dict[str, Any]]) -> None:
        """The batch_disorder knob: the answers of a batch whose items were all done, jumbled."""
        fault = self.batch_disorder.popleft() if self.batch_disorder else None
        if fault == "reversed":
            responses.reverse()
        elif fault == "foreign" and responses:
            stranger = self._new_subscriber("stranger@elsewhere.example", "active")
            responses[0] = {"code": 200, "body": {"data": self._render(stranger)}}

    def on_batch(self, request: Request) -> Response:
        body = self.json_body(request)
        items = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(items, list) or not items:
            return self.ok({"message": INVALID, "errors": {"requests": ["The requests field is required."]}}, 422)
        if len(items) > 50:
            return self.ok({"message": INVALID,
                            "errors": {"requests": ["The requests may not have more than 50 items."]}}, 422)
        if self.account_refusal and not self.account_refusal_per_item:
            return self._json_result(ACCOUNT_REFUSALS[self.account_refusal])
        responses: List[Dict[str, Any]] = []
        codes: List[int] = []
        for item in items:
            fault = self.item_faults.popleft() if self.item_faults else None
            item_body = item.get("body") if isinstance(item, dict) else None
            if not fault and self._fails(item_body):
                fault = 503
            elif not fault and self._fails(item_body, self.written_then_failing):
                self._batch_item(item)
                fault = 503
            if fault:
                responses.append({"code": fault, "body": {"message": "Server Error"}})
                codes.append(fault)
                continue
            code, out = ACCOUNT_REFUSALS[self.account_refusal] if self.account_refusal else self._batch_item(item)
            if self.batch_item_shape == "import" and 200 <= code < 300:
                out = None  # the import path's answer: done, but which subscriber is not said
            responses.append({"code": code, "body": out})
            codes.append(code)
        self._disorder(responses)
        ok = sum(1 for c in codes if 200 <= c < 300)
        summary = {"total": len(responses), "successful": ok, "failed": len(responses) - ok}
        if self.batch_item_shape == "summary":
            return self.ok(summary)
        return self.ok({**summary, "responses": responses})

