"""Property-based fuzzing (hypothesis) of the three functions through the running stack: random JSON, wrong types,
deep nesting, huge strings, invalid UTF-8, SQL and script text in every field.

Properties: no 5xx (the database is up, so not even the documented 503); every 4xx names the problem in a
non-empty "message"; text is stored verbatim where it is stored at all:
  * sales_calls keeps free-text fields as sent, trimmed of surrounding whitespace (notes, transcript,
    recording_url, ghl_contact_id, external_call_id, and from/to when they do not read as phone numbers);
    raw_payload keeps every hit exactly as received (jsonb);
  * a refused body is kept in ghl_webhook_events.raw_body as text; when the bytes are no valid UTF-8 (or hold
    a NUL, which Postgres text cannot), raw_body shows them with U+FFFD (NUL as the six characters \\u0000)
    and raw_body_bytes holds the exact bytes.
"""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import TEST_SCHEDULER_SECRET, TEST_WEBHOOK_SECRET, unique

pytestmark = pytest.mark.stack

FUZZ = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])
WEBHOOK = {"X-Webhook-Secret": TEST_WEBHOOK_SECRET, "Content-Type": "application/json"}
SCHEDULER = {"Authorization": f"Bearer {TEST_SCHEDULER_SECRET}", "Content-Type": "application/json"}

NASTY = [
    "'; DROP TABLE sales_calls; --", "Robert'); DELETE FROM ghl_integrations;--", "1 OR 1=1", "\" OR \"\"=\"",
    "<script>alert(document.cookie)</script>", "<img src=x onerror=alert(1)>", "javascript:alert(1)",
    "${jndi:ldap://127.0.0.1/a}", "{{7*7}}", "%s%s%s%n", "../../../../etc/passwd", "$$; SELECT pg_sleep(5); $$",
    "\\x00\\u0000 not a NUL", "Ünïcødé ✓ 🚀 𝔘 \u202e reversed", "line\nbreak\ttab\r\n", "' UNION SELECT api_token FROM ghl_integrations --",
]
TEXT = st.one_of(st.sampled_from(NASTY), st.text(min_size=1, max_size=300),
                 st.builds(lambda a, b: a + b, st.sampled_from(NASTY), st.text(max_size=50)))
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=15)
# body field -> sales_calls column that keeps it verbatim (trimmed)
VERBATIM_COLUMNS = {"notes": "notes", "transcription": "transcript", "recordingUrl": "recording_url",
                    "contactId": "ghl_contact_id"}


@pytest.fixture(scope="module")
def http():
    with httpx.Client(timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def location(stack):
    import psycopg

    location_id = unique("fuzzloc")
    with psycopg.connect(stack["database_url"], autocommit=True) as conn:
        conn.execute("INSERT INTO ghl_integrations (location_id, api_token) VALUES (%s, %s)",
                     (location_id, "fuzz-token-" + uuid.uuid4().hex))
    return location_id


def assert_named_problem(response: httpx.Response) -> dict:
    assert response.status_code < 500, f"{response.status_code}: {response.text[:500]}"
    answer = response.json()
    if response.status_code >= 400:
        assert isinstance(answer.get("message"), str) and answer["message"].strip(), answer
    return answer


def rejected_event(db, marker: str) -> dict:
    [event] = db.execute("SELECT * FROM ghl_webhook_events WHERE raw_body LIKE %s", (f"%{marker}%",)).fetchall()
    return event


# ---- the webhook -------------------------------------------------------------------------------------------

@FUZZ
@given(body=JSON_VALUES)
def test_random_json_is_answered_with_a_named_problem_or_taken(stack, http, body):
    response = http.post(stack["functions"]["ghl-call-webhook"], content=json.dumps(body), headers=WEBHOOK)
    assert_named_problem(response)
    assert response.status_code in (200, 400, 422)


@FUZZ
@given(field=st.sampled_from(sorted(VERBATIM_COLUMNS)), value=TEXT)
def test_sql_and_script_text_in_every_text_field_is_stored_verbatim(stack, http, db, location, field, value):
    call_id = unique("fz") + " " + NASTY[0]  # the id itself carries SQL text too
    body = {"callId": call_id, "locationId": location, "callStatus": "Answered", "from": value, field: value}
    response = http.post(stack["functions"]["ghl-call-webhook"], content=json.dumps(body), headers=WEBHOOK)
    assert_named_problem(response)
    if "\x00" in value:  # jsonb cannot hold a NUL: refused, and the raw body (where it is escaped) kept as sent
        assert response.status_code == 400
        event = rejected_event(db, unique_part(call_id))
        assert event["raw_body"] == json.dumps(body) and event["raw_body_bytes"] is None
        return
    assert response.status_code == 200, response.text
    row = db.execute("SELECT * FROM sales_calls WHERE external_call_id = %s", (call_id,)).fetchone()
    assert row[VERBATIM_COLUMNS[field]] == (value.strip() or None)
    if row["from_number"] is not None and not row["from_number"].startswith("+"):
        assert row["from_number"] == value.strip()  # not a phone number: kept as sent
    [hit] = row["raw_payload"]["hits"].values()
    assert hit == body  # the hit exactly as received


def unique_part(call_id: str) -> str:
    return call_id.split(" ", 1)[0]


@FUZZ
@given(field=st.sampled_from(["callId", "locationId", "contactId", "notes", "transcription", "callStatus", "direction",
                              "from", "to", "duration", "callStartTime", "disposition", "recordingUrl"]),
       value=st.one_of(st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
                       st.lists(st.integers(), max_size=3), st.booleans()))
def test_a_wrong_type_is_400_naming_the_field(stack, http, location, field, value):
    body = {"callId": unique("wt"), "locationId": location, field: value}
    response = http.post(stack["functions"]["ghl-call-webhook"], content=json.dumps(body), headers=WEBHOOK)
    answer = assert_named_problem(response)
    assert response.status_code == 400 and f"'{field}'" in answer["message"], answer


@FUZZ
@given(garbage=st.binary(min_size=1, max_size=400))
def test_invalid_utf8_is_refused_and_kept_byte_for_byte(stack, http, db, garbage):
    marker = unique("utf")
    raw = b'{"callId": "' + marker.encode() + b'", "notes": "' + garbage + b'\xff"}'
    response = http.post(stack["functions"]["ghl-call-webhook"], content=raw, headers=WEBHOOK)
    answer = assert_named_problem(response)
    assert response.status_code == 400 and "UTF-8" in answer["message"] or "JSON" in answer["message"]
    event = rejected_event(db, marker)
    assert event["outcome"] == "rejected"
    assert bytes(event["raw_body_bytes"]) == raw  # exactly as received
    assert event["raw_body"] == raw.decode("utf-8", errors="replace").replace("\x00", "\\u0000")


@pytest.mark.parametrize("depth, status", [(10, 200), (98, 200), (99, 400), (900, 400), (3000, 400), (100_000, 400)])
def test_deep_nesting_is_taken_up_to_100_levels_then_refused_never_a_5xx(stack, http, db, location, depth, status):
    """The body object, customData and the list make 3 levels: depth 98 is 100 levels (the limit), 99 is 101."""
    call_id = unique("deep")
    body = (f'{{"callId": "{call_id}", "locationId": "{location}", "customData": {{"extra": '
            + "[" * depth + "]" * depth + "}}")
    response = http.post(stack["functions"]["ghl-call-webhook"], content=body.encode(), headers=WEBHOOK)
    answer = assert_named_problem(response)
    assert response.status_code == status, answer
    if response.status_code == 400:
        assert "nested too deeply" in answer["message"], answer
        assert rejected_event(db, call_id)["raw_body"] == body
    else:
        assert response.status_code == 200
        row = db.execute("SELECT raw_payload FROM sales_calls WHERE external_call_id = %s", (call_id,)).fetchone()
        [hit] = row["raw_payload"]["hits"].values()
        assert json.dumps(hit, separators=(",", ":")).count("[") == depth


def test_huge_strings_are_kept_whole_up_to_the_limit_then_413(stack, http, db, location):
    call_id = unique("huge")
    notes = ("x'; DROP TABLE calls; -- <script>" * 8000)[:250_000]
    body = json.dumps({"callId": call_id, "locationId": location, "notes": notes}).encode()
    assert len(body) < 256 * 1024
    assert http.post(stack["functions"]["ghl-call-webhook"], content=body, headers=WEBHOOK).status_code == 200
    stored = db.execute("SELECT notes FROM sales_calls WHERE external_call_id = %s", (call_id,)).fetchone()["notes"]
    assert stored == notes.strip()  # whole, trimmed of the surrounding whitespace like every text field
    too_big = json.dumps({"callId": unique("huge"), "locationId": location, "notes": notes + "y" * 20_000}).encode()
    response = http.post(stack["functions"]["ghl-call-webhook"], content=too_big, headers=WEBHOOK)
    assert response.status_code == 413 and "limit" in response.json()["message"]


# ---- the scheduler-facing functions ---------------------------------------------------------------------------

@FUZZ
@given(body=JSON_VALUES)
def test_random_json_to_the_sync_is_refused_with_a_named_problem(stack, http, location, body):
    if isinstance(body, dict) and set(body) <= {"location_id", "campaign", "limit", "dry_run"} \
            and body.get("location_id") is None:
        body["location_id"] = location  # no run over every location of the test database
    response = http.post(stack["functions"]["sync-prospects-to-ghl"], content=json.dumps(body), headers=SCHEDULER)
    assert_named_problem(response)


@FUZZ
@given(body=st.one_of(JSON_VALUES, st.fixed_dictionaries({"action": st.sampled_from(["pull", "process", "replay"])},
                                                          optional={"location_id": TEXT, "batch_id": TEXT,
                                                                    "kinds": JSON_VALUES, "since": TEXT})))
def test_random_json_to_the_import_is_refused_with_a_named_problem(stack, http, body):
    if isinstance(body, dict) and body.get("action") == "process" and body.get("batch_id") is None:
        body["batch_id"] = str(uuid.uuid4())  # no run over every open batch of the test database
    response = http.post(stack["functions"]["process-ghl-import"], content=json.dumps(body), headers=SCHEDULER)
    assert_named_problem(response)
    assert response.status_code in (400, 422), response.text
