"""Parsing every body shape GHL sends into one CallRecord (pure)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared import errors
from shared.domain.webhook_payload import parse_call_payload
from tests.webhook.conftest import fixture_names, load_fixture


def test_the_fixtures_are_there():
    assert len(fixture_names()) >= 4


def test_call_completed_fixture():
    record = parse_call_payload(load_fixture("call-completed.json"))
    assert record.external_call_id == "msg_7Hq2LkP0aZ3"
    assert (record.location_id, record.ghl_contact_id, record.direction) == ("loc_Ab12Cd34Ef56", "cnt_Xb81LmQ2",
                                                                            "outbound")
    assert (record.call_status, record.connected, record.duration_seconds) == ("answered", True, 184)
    assert (record.from_number, record.to_number) == ("+15551234567", "+15559876543")
    assert record.started_at == datetime(2026, 2, 12, 15, 4, 5, tzinfo=timezone.utc)
    assert record.disposition is None
    assert record.raw == load_fixture("call-completed.json")


def test_disposition_fixture():
    record = parse_call_payload(load_fixture("disposition.json"))
    assert (record.disposition, record.disposition_source) == ("Callback Requested", "chosen")
    assert record.notes.startswith("Asked us to call back") and record.transcript.startswith("Agent:")
    assert record.call_status is None and record.connected is None


def test_snake_case_fixture_with_contact_block_and_custom_data():
    record = parse_call_payload(load_fixture("snake-case-with-contact-block.json"))
    assert (record.external_call_id, record.location_id, record.ghl_contact_id) == (
        "msg_Zz90YyXx11", "loc_Ab12Cd34Ef56", "cnt_Pq55RsT9")
    assert (record.call_status, record.duration_seconds) == ("no-answer", 0)
    assert (record.contact_phone, record.contact_email) == ("+15550102233", "dana.whitfield@example.com")
    assert (record.disposition, record.disposition_source) == ("No Answer", "inferred")


def test_voicemail_fixture_uses_message_id_and_offsets():
    record = parse_call_payload(load_fixture("voicemail-lowercase.json"))
    assert record.external_call_id == "msg_Vm00Qq11"
    assert record.started_at == datetime(2026, 2, 13, 14, 0, tzinfo=timezone.utc)
    assert record.started_at.utcoffset() == timedelta(hours=-5)
    assert (record.to_number, record.recording_url) == ("+15550109988", "https://example.invalid/recordings/msg_Vm00Qq11.wav")
    assert (record.disposition, record.disposition_source) == ("Voicemail", "inferred")


def test_marketplace_outbound_message_event():
    record = parse_call_payload({"type": "OutboundMessage", "messageType": "CALL", "messageId": "m1",
                                 "locationId": "L", "callDuration": "120", "callStatus": "completed",
                                 "dateAdded": "2024-05-08T11:57:42.250Z"})
    assert (record.external_call_id, record.duration_seconds, record.connected) == ("m1", 120, True)


def test_call_id_beats_message_id_wherever_they_are():
    assert parse_call_payload({"messageId": "m", "customData": {"call_id": "c"}}).external_call_id == "c"
    assert parse_call_payload({"message_id": "m", "customData": {}}).external_call_id == "m"
    assert parse_call_payload({"CallID": 12345}).external_call_id == "12345"


def test_custom_data_wins_over_top_level():
    record = parse_call_payload({"callId": "c", "callStatus": "Busy", "customData": {"callStatus": "Answered"}})
    assert record.call_status == "answered"


def test_location_as_block_or_plain_string():
    assert parse_call_payload({"callId": "c", "location": {"id": "L1", "name": "x"}}).location_id == "L1"
    assert parse_call_payload({"callId": "c", "location": "L2"}).location_id == "L2"


def test_contact_block_nested_under_contact():
    record = parse_call_payload({"callId": "c", "contact": {"id": "K", "phone": "555 010 2233", "email": "a@b.c"}})
    assert (record.ghl_contact_id, record.contact_phone, record.contact_email) == ("K", "+15550102233", "a@b.c")


@pytest.mark.parametrize(("sent", "seconds"), [(184, 184), ("184", 184), (" 184 ", 184), (184.6, 185),
                                                ("12.4", 12), ("3:04", 184), ("1:00:01", 3601), (0, 0)])
def test_durations_to_integer_seconds(sent, seconds):
    assert parse_call_payload({"callId": "c", "duration": sent}).duration_seconds == seconds


@pytest.mark.parametrize(("sent", "expected"), [
    ("2026-02-12T15:04:05Z", datetime(2026, 2, 12, 15, 4, 5, tzinfo=timezone.utc)),
    ("2026-02-12T10:04:05-05:00", datetime(2026, 2, 12, 15, 4, 5, tzinfo=timezone.utc)),
    ("2026-02-12 15:04:05", datetime(2026, 2, 12, 15, 4, 5, tzinfo=timezone.utc)),
    (1770908645, datetime(2026, 2, 12, 15, 4, 5, tzinfo=timezone.utc)),
    ("1770908645000", datetime(2026, 2, 12, 15, 4, 5, tzinfo=timezone.utc)),
])
def test_timestamps(sent, expected):
    assert parse_call_payload({"callId": "c", "callStartTime": sent}).started_at == expected


def test_unreadable_phone_is_kept_as_sent():
    assert parse_call_payload({"callId": "c", "from": "anonymous"}).from_number == "anonymous"


def test_blank_values_count_as_missing():
    record = parse_call_payload({"callId": "c", "notes": "  ", "disposition": "", "to": None})
    assert (record.notes, record.disposition, record.to_number) == (None, None, None)


@pytest.mark.parametrize("body", [{}, {"callId": ""}, {"callId": None, "messageId": "  "}, {"customData": {}},
                                  {"contact_id": "x", "location": {"id": "L"}}])
def test_no_call_id(body):
    with pytest.raises(errors.BadRequest, match="no call id"):
        parse_call_payload(body)


@pytest.mark.parametrize(("body", "field"), [
    ({"callId": {"id": 1}}, "callId"),
    ({"callId": ["c"]}, "callId"),
    ({"callId": True}, "callId"),
    ({"callId": "c", "duration": "long"}, "duration"),
    ({"callId": "c", "duration": -3}, "duration"),
    ({"callId": "c", "duration": [1]}, "duration"),
    ({"callId": "c", "callDuration": True}, "callDuration"),
    ({"callId": "c", "callStartTime": "yesterday"}, "callStartTime"),
    ({"callId": "c", "callStatus": {"x": 1}}, "callStatus"),
    ({"callId": "c", "customData": {"call_status": ["Answered"]}}, "call_status"),
    ({"callId": "c", "customData": "oops"}, "customData"),
    ({"callId": "c", "notes": {"a": 1}}, "notes"),
])
def test_wrong_types_name_the_field(body, field):
    with pytest.raises(errors.BadRequest) as raised:
        parse_call_payload(body)
    assert f"'{field}'" in raised.value.message


json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=8))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)), max_leaves=8)
keys = st.sampled_from(["callId", "call_id", "messageId", "callStatus", "duration", "from", "to", "customData",
                        "location", "contact", "callStartTime", "disposition", "notes", "x"])


@given(st.dictionaries(keys, json_values, max_size=8))
def test_any_body_parses_or_is_a_bad_request(body):
    """Never an unexpected exception (a 500): a record, or a BadRequest."""
    try:
        record = parse_call_payload(body)
    except errors.BadRequest as exc:
        assert exc.message
    else:
        assert record.external_call_id and record.raw == body
