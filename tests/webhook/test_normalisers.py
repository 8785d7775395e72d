"""Pure tests of the normalisers (phones, statuses, dispositions, inference), with property tests."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.domain.calls import (
    CANONICAL_DISPOSITIONS, TRANSIENT_STATUSES, CallRecord, canonical_disposition, infer_disposition, is_connected,
    normalize_call_status,
)
from shared.domain.phones import normalize_phone

# GHL-FACTS' table of raw statuses -> (normalised, connected, inferred disposition)
GHL_STATUSES = {
    "Answered": ("answered", True, None),
    "No answer": ("no-answer", False, "No Answer"),
    "Busy": ("busy", False, "No Answer"),
    "Failed": ("failed", False, "Incorrect Number"),
    "completed": ("completed", True, None),
    "Voicemail": ("voicemail", False, "Voicemail"),
    "Missed": ("missed", False, "No Answer"),
    "Ringing": ("ringing", None, None),
}


@pytest.mark.parametrize("raw", sorted(GHL_STATUSES))
def test_every_status_ghl_sends(raw):
    status, connected, disposition = GHL_STATUSES[raw]
    assert normalize_call_status(raw) == status
    assert normalize_call_status(f"  {raw.upper()} ") == status
    assert is_connected(raw) is connected
    assert infer_disposition(raw, None, None) == disposition


@pytest.mark.parametrize("raw", ["No answer", "no_answer", "NO-ANSWER", " no   answer ", "no - answer"])
def test_no_answer_spellings_are_one_value(raw):
    assert normalize_call_status(raw) == "no-answer"


def test_blank_status_is_none():
    assert normalize_call_status(None) is None
    assert normalize_call_status("   ") is None
    assert is_connected(None) is None


@given(st.text(max_size=30))
def test_status_normalisation_is_idempotent_and_canonical(raw):
    once = normalize_call_status(raw)
    assert normalize_call_status(once) == once
    if once is not None:
        assert once == once.strip().lower() and " " not in once and "_" not in once
        assert not once.startswith("-") and not once.endswith("-")


@pytest.mark.parametrize("disposition", CANONICAL_DISPOSITIONS)
def test_canonical_dispositions_in_any_case(disposition):
    assert canonical_disposition(disposition) == disposition
    assert canonical_disposition(disposition.upper()) == disposition
    assert canonical_disposition(f" {disposition.lower().replace(' ', '_')} ") == disposition


@pytest.mark.parametrize("raw", ["Maybe later", "", "   ", None, "Interested?"])
def test_unknown_disposition_is_none(raw):
    assert canonical_disposition(raw) is None


@given(st.sampled_from(CANONICAL_DISPOSITIONS), st.lists(st.sampled_from([str.upper, str.lower, str.title]),
                                                          min_size=1, max_size=3))
def test_disposition_mapping_ignores_case(disposition, transforms):
    text = disposition
    for transform in transforms:
        text = transform(text)
    assert canonical_disposition(text) == disposition


@given(st.text(max_size=40))
def test_disposition_is_canonical_or_none(raw):
    assert canonical_disposition(raw) in (*CANONICAL_DISPOSITIONS, None)


@pytest.mark.parametrize(("notes", "transcript", "expected"), [
    ("Spoke to the receptionist", None, "Gatekeeper"),
    ("wrong number", None, "Incorrect Number"),
    (None, "The number is not in service", "Incorrect Number"),
    ("Not interested at all", None, "Not Interested"),
    ("Said don't call again", None, "Not Interested"),
    ("Asked us to call back Tuesday", None, "Callback Requested"),
    ("Try again next week", None, "Callback Requested"),
    ("Booked a demo", None, "Meeting Booked"),
    ("Had a nice chat", "nothing decided", None),
    (None, None, None),
])
def test_keywords_infer_for_connected_calls(notes, transcript, expected):
    assert infer_disposition("Answered", notes, transcript) == expected
    assert infer_disposition("completed", notes, transcript) == expected


def test_keywords_do_not_count_for_unconnected_or_unknown_status():
    assert infer_disposition("No answer", "call back later", None) == "No Answer"
    assert infer_disposition(None, "call back later", None) is None
    assert infer_disposition("ringing", "call back later", None) is None


def test_transient_statuses_are_never_connected_or_inferred():
    for status in TRANSIENT_STATUSES:
        assert is_connected(status) is None
        assert infer_disposition(status, "meeting booked", None) is None


def test_call_record_marks_chosen_and_inferred():
    chosen = CallRecord.build(external_call_id="c", call_status="No answer", disposition="callback requested")
    assert (chosen.disposition, chosen.disposition_source, chosen.connected) == ("Callback Requested", "chosen", False)
    inferred = CallRecord.build(external_call_id="c", call_status="Voicemail")
    assert (inferred.disposition, inferred.disposition_source) == ("Voicemail", "inferred")
    nothing = CallRecord.build(external_call_id="c", call_status="Answered")
    assert nothing.disposition is None and nothing.disposition_source is None
    payload = nothing.to_sql_payload()
    assert "disposition" not in payload and payload["connected"] is True  # missing keys never erase


@pytest.mark.parametrize(("raw", "e164"), [
    ("(555) 010-2233", "+15550102233"),
    ("555.010.2233", "+15550102233"),
    ("1-555-010-2233", "+15550102233"),
    ("+1 555 010 2233", "+15550102233"),
    ("555-010-2233 x104", "+15550102233"),
    ("555-010-2233 ext. 104", "+15550102233"),
    ("+44 20 7946 0958", "+442079460958"),
    ("0044 20 7946 0958", "+442079460958"),
    ("010-2233", None),
    ("055-010-2233", None),
    ("not a phone", None),
    ("", None),
    (None, None),
])
def test_normalize_phone(raw, e164):
    assert normalize_phone(raw) == e164


def test_default_region_is_used_for_national_numbers():
    assert normalize_phone("020 7946 0958", "GB") == "+442079460958"
    assert normalize_phone("020 7946 0958", "US") is None


nanp_digits = st.tuples(st.sampled_from("23456789"), st.text("0123456789", min_size=9, max_size=9)).map("".join)
separators = st.sampled_from(["", " ", "-", ".", "  "])


@given(nanp_digits, separators, st.sampled_from(["", "1", "+1", "+1 ", "1-", "001"]), st.booleans())
def test_any_formatting_of_a_nanp_number_gives_the_same_e164(digits, sep, prefix, parens):
    area, exchange, line = digits[:3], digits[3:6], digits[6:]
    text = f"{prefix}{'(' + area + ')' if parens else area}{sep}{exchange}{sep}{line}"
    assert normalize_phone(text) == "+1" + digits


@given(st.text(max_size=25))
def test_normalize_phone_is_e164_or_none_and_idempotent(raw):
    result = normalize_phone(raw)
    if result is not None:
        assert result.startswith("+") and result[1:].isdigit() and 8 <= len(result) - 1 <= 15
        assert normalize_phone(result) == result
