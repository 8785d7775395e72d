"""The Anthropic stand-in against the official SDK (anthropic 2.x), and its shapes against the SDK's own types.

Every test talks HTTP to the stack's stand-in (the session's `anthropic_standin`) with the stack's key; the pure
rules of the deterministic model (ghl_bridge/anthropic_standin/model.py) are unit-tested at the end.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

import anthropic
import httpx
import pytest
from anthropic.types import Message
from anthropic.types.messages import MessageBatch, MessageBatchIndividualResponse
from anthropic.types.shared import ErrorResponse
from jsonschema import Draft202012Validator
from pydantic import BaseModel

from ghl_bridge.anthropic_standin import model as rules

MODEL = "claude-sonnet-4-5-20250929"
DISPOSITIONS = ["No Answer", "Voicemail", "Gatekeeper", "Incorrect Number", "Not Interested", "Callback Requested",
                "Future Potential", "Meeting Booked", "Do Not Contact"]


class CallAnalysis(BaseModel):
    """The shape the pipeline asks for (its own model lives in the pipeline; this one only exercises the stand-in)."""
    disposition: Literal["No Answer", "Voicemail", "Gatekeeper", "Incorrect Number", "Not Interested",
                         "Callback Requested", "Future Potential", "Meeting Booked", "Do Not Contact"]
    callback_at: str | None
    sentiment: Literal["positive", "neutral", "negative"]
    interest_level: int
    key_points: list[str]
    action_items: list[str]
    objections: list[str]
    buying_signals: list[str]
    engagement_assessment: str
    conversation_quality: str
    summary: str


SCHEMA = anthropic.transform_schema(CallAnalysis)  # what structured outputs accept (constraints move to descriptions)


def prompt(transcript: str, started_at: str = "2026-12-04T15:04:05-05:00", zone: str = "America/New_York") -> str:
    return (f"Analyse the sales call below.\n<call_started_at>{started_at}</call_started_at>\n"
            f"<time_zone>{zone}</time_zone>\n<transcript>\n{transcript}\n</transcript>")


CALLBACK_CALL = """Agent: Hi, this is Dana from Brightline Solar. Is this Mr. Ortiz?
Contact: Speaking. I'm about to walk into a meeting though.
Agent: No problem, when is a better time?
Contact: Call me Tuesday after three, I'll have time then.
Agent: Tuesday after three it is. Talk then."""


def params(transcript: str = CALLBACK_CALL, **overrides) -> dict:
    return {"model": MODEL, "max_tokens": 1024, "messages": [{"role": "user", "content": prompt(transcript)}],
            "output_config": {"format": {"type": "json_schema", "schema": SCHEMA}}, **overrides}


@pytest.fixture
def standin(anthropic_standin):
    """A clean stand-in for each test, left clean for the tests after it."""
    anthropic_standin.reset()
    yield anthropic_standin
    anthropic_standin.reset()


@pytest.fixture
def client(stack, standin) -> anthropic.Anthropic:
    with anthropic.Anthropic(base_url=stack["anthropic_url"], api_key=stack["anthropic_api_key"],
                             max_retries=0) as sdk:
        yield sdk


@pytest.fixture
def raw(stack, standin):
    """Plain HTTP with the documented headers (x-api-key), for the raw JSON and the header checks."""
    with httpx.Client(base_url=stack["anthropic_url"], timeout=30,
                      headers={"x-api-key": stack["anthropic_api_key"], "anthropic-version": "2023-06-01"}) as http:
        yield http


# ---- Messages through the SDK ------------------------------------------------------------------------------------

def test_structured_answer_through_the_sdk_validates_against_the_schema(client):
    message = client.messages.create(**params())
    assert isinstance(message, Message) and message.type == "message" and message.role == "assistant"
    assert message.model == MODEL and message.stop_reason == "end_turn"
    assert message.content[0].type == "text"
    answer = json.loads(message.content[0].text)
    assert list(Draft202012Validator(SCHEMA).iter_errors(answer)) == []
    analysis = CallAnalysis.model_validate(answer)
    assert analysis.disposition == "Callback Requested"
    assert analysis.callback_at == "2026-12-08T15:00:00-05:00"  # the Tuesday after Friday 4 December, 15:00 local
    assert 3 <= len(analysis.key_points) <= 5 and 0 <= analysis.interest_level <= 10
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    assert message.usage.cache_creation_input_tokens == 0 and message.usage.cache_read_input_tokens == 0
    assert message.usage.output_tokens == -(-len(message.content[0].text) // 4)  # ceil(characters / 4)


def test_same_request_same_answer(client):
    first = client.messages.create(**params()).content[0].text
    again = client.messages.create(**params()).content[0].text
    assert first == again


def test_any_schema_is_filled_by_type(client):
    schema = {"type": "object", "additionalProperties": False, "required": ["disposition", "extra"],
              "properties": {
                  "disposition": {"type": "string", "enum": DISPOSITIONS},
                  "extra": {"$ref": "#/$defs/Extra"},
                  "stage": {"enum": ["lead", "qualified"]},
                  "score": {"type": "number"}, "flag": {"type": "boolean"}, "when": {"type": "string",
                                                                                      "format": "date-time"},
                  "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                  "maybe": {"anyOf": [{"type": "integer"}, {"type": "null"}]}},
              "$defs": {"Extra": {"type": "object", "additionalProperties": False, "required": ["note"],
                                  "properties": {"note": {"type": "string"}, "count": {"type": "integer"}}}}}
    message = client.messages.create(**params(output_config={"format": {"type": "json_schema", "schema": schema}}))
    answer = json.loads(message.content[0].text)
    assert list(Draft202012Validator(schema).iter_errors(answer)) == []
    assert answer["disposition"] == "Callback Requested"  # a known field keeps its rule
    assert answer["stage"] == "lead" and answer["extra"] == {"note": "", "count": 0} and len(answer["tags"]) == 1


def test_known_fields_are_filled_in_nested_objects_too(client):
    schema = {"type": "object", "additionalProperties": False, "required": ["analysis", "version"],
              "properties": {"analysis": {"anyOf": [{"$ref": "#/$defs/CallAnalysis"}, {"type": "null"}]},
                             "version": {"const": "v1"}},
              "$defs": {"CallAnalysis": SCHEMA}}
    message = client.messages.create(**params(output_config={"format": {"type": "json_schema", "schema": schema}}))
    answer = json.loads(message.content[0].text)
    assert list(Draft202012Validator(schema).iter_errors(answer)) == []
    assert answer["version"] == "v1" and answer["analysis"]["disposition"] == "Callback Requested"
    assert answer["analysis"]["callback_at"] == "2026-12-08T15:00:00-05:00"


def test_without_a_schema_the_answer_is_the_summary_text(client):
    message = client.messages.create(model="claude-haiku-4-5", max_tokens=512,
                                      messages=[{"role": "user", "content": prompt(CALLBACK_CALL)}])
    assert "Callback Requested" in message.content[0].text


def test_max_tokens_cuts_the_answer(client):
    message = client.messages.create(**params(max_tokens=10))
    assert message.stop_reason == "max_tokens" and message.usage.output_tokens == 10
    with pytest.raises(ValueError):
        json.loads(message.content[0].text)


# ---- errors in Anthropic's shape, raised by the SDK as its own exceptions -------------------------------------------

def test_wrong_key_is_an_authentication_error(stack, standin):
    with anthropic.Anthropic(base_url=stack["anthropic_url"], api_key="not-a-key-of-this-stack", max_retries=0) as sdk:
        with pytest.raises(anthropic.AuthenticationError) as raised:
            sdk.messages.create(**params())
    assert raised.value.status_code == 401
    assert raised.value.body["error"]["type"] == "authentication_error"
    assert "not-a-key-of-this-stack" not in raised.value.response.text


def test_both_key_headers_are_accepted_and_the_version_is_required(stack, raw):
    body = params()
    assert raw.post("/v1/messages", json=body).status_code == 200  # x-api-key (the documented header)
    bearer = httpx.post(f"{stack['anthropic_url']}/v1/messages", json=body, timeout=30,
                        headers={"Authorization": f"Bearer {stack['anthropic_api_key']}",
                                 "anthropic-version": "2026-10-21"})
    assert bearer.status_code == 200  # Authorization: Bearer (what SDK 2.x sends)
    missing = httpx.post(f"{stack['anthropic_url']}/v1/messages", json=body, timeout=30)
    assert missing.status_code == 401 and missing.json()["error"]["type"] == "authentication_error"
    no_version = raw.post("/v1/messages", json=body, headers={"anthropic-version": ""})
    assert no_version.status_code == 400 and "anthropic-version" in no_version.json()["error"]["message"]
    bad_version = raw.post("/v1/messages", json=body, headers={"anthropic-version": "latest"})
    assert bad_version.status_code == 400


def test_unknown_model_is_not_found(client):
    with pytest.raises(anthropic.NotFoundError) as raised:
        client.messages.create(**params(model="claude-sonnet-9"))
    assert raised.value.body["error"] == {"type": "not_found_error", "message": "model: claude-sonnet-9"}


def test_missing_max_tokens_is_a_bad_request(client):
    body = {k: v for k, v in params().items() if k != "max_tokens"}
    with pytest.raises(anthropic.BadRequestError) as raised:
        client.post("/v1/messages", body=body, cast_to=Message)
    assert raised.value.body["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in raised.value.body["error"]["message"]


@pytest.mark.parametrize("change, words", [
    ({"max_tokens": 0}, "max_tokens"),
    ({"max_tokens": "10"}, "max_tokens"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, "role"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}]}, "non-empty"),
    ({"output_config": {"format": {"type": "json_object"}}}, "json_schema"),
    ({"output_config": {"format": {"type": "json_schema", "schema": {"type": "objekt"}}}}, "valid JSON schema"),
    ({"output_config": {"format": {"type": "json_schema", "schema": {
        "type": "object", "properties": {"a": {"type": "string"}}}}}}, "additionalProperties"),
    ({"output_config": {"format": {"type": "json_schema", "schema": {
        "type": "object", "additionalProperties": False,
        "properties": {"score": {"type": "integer", "minimum": 0, "maximum": 10}}}}}}, "minimum"),
    ({"output_format": {"type": "json_schema", "schema": SCHEMA}}, "output_format"),
    ({"stream": True}, "stream"),
])
def test_bad_requests_are_refused_with_the_reason(client, change, words):
    body = {**params(), **change}
    with pytest.raises(anthropic.BadRequestError) as raised:
        client.post("/v1/messages", body=body, cast_to=Message)
    assert words in raised.value.body["error"]["message"]


def test_injected_429_carries_retry_after_and_headers(client, standin):
    standin.inject("429", retry_after=3)
    with pytest.raises(anthropic.RateLimitError) as raised:
        client.messages.create(**params())
    headers = raised.value.response.headers
    assert headers["retry-after"] == "3" and headers["request-id"].startswith("req_")
    assert "anthropic-ratelimit-requests-remaining" in headers
    assert raised.value.body["error"]["type"] == "rate_limit_error"
    assert client.messages.create(**params()).stop_reason == "end_turn"  # one fault, then normal answers


def test_the_sdk_honours_retry_after(stack, standin):
    standin.inject("429", retry_after=1)
    with anthropic.Anthropic(base_url=stack["anthropic_url"], api_key=stack["anthropic_api_key"],
                             max_retries=1) as sdk:
        started = time.monotonic()
        message = sdk.messages.create(**params())
        waited = time.monotonic() - started
    assert message.stop_reason == "end_turn" and waited >= 0.9
    statuses = [r["status"] for r in standin.requests() if r["path"] == "/v1/messages"]
    assert statuses == [429, 200]


def test_injected_529_is_overloaded(client, standin):
    standin.inject("529", count=2)
    for _ in range(2):
        with pytest.raises(anthropic.InternalServerError) as raised:
            client.messages.create(**params())
        assert raised.value.status_code == 529 and raised.value.body["error"]["type"] == "overloaded_error"
    assert isinstance(raised.value, getattr(anthropic, "OverloadedError", anthropic.InternalServerError))


def test_injected_invalid_schema_violation_and_refusal(client, standin):
    standin.inject("invalid")
    standin.inject("schema_violation")
    standin.inject("refusal")
    invalid = client.messages.create(**params())
    with pytest.raises(ValueError):
        json.loads(invalid.content[0].text)
    violating = json.loads(client.messages.create(**params()).content[0].text)
    assert list(Draft202012Validator(SCHEMA).iter_errors(violating)) != []
    refused = client.messages.create(**params())
    assert refused.stop_reason == "refusal" and refused.stop_details.type == "refusal"
    assert [r.get("fault") for r in standin.requests()] == ["invalid", "schema_violation", "refusal"]


def test_latency_delays_every_answer(client, standin):
    standin.set_latency(300)
    started = time.monotonic()
    client.messages.create(**params())
    assert time.monotonic() - started >= 0.3


# ---- rate limits -----------------------------------------------------------------------------------------------------

def test_rate_limit_headers_count_down(raw):
    first = raw.post("/v1/messages", json=params())
    second = raw.post("/v1/messages", json=params())
    assert first.status_code == second.status_code == 200
    used = first.json()["usage"]
    for name in ("requests", "input-tokens", "output-tokens"):
        for part in ("limit", "remaining", "reset"):
            assert f"anthropic-ratelimit-{name}-{part}" in second.headers
    assert int(first.headers["anthropic-ratelimit-requests-remaining"]) == \
        int(second.headers["anthropic-ratelimit-requests-remaining"]) + 1
    assert int(first.headers["anthropic-ratelimit-input-tokens-remaining"]) - used["input_tokens"] == \
        int(second.headers["anthropic-ratelimit-input-tokens-remaining"])
    assert int(first.headers["anthropic-ratelimit-output-tokens-remaining"]) - used["output_tokens"] == \
        int(second.headers["anthropic-ratelimit-output-tokens-remaining"])
    reset = datetime.fromisoformat(second.headers["anthropic-ratelimit-requests-reset"].replace("Z", "+00:00"))
    assert 0 < (reset - datetime.now(reset.tzinfo)).total_seconds() <= 61


def test_requests_per_minute_limit_refuses_with_retry_after(raw, standin):
    standin.set_limits(requests_per_minute=2)
    assert [raw.post("/v1/messages", json=params()).status_code for _ in range(2)] == [200, 200]
    refused = raw.post("/v1/messages", json=params())
    assert refused.status_code == 429 and refused.json()["error"]["type"] == "rate_limit_error"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["anthropic-ratelimit-requests-remaining"] == "0"


def test_input_tokens_per_minute_limit(raw, standin):
    one = raw.post("/v1/messages", json=params()).json()["usage"]["input_tokens"]
    standin.reset()
    standin.set_limits(input_tokens_per_minute=one * 2 + one // 2)
    assert [raw.post("/v1/messages", json=params()).status_code for _ in range(2)] == [200, 200]
    refused = raw.post("/v1/messages", json=params())
    assert refused.status_code == 429 and "input tokens" in refused.json()["error"]["message"]
    assert int(refused.headers["retry-after"]) >= 1


# ---- batches through the SDK ----------------------------------------------------------------------------------------

def test_batch_create_retrieve_results(client, standin):
    batch = client.messages.batches.create(requests=[
        {"custom_id": "call-1", "params": params()},
        {"custom_id": "call-2", "params": params(model="claude-unknown")},
        {"custom_id": "call-3", "params": {k: v for k, v in params().items() if k != "max_tokens"}},
    ])
    assert isinstance(batch, MessageBatch) and batch.processing_status == "in_progress"
    assert batch.request_counts.processing == 3 and batch.results_url is None
    assert (batch.expires_at - batch.created_at).total_seconds() == 24 * 3600
    ended = client.messages.batches.retrieve(batch.id)  # delay 0: the first GET ends it
    assert ended.processing_status == "ended" and ended.ended_at is not None
    assert ended.request_counts.succeeded == 1 and ended.request_counts.errored == 2
    results = {r.custom_id: r for r in client.messages.batches.results(batch.id)}
    assert set(results) == {"call-1", "call-2", "call-3"}
    succeeded = results["call-1"].result
    assert succeeded.type == "succeeded" and succeeded.message.usage.service_tier == "batch"
    assert json.loads(succeeded.message.content[0].text)["callback_at"] == "2026-12-08T15:00:00-05:00"
    assert results["call-2"].result.type == "errored"
    assert results["call-2"].result.error.error.type == "not_found_error"
    assert results["call-3"].result.error.error.type == "invalid_request_error"
    logged = [r for r in standin.requests() if r["path"] == "/v1/messages/batches"]
    assert logged[0]["custom_ids"] == ["call-1", "call-2", "call-3"]
    assert [b.id for b in client.messages.batches.list()] == [batch.id]


def test_batch_delay_admin_end_and_outcomes(client, standin):
    standin.set_batch_delay(3600)
    standin.set_batch_outcome("call-b", "expired")
    standin.set_batch_outcome("call-c", "errored")
    standin.set_batch_outcome("call-d", "refusal")
    batch = client.messages.batches.create(requests=[{"custom_id": c, "params": params()}
                                                     for c in ("call-a", "call-b", "call-c", "call-d")])
    assert client.messages.batches.retrieve(batch.id).processing_status == "in_progress"
    with pytest.raises(anthropic.AnthropicError):
        list(client.messages.batches.results(batch.id))  # no results_url before it ends
    assert standin.end_batch(batch.id)["processing_status"] == "ended"
    results = {r.custom_id: r.result for r in client.messages.batches.results(batch.id)}
    assert results["call-a"].type == "succeeded" and results["call-b"].type == "expired"
    assert results["call-c"].type == "errored" and results["call-c"].error.error.type == "api_error"
    assert results["call-d"].type == "succeeded" and results["call-d"].message.stop_reason == "refusal"
    counts = client.messages.batches.retrieve(batch.id).request_counts
    assert (counts.succeeded, counts.expired, counts.errored, counts.processing) == (2, 1, 1, 0)
    # an outcome applies once: the same custom id in the next batch succeeds
    again = client.messages.batches.create(requests=[{"custom_id": "call-b", "params": params()}])
    standin.end_batch(again.id)
    assert [r.result.type for r in client.messages.batches.results(again.id)] == ["succeeded"]


def test_batch_cancel(client, standin):
    standin.set_batch_delay(3600)
    batch = client.messages.batches.create(requests=[{"custom_id": "x1", "params": params()}])
    canceling = client.messages.batches.cancel(batch.id)
    assert canceling.processing_status == "canceling" and canceling.cancel_initiated_at is not None
    ended = client.messages.batches.retrieve(batch.id)
    assert ended.processing_status == "ended" and ended.request_counts.canceled == 1
    assert [r.result.type for r in client.messages.batches.results(batch.id)] == ["canceled"]


def test_batch_request_errors(client):
    with pytest.raises(anthropic.BadRequestError):
        client.messages.batches.create(requests=[{"custom_id": "same", "params": params()},
                                                 {"custom_id": "same", "params": params()}])
    with pytest.raises(anthropic.BadRequestError):
        client.messages.batches.create(requests=[{"custom_id": "has space", "params": params()}])
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.retrieve("msgbatch_doesnotexist")


# ---- the shapes, strictly against the SDK's own types ------------------------------------------------------------------

def assert_same_keys(raw_value: Any, dumped: Any, where: str = "$") -> None:
    """Every key of the raw JSON is a field the SDK knows (it appears in model_dump(exclude_unset)) and back."""
    if isinstance(raw_value, dict):
        assert isinstance(dumped, dict), where
        assert set(raw_value) == set(dumped), f"{where}: raw {sorted(raw_value)} vs SDK {sorted(dumped)}"
        for key in raw_value:
            assert_same_keys(raw_value[key], dumped[key], f"{where}.{key}")
    elif isinstance(raw_value, list):
        assert isinstance(dumped, list) and len(raw_value) == len(dumped), where
        for index, (a, b) in enumerate(zip(raw_value, dumped)):
            assert_same_keys(a, b, f"{where}[{index}]")


def assert_no_extra(instance: Any, where: str = "$") -> None:
    """No field of the answer landed in a model's `extra` (a name the SDK does not have)."""
    if isinstance(instance, BaseModel):
        assert not (instance.model_extra or {}), f"{where}: unknown to the SDK: {sorted(instance.model_extra)}"
        for name in type(instance).model_fields:
            assert_no_extra(getattr(instance, name), f"{where}.{name}")
    elif isinstance(instance, list):
        for index, item in enumerate(instance):
            assert_no_extra(item, f"{where}[{index}]")


def strictly(sdk_type, raw_value: dict):
    instance = sdk_type.model_validate(raw_value)
    assert_no_extra(instance)
    assert_same_keys(raw_value, instance.model_dump(exclude_unset=True, mode="json"))
    missing = [name for name, info in sdk_type.model_fields.items() if info.is_required() and name not in raw_value]
    assert not missing
    return instance


def test_shapes_match_the_sdk_types_strictly(raw, standin):
    answer = raw.post("/v1/messages", json=params())
    strictly(Message, answer.json())
    standin.inject("refusal")
    strictly(Message, raw.post("/v1/messages", json=params()).json())

    error = raw.post("/v1/messages", json=params(model="claude-nope"))
    assert error.status_code == 404
    strictly(ErrorResponse, error.json())

    created = raw.post("/v1/messages/batches", json={"requests": [
        {"custom_id": "s1", "params": params()}, {"custom_id": "s2", "params": params(max_tokens=0)},
        {"custom_id": "s3", "params": params()}, {"custom_id": "s4", "params": params()}]})
    assert created.status_code == 200
    strictly(MessageBatch, created.json())
    standin.set_batch_outcome("s3", "expired")
    standin.set_batch_outcome("s4", "canceled")
    ended = raw.get(f"/v1/messages/batches/{created.json()['id']}")
    strictly(MessageBatch, ended.json())
    results = raw.get(ended.json()["results_url"])
    assert results.status_code == 200
    lines = [json.loads(line) for line in results.text.splitlines()]
    assert {line["result"]["type"] for line in lines} == {"succeeded", "errored", "expired", "canceled"}
    for line in lines:
        strictly(MessageBatchIndividualResponse, line)
    listing = raw.get("/v1/messages/batches", params={"limit": 5}).json()
    assert set(listing) == {"data", "has_more", "first_id", "last_id"}
    for item in listing["data"]:
        strictly(MessageBatch, item)


def test_the_request_log_never_holds_the_key(stack, client, standin):
    client.messages.create(**params())
    client.messages.batches.create(requests=[{"custom_id": "k1", "params": params()}])
    logged = standin.requests()
    assert stack["anthropic_api_key"] not in json.dumps(logged)
    assert logged[0]["auth"] == "bearer" and logged[0]["model"] == MODEL and logged[0]["status"] == 200
    assert len(logged[0]["transcript_sha256"]) == 64 and logged[0]["transcript_head"] == CALLBACK_CALL[:40]
    assert logged[1]["transcripts"]["k1"]["transcript_sha256"] == logged[0]["transcript_sha256"]


# ---- the deterministic model's rules (pure) ---------------------------------------------------------------------------

FRIDAY = datetime(2026, 12, 4, 15, 4, 5, tzinfo=ZoneInfo("America/New_York"))


@pytest.mark.parametrize("phrase, expected", [
    ("call me Tuesday after three", "2026-12-08T15:00:00-05:00"),
    ("call me back tomorrow at 10am", "2026-12-05T10:00:00-05:00"),
    ("try me Friday morning", "2026-12-11T09:00:00-05:00"),
    ("next week", "2026-12-07T09:00:00-05:00"),
    ("tomorrow morning around nine", "2026-12-05T09:00:00-05:00"),
    ("next Monday at 2:30", "2026-12-07T14:30:00-05:00"),
    ("by the end of the week", "2026-12-11T09:00:00-05:00"),
    ("in an hour", "2026-12-04T16:04:00-05:00"),
    ("call me at 4", "2026-12-04T16:00:00-05:00"),
    ("call me at 9", "2026-12-05T09:00:00-05:00"),  # 9 am has passed today: tomorrow
    ("half past two on Wednesday", "2026-12-09T14:30:00-05:00"),
    ("quarter to five tomorrow", "2026-12-05T16:45:00-05:00"),
    ("December 10th at noon", "2026-12-10T12:00:00-05:00"),
    ("in two weeks", "2026-12-18T09:00:00-05:00"),
    ("later this afternoon", "2026-12-04T16:00:00-05:00"),  # 14:00 has passed: the next full hour
    ("we have 30 people on the team", None),
])
def test_callback_phrases_resolve_against_the_call_start(phrase, expected):
    resolved = rules.resolve_time(phrase, FRIDAY)
    assert (resolved.isoformat() if resolved else None) == expected


def test_callback_times_take_the_offset_of_their_own_day():
    before_dst_ends = datetime(2026, 10, 30, 11, 0, tzinfo=ZoneInfo("America/New_York"))  # EDT, -04:00
    assert rules.resolve_time("next Monday at 9", before_dst_ends).isoformat() == "2026-11-02T09:00:00-05:00"


@pytest.mark.parametrize("transcript, disposition", [
    ("", "No Answer"),
    ("Agent: Hello? Hello? Is anyone there?", "No Answer"),
    ("Contact: Hi, you've reached Pat. Please leave a message after the tone.\nAgent: Hi Pat, it's Sam, call me "
     "back at 555-0100.", "Voicemail"),
    ("Agent: Hi, is Mark there?\nContact: He's in a meeting. Can I take a message?\nAgent: Sure.", "Gatekeeper"),
    ("Agent: Is this Linda?\nContact: No, you have the wrong number.", "Incorrect Number"),
    ("Agent: Hi!\nContact: Stop calling me. Take me off your list.", "Do Not Contact"),
    ("Agent: Can I tell you about it?\nContact: I'm not interested in the old plan, but book me for a demo.\n"
     "Agent: Great, Thursday at 2?\nContact: Yes, that works.", "Meeting Booked"),
    ("Agent: Can I follow up next month?\nContact: No. Don't call me back.", "Not Interested"),
    ("Agent: Would this help?\nContact: Not right now, maybe next quarter. Email me something.", "Future Potential"),
    ("Agent: Would this help?\nContact: No thanks, we're all set.", "Not Interested"),
    (CALLBACK_CALL, "Callback Requested"),
])
def test_disposition_rules(transcript, disposition):
    assert rules.analyse(rules.parse_prompt(prompt(transcript))).disposition == disposition


def test_prompt_without_tags_is_all_transcript():
    parsed = rules.parse_prompt("Contact: call me tomorrow at 10am", now=FRIDAY)
    assert parsed.transcript == "Contact: call me tomorrow at 10am"
    assert rules.analyse(parsed).disposition == "Callback Requested"


# ---- the stack's key: environment only ---------------------------------------------------------------------------------

def test_the_key_reaches_the_processes_by_environment_never_argv(stack):
    from pathlib import Path

    state = json.loads((Path(stack["log_dir"]).parent / "state.json").read_text())
    key = stack["anthropic_api_key"].encode()
    services = state["services"]
    assert "anthropic_standin" in services and any(name.startswith("function:") for name in services)
    for name, service in services.items():
        cmdline = Path(f"/proc/{service['pid']}/cmdline").read_bytes()
        assert key not in cmdline, f"the Anthropic key is in the argv of {name}"
    standin_env = Path(f"/proc/{services['anthropic_standin']['pid']}/environ").read_bytes().split(b"\0")
    assert b"ANTHROPIC_STANDIN_API_KEYS=" + key in standin_env
    function = next(s for n, s in services.items() if n.startswith("function:"))
    function_env = Path(f"/proc/{function['pid']}/environ").read_bytes().split(b"\0")
    assert b"ANTHROPIC_API_KEY=" + key in function_env
    assert b"ANTHROPIC_BASE_URL=" + stack["anthropic_url"].encode() in function_env
