"""Hostile, authenticated webhook bodies through the running stack (gateway -> function -> PostgREST -> Postgres).

Every body Python's json module reads but strict JSON or the database cannot hold (NaN, 1e400, a 5,000-digit
integer, a lone surrogate, \\u0000) is a 400 naming the problem, and its exact bytes are in ghl_webhook_events;
a hypothesis property over generated hostile bodies finds no 5xx and no body that is not kept. A wild
X-Request-Id is not echoed (it overflowed the gateway's buffer: a 502 for a call that was written).
"""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import TEST_WEBHOOK_SECRET, unique

pytestmark = pytest.mark.stack

HEADERS = {"X-Webhook-Secret": TEST_WEBHOOK_SECRET, "Content-Type": "application/json"}


@pytest.fixture(scope="module")
def location(stack):
    import psycopg

    location_id = unique("hostile_loc")
    with psycopg.connect(stack["database_url"], autocommit=True) as conn:
        conn.execute("INSERT INTO ghl_integrations (location_id, api_token) VALUES (%s, 'token')", (location_id,))
    return location_id


def kept_bytes(event: dict) -> bytes:
    """What the event log holds of a refused body, as bytes: raw_body_bytes when set, else raw_body."""
    return bytes(event["raw_body_bytes"]) if event["raw_body_bytes"] is not None else event["raw_body"].encode()


def events_with(db, marker: str) -> list[dict]:
    return db.execute("SELECT * FROM ghl_webhook_events WHERE raw_body LIKE %s OR call_id = %s "
                      "OR payload ->> 'probe' = %s ORDER BY id", (f"%{marker}%", marker, marker)).fetchall()


# (row of the issue's table, the body's hostile part, words the 400's message must hold, call id in the event log)
HOSTILE = [
    ("NaN", '"notes": NaN', "NaN", None),
    ("Infinity", '"notes": Infinity', "Infinity", None),
    ("-Infinity", '"customData": {"duration": -Infinity}', "-Infinity", None),
    ("1e400", '"duration": 1e400', "too large", None),
    ("-1e400 in a list", '"extra": [1, -1E+400]', "too large", None),
    ("5,000-digit integer", '"duration": ' + "7" * 5000, "digits", None),
    ("lone surrogate", '"notes": "call \\ud800 back"', "surrogate", "id"),
    ("lone low surrogate in a key", '"x\\udc00": 1', "surrogate", "id"),
    ("NUL in notes", '"notes": "a\\u0000b"', "NUL", "id"),
    ("NUL in callId", None, "NUL", "id"),  # the call id itself holds the NUL: the log keeps it without
]


@pytest.mark.parametrize("name, hostile, words, logged_id", HOSTILE, ids=[row[0] for row in HOSTILE])
def test_each_hostile_body_is_400_naming_the_problem_and_kept_exactly(url, http, db, location, name, hostile, words,
                                                                      logged_id):
    call_id = unique("hostile")
    if hostile is None:
        raw = f'{{"callId": "{call_id}\\u0000x", "locationId": "{location}"}}'.encode()
    else:
        raw = f'{{"callId": "{call_id}", "locationId": "{location}", {hostile}}}'.encode()
    response = http.post(url, content=raw, headers=HEADERS)
    assert response.status_code == 400, response.text
    answer = response.json()
    assert answer["error"] == "bad_request" and words in answer["message"], answer
    [event] = events_with(db, call_id)
    assert event["outcome"] == "rejected" and event["error"] == answer["message"]
    assert kept_bytes(event) == raw  # verbatim
    assert event["payload"] is None
    if logged_id:  # the body was JSON: the log names its call (NUL stripped) and location
        assert (event["call_id"], event["location_id"]) == (call_id + ("x" if hostile is None else ""), location)
    assert db.execute("SELECT count(*) AS n FROM sales_calls WHERE external_call_id LIKE %s",
                      (call_id + "%",)).fetchone()["n"] == 0


def test_a_refused_body_keeps_its_exact_bytes_when_text_cannot_hold_them(url, http, db, location):
    """A NUL byte and invalid UTF-8 as well as a \\u0000 escape: raw_body_bytes holds the bytes."""
    call_id = unique("hostile")
    raw = f'{{"callId": "{call_id}", "notes": "\\u0000", "x": "'.encode() + b"\x00\xff\xfe" + b'"}'
    response = http.post(url, content=raw, headers=HEADERS)
    assert response.status_code == 400 and "UTF-8" in response.json()["message"]
    [event] = events_with(db, call_id)
    assert bytes(event["raw_body_bytes"]) == raw


def test_escapes_that_look_hostile_but_are_not_are_taken(url, http, db, location):
    """An escaped backslash before u0000, a surrogate pair, NUL-like text: stored as sent."""
    call_id = unique("benign")
    notes = "\\u0000 is six characters; \\ud800 too; \U0001F600 is a pair; 1e400 and NaN are words"
    raw = json.dumps({"callId": call_id, "locationId": location, "notes": notes, "duration": 1e300 / 1e300})
    response = http.post(url, content=raw, headers=HEADERS)
    assert response.status_code == 200, response.text
    row = db.execute("SELECT notes FROM sales_calls WHERE external_call_id = %s", (call_id,)).fetchone()
    assert row["notes"] == notes


def test_the_rejection_record_itself_takes_any_ids_and_message(service_client, db):
    """Defence in depth: whatever ids and message a rejection carries (NUL, lone surrogates, 10,000 characters),
    the event log's text columns take what the service writes; the body stays exact."""
    from shared import errors
    from shared.adapters.supabase_db import call_rpc
    from shared.services.ingest_call_event import _reject

    marker = unique("reject")
    raw = f'{{"callId": "{marker}"}}'.encode()
    hostile = marker + "\x00\ud800" + "z" * 10_000
    _reject(lambda function, params: call_rpc(service_client, function, params), raw,
            errors.BadRequest("refused: " + hostile), None, call_id=hostile, location_id="\udfff" + hostile)
    [event] = events_with(db, marker)
    assert event["call_id"] == (marker + "z" * 200)[:200] and event["location_id"] == event["call_id"]
    assert event["error"].startswith("refused: " + marker + "z") and len(event["error"]) == 2000
    assert kept_bytes(event) == raw


# ---- X-Request-Id ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("given_id, echoed", [
    ("req-1.2_3:abc", True),
    ("r" * 128, True),
    ("r" * 129, False),
    ("x" * 4000, False),  # was a 502 from the gateway, after the call had been written
    ("two words", False),
    ("<script>", False),
    ("caf\u00e9", False),  # sent as UTF-8 bytes
])
def test_only_a_sane_request_id_is_echoed(url, http, db, location, given_id, echoed):
    call_id = unique("reqid")
    response = http.post(url, json={"callId": call_id, "locationId": location},
                         headers={**HEADERS, "X-Request-Id": given_id.encode()})
    assert response.status_code == 200, response.text
    if echoed:
        assert response.headers["X-Request-Id"] == given_id
    else:
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-Id"])
    assert db.execute("SELECT count(*) AS n FROM sales_calls WHERE external_call_id = %s",
                      (call_id,)).fetchone()["n"] == 1


# ---- generated hostile bodies ------------------------------------------------------------------------------

ESCAPES = ["\\u0000", "\\ud800", "\\uDBFF", "\\udfff", "\\uDC00", "\\ud83d\\ude00", "\\\\u0000", "\\u00e9", "\\n"]
NUMBERS = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1E309", "1e-400", "1.7976931348623157e308",
           "9" * 4301, "-" + "9" * 4301, "9" * 4300, "0", "-0", "3.5", "184"]


def _string_with_escape(parts: tuple[str, str, str]) -> str:
    before, escape, after = parts
    return json.dumps(before)[:-1] + escape + json.dumps(after)[1:]


STRINGS = st.one_of(st.text(max_size=12).map(json.dumps),
                    st.tuples(st.text(max_size=4), st.sampled_from(ESCAPES), st.text(max_size=4))
                    .map(_string_with_escape))
SCALARS = st.one_of(STRINGS, st.sampled_from(NUMBERS), st.sampled_from(["null", "true", "false"]),
                    st.integers().map(str), st.floats(allow_nan=False, allow_infinity=False).map(json.dumps))
# JSON texts built from tokens, so they can hold what json.dumps never writes
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3).map(lambda items: "[" + ", ".join(items) + "]"),
    st.lists(st.tuples(STRINGS, inner), max_size=3).map(
        lambda pairs: "{" + ", ".join(f"{k}: {v}" for k, v in pairs) + "}")), max_leaves=10)
FIELDS = st.lists(st.tuples(st.one_of(st.sampled_from(['"notes"', '"duration"', '"transcription"', '"extra"',
                                                       '"callStartTime"', '"customData"']), STRINGS), VALUES),
                  min_size=1, max_size=4)


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(fields=FIELDS)
def test_generated_hostile_bodies_are_never_a_5xx_and_always_kept(url, http, db, location, fields):
    marker = unique("gen")
    raw = (f'{{"probe": "{marker}", "callId": "{marker}", "locationId": "{location}", '
           + ", ".join(f"{k}: {v}" for k, v in fields) + "}").encode()
    response = http.post(url, content=raw, headers=HEADERS)
    assert response.status_code in (200, 400), f"{response.status_code}: {response.text[:300]}"
    answer = response.json()
    [event] = events_with(db, marker)  # every authenticated body is in the event log, once
    if response.status_code == 400:
        assert answer["message"].strip() and event["outcome"] == "rejected"
        assert kept_bytes(event) == raw
    else:
        assert event["outcome"] in ("inserted", "updated") and event["payload"]["probe"] == marker
        assert db.execute("SELECT count(*) AS n FROM sales_calls WHERE external_call_id = %s",
                          (marker,)).fetchone()["n"] == 1


# ---- the rule itself (pure, no stack) ----------------------------------------------------------------------

CHARS = st.one_of(st.characters(), st.sampled_from(["\x00", "\ud800", "\udbff", "\udc00", "\udfff", "\\", "u"]))
PY_STRINGS = st.lists(CHARS, max_size=8).map("".join)
PY_VALUES = st.recursive(PY_STRINGS | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.none(),
                         lambda inner: st.lists(inner, max_size=3) | st.dictionaries(PY_STRINGS, inner, max_size=3),
                         max_leaves=8)


@settings(max_examples=400, deadline=None)
@given(value=PY_VALUES, ensure_ascii=st.booleans())
def test_strict_json_refuses_exactly_what_postgres_cannot_store(value, ensure_ascii):
    """Oracle independent of the rule: what json.loads reads must encode as UTF-8 and hold no NUL."""
    from shared import errors
    from shared.domain.strict_json import loads_strict

    text = json.dumps(value, ensure_ascii=ensure_ascii)
    if not ensure_ascii:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return  # not text a request body can carry (the function reads bodies as UTF-8)
    storable = all("\x00" not in s and _encodes(s) for s in _strings(json.loads(text)))
    if storable:
        assert loads_strict(text) == json.loads(text)
    else:
        with pytest.raises(errors.BadRequest, match="cannot be stored"):
            loads_strict(text)


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@pytest.mark.parametrize("text", [
    '{"a": "\\\\ud800\\udc00"}',  # an escaped backslash, then a real lone low surrogate
    '{"a": "\\\\\\u0000"}',  # an escaped backslash, then a real NUL
    '{"a": "\\ud800\\ud800\\udc00"}',  # a lone high before a pair
    '{"a": ["ok", {"b": "\\uDFFF"}]}',
])
def test_strict_json_is_not_fooled_by_neighbouring_escapes(text):
    from shared import errors
    from shared.domain.strict_json import loads_strict

    with pytest.raises(errors.BadRequest, match="cannot be stored"):
        loads_strict(text)


def test_an_upstream_answer_is_made_storable_not_refused():
    """GHL's answers go through the same rule, cleaned instead of refused (strict_json.loads_storable)."""
    from shared.domain.strict_json import loads_storable

    assert loads_storable('{"a": NaN, "b": 1e400, "c": -Infinity, "d": 1.5}') == {"a": None, "b": None, "c": None,
                                                                                  "d": 1.5}
    assert loads_storable(b'{"t": "Hel\\u0000lo", "k\\u0000": ["a\\ud800b", "\\ud83d\\ude00"]}') == {
        "t": "Hello", "k": ["ab", "\U0001F600"]}
    with pytest.raises(ValueError):
        loads_storable(b"not json")
