"""Tables for the pure parts of the MailerLite side: the one answer classifier, the writer's
outcome for each verdict, the paginator's shape checks and the learned dialect."""

from __future__ import annotations

import pytest

from sync import mailerlite_answers as answers
from sync.mailerlite import oldest
from sync.mailerlite_answers import classify_upsert, describe_error, item_code, transport_verdict
from sync.mailerlite_dialect import Dialect
from sync.mailerlite_paging import BadPage, cursor_page, numbered_page, smaller_limit
from sync.tunables import DEFAULTS
from sync.writer import Pending, to_result

MAX_REFUSED_RUNS = DEFAULTS.max_refused_runs

SUB = {"data": {"id": "1659", "email": "a@b.co", "fields": {}}}
INVALID = "The given data was invalid."


def refusal(key: str, text: str) -> dict:
    return {"message": INVALID, "errors": {key: [text]}}


@pytest.mark.parametrize("code,body,batch_item,kind", [
    (201, SUB, False, answers.WRITTEN),
    (200, SUB, True, answers.WRITTEN),
    # A success that names no subscriber: garbled from a single request, not understood in a batch.
    (200, None, False, answers.RETRY),
    (200, None, True, answers.NOT_UNDERSTOOD),
    (201, {"data": {"email": "a@b.co"}}, True, answers.NOT_UNDERSTOOD),
    (201, {"data": {"id": {"n": 1}}}, True, answers.NOT_UNDERSTOOD),  # an id that is not an id
    (201, {"data": {"id": True}}, False, answers.RETRY),
    (201, {"data": {"id": " "}}, False, answers.RETRY),
    (201, {"data": {"id": 165968862226941797}}, False, answers.WRITTEN),
    (0, None, True, answers.NOT_UNDERSTOOD),  # no code at all
    (202, SUB, True, answers.NOT_UNDERSTOOD),  # a code no upsert answers with
    (302, None, True, answers.NOT_UNDERSTOOD),
    (302, None, False, answers.RETRY),
    (200, ["a", "list"], False, answers.RETRY),
    # Reactivation refusals, in the recorded wording and in another one.
    (422, refusal("email", "This subscriber is unsubscribed and cannot be imported"), True, answers.NOT_REACTIVATED),
    (422, refusal("email", "This subscriber is junk and cannot be imported"), False, answers.NOT_REACTIVATED),
    (422, {"message": "This subscriber is bounced and can not be reactivated."}, False, answers.NOT_REACTIVATED),
    (422, refusal("status", "An unsubscribed subscriber cannot be resubscribed."), True, answers.NOT_REACTIVATED),
    # The contact's own data: rejected, even when a field's name looks like a status or a plan.
    (422, refusal("email", "The email must be a valid email address."), False, answers.REJECTED),
    (422, refusal("fields.unsubscribed_reason", "The fields.unsubscribed_reason must be a number."), True,
     answers.REJECTED),
    (422, refusal("fields.plan", "The fields.plan may not be greater than 1024 characters."), False,
     answers.REJECTED),
    (422, refusal("groups.0", "The selected groups.0 is invalid."), True, answers.REJECTED),
    # Worth asking again.
    (429, {"message": "Too Many Attempts."}, False, answers.RETRY),
    (429, {"message": "You're being rate limited on import creation."}, True, answers.IMPORT_LIMITED),
    (500, None, True, answers.RETRY),
    (502, {"message": "Server Error"}, False, answers.RETRY),
    (503, None, False, answers.RETRY),
    (408, None, True, answers.RETRY),
    (409, {"message": "Conflict"}, False, answers.RETRY),
    # The account, not the contact: the run stops.
    (401, {"message": "Unauthenticated."}, True, answers.AUTH),
    (402, {"message": "Payment required."}, False, answers.ACCOUNT),
    (403, {"message": "This action is unauthorized."}, True, answers.ACCOUNT),
    (422, {"message": "You have reached the subscribers limit of your plan."}, False, answers.ACCOUNT),
    (400, {"message": "This account is suspended."}, True, answers.ACCOUNT),
    (404, {"message": "Please upgrade your plan to use the API."}, False, answers.ACCOUNT),
    # Any other refusal of one contact: failed now, rejected after a few runs.
    (404, {"message": "Not found"}, False, answers.REFUSED),
    (413, None, True, answers.REFUSED),
    (422, {"message": INVALID}, False, answers.REFUSED),
    (400, {"message": "Bad request"}, True, answers.REFUSED),
])
def test_one_classifier_for_single_answers_and_batch_items(code, body, batch_item, kind):
    assert classify_upsert(code, body, batch_item=batch_item).kind == kind


@pytest.mark.parametrize("code,body,garbled,verdict", [
    (200, {"data": []}, False, None),
    (204, None, False, None),
    (200, None, True, answers.RETRY),  # a 200 whose body is not JSON (an HTML page, a truncated answer)
    (422, None, True, answers.RETRY),
    (404, None, True, None),
    (200, "text", False, answers.RETRY),
    (422, refusal("name", "The name has already been taken."), False, None),  # the caller judges
    (403, None, False, answers.ACCOUNT),
    (401, None, False, answers.AUTH),
    (429, None, False, answers.RETRY),
    (504, None, False, answers.RETRY),
])
def test_transport_verdicts(code, body, garbled, verdict):
    assert transport_verdict(code, body, garbled) == verdict


@pytest.mark.parametrize("item,code", [
    ({"code": 201}, 201), ({"code": "200"}, 200), ({"code": None}, 0), ({}, 0), (None, 0), ({"code": True}, 0),
    ({"code": "ok"}, 0), ({"code": 2.0}, 2),
])
def test_item_codes(item, code):
    assert item_code(item) == code


def test_describe_error_is_one_bounded_line():
    assert describe_error(refusal("email", "bad")) == "email: bad"
    assert describe_error({"message": "x" * 900}) == "x" * 500
    assert describe_error(None) == "no reason given"
    assert "\n" not in describe_error({"errors": {"a": ["one", "two"], "b": "three"}})


def _pending(earlier: int = 0) -> Pending:
    return Pending("7", "a@b.co", {"email": "a@b.co"}, "fp", frozenset({"name"}), frozenset({"G"}),
                   earlier_failures=earlier)


def test_outcome_of_each_verdict():
    written = to_result(_pending(), classify_upsert(201, SUB))
    assert written is not None and (written.kind, written.subscriber_id) == ("created", "1659")
    updated = to_result(_pending(), classify_upsert(200, SUB))
    assert updated is not None and updated.kind == "updated" and updated.groups_set == {"G"}
    kept = to_result(_pending(), classify_upsert(422, refusal("email", "... is unsubscribed and cannot be imported")))
    assert kept is not None and kept.kind == "not_reactivated"
    bad = to_result(_pending(), classify_upsert(422, refusal("email", "The email must be a valid email address.")))
    assert bad is not None and bad.kind == "rejected" and "valid email" in bad.reason
    assert to_result(_pending(), classify_upsert(503, None)) is None


@pytest.mark.parametrize("earlier,outcome", [(0, "failed"), (MAX_REFUSED_RUNS - 2, "failed"),
                                             (MAX_REFUSED_RUNS - 1, "rejected"), (MAX_REFUSED_RUNS + 4, "rejected")])
def test_other_refusals_fail_then_are_rejected_with_their_reason(earlier, outcome):
    result = to_result(_pending(earlier), classify_upsert(404, {"message": "Not found"}))
    assert result is not None and result.kind == outcome
    assert "HTTP 404" in result.reason and "Not found" in result.reason


# -- the paginator's shape checks ----------------------------------------------------------------------

@pytest.mark.parametrize("page", [
    None, [], "text", {}, {"data": None, "meta": {"next_cursor": None}}, {"data": "x", "meta": {}},
    {"data": [1, 2], "meta": {"next_cursor": None}}, {"data": [], "meta": []}, {"data": []},
    {"data": [], "meta": {"next_cursor": 5}},
], ids=["null", "list", "text", "empty", "null-data", "string-data", "non-object-entries", "meta-list",
        "no-meta", "numeric-cursor"])
def test_a_cursor_page_that_is_not_a_page_is_an_error_not_the_end(page):
    with pytest.raises(BadPage):
        cursor_page(page, None, set(), "subscriber listing")


def test_cursor_loops_are_errors():
    page = {"data": [{"id": "1"}], "meta": {"next_cursor": "abc"}}
    assert cursor_page(page, None, set(), "x") == ([{"id": "1"}], "abc")
    with pytest.raises(BadPage):
        cursor_page(page, "abc", set(), "x")  # the same cursor again
    with pytest.raises(BadPage):
        cursor_page(page, "def", {"abc"}, "x")  # a cursor followed before
    assert cursor_page({"data": [], "meta": {"next_cursor": None}}, "abc", set(), "x") == ([], None)


@pytest.mark.parametrize("meta", [
    [], None, {"last_page": "x"}, {"last_page": None}, {"last_page": 1.5}, {"last_page": True}, {"last_page": 0},
    {"last_page": 10**6}, {"last_page": 3, "current_page": 2},
], ids=["list", "null", "text", "null-last", "fraction", "bool", "zero", "huge", "wrong-current"])
def test_a_numbered_page_that_is_not_a_page_is_an_error(meta):
    with pytest.raises(BadPage):
        numbered_page({"data": [], "meta": meta}, 1, "group listing")


def test_numbered_pages_read_right():
    assert numbered_page({"data": [{"id": "1"}], "meta": {"last_page": 3, "current_page": 1}}, 1, "x") == \
        ([{"id": "1"}], 3)
    assert numbered_page({"data": [], "meta": {"last_page": "2"}}, 2, "x") == ([], 2)


@pytest.mark.parametrize("body,asked,smaller", [
    ({"message": "x", "errors": {"limit": ["The limit may not be greater than 100."]}}, 1000, 100),
    ({"message": "x", "errors": {"limit": ["The limit must be at most 250."]}}, 1000, 250),
    ({"message": "The limit is too big."}, 1000, 100),
    ({"message": "x", "errors": {"limit": ["The limit may not be greater than 100."]}}, 100, None),
    ({"message": "x", "errors": {"limit": ["The limit may not be greater than 5000."]}}, 1000, 100),
    ({"message": "x", "errors": {"cursor": ["Invalid cursor."]}}, 1000, None),
    (None, 1000, None),
])
def test_a_refused_page_size_leads_to_a_smaller_one(body, asked, smaller):
    assert smaller_limit(body, asked) == smaller


# -- the learned dialect ---------------------------------------------------------------------------------

def test_dialect_sends_the_documented_reading_until_taught_otherwise():
    dialect = Dialect()
    payload = {"email": "a@b.co", "fields": {"city": None, "birthday": "1990-02-03", "bio": "x" * 300}}
    assert dialect.adapt(payload) == payload
    errors = {"fields.birthday": ["The fields.birthday is not a valid date."],
              "fields.bio": ["The fields.bio may not be greater than 255 characters."]}
    assert dialect.learn_from_refusal(payload, errors)
    adapted = dialect.adapt(payload)
    assert dialect.learn_from_refusal(dict(payload), errors)  # another item of the same batch: again too
    assert not dialect.learn_from_refusal(adapted, errors)  # sent as learned: never a resend loop
    assert adapted["fields"] == {"city": None, "birthday": "1990-02-03 00:00:00", "bio": "x" * 255}
    assert payload["fields"]["bio"] == "x" * 300  # the planned payload is not changed
    assert not dialect.learn_from_success(adapted, {"fields": {"city": None}})
    assert dialect.learn_from_success(adapted, {"fields": {"city": "Bled"}})  # null was ignored
    assert dialect.adapt(payload)["fields"]["city"] == ""
    assert dialect.learn_from_success(payload, {"fields": {"city": "Kranj"}})  # another item sent with null
    assert not dialect.learn_from_success(dialect.adapt(payload), {"fields": {"city": "Bled"}})  # no loop


def test_dialect_ignores_errors_it_cannot_act_on():
    dialect = Dialect()
    payload = {"email": "a@b.co", "fields": {"n": "12", "d": "1990-02-03 10:00"}}
    assert not dialect.learn_from_refusal(payload, {"fields.n": ["The fields.n must be a number."]})
    assert not dialect.learn_from_refusal(payload, {"fields.d": ["The fields.d is not a valid date."]})
    assert not dialect.learn_from_refusal(payload, {"email": ["The email must be a valid email address."]})
    assert not dialect.learn_from_refusal(payload, None)
    assert dialect.adapt(payload) == payload


@pytest.mark.parametrize("groups,chosen", [
    ([{"id": "20"}, {"id": "3"}], "3"),
    ([{"id": "abc"}, {"id": "7"}], "7"),  # an id that is not a plain number never wins over one that is
    ([{"id": "b"}, {"id": "a"}], "a"),  # ...and is still usable, always the same one
    ([{"id": None}, {"id": ""}, {}], None),
    ([], None),
])
def test_of_groups_with_one_name_always_the_same_is_used(groups, chosen):
    found = oldest(groups)
    assert (found or {}).get("id") == chosen
