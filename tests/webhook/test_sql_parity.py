"""The Python normalisers and their SQL twins agree (phones are matched across the two)."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.domain.calls import TRANSIENT_STATUSES, infer_disposition, normalize_call_status
from shared.domain.phones import normalize_phone

pytestmark = pytest.mark.stack

PHONE_INPUTS = [
    "(555) 010-2233", "555-010-2233", "555.010.2233", "5550102233", "15550102233", "1 (555) 010-2233",
    "+1 555 010 2233", "+15550102233", "555-010-2233 x12", "555 010 2233 ext 7", "(212) 555-0100",
    "+1-800-555-0199", "001 212 555 0100", "0012125550100", "+44 20 7946 0958", "0044 20 7946 0958",
    "+33 1 23 45 67 89", "+49 30 901820", "+61 2 9374 4000",
    "010-2233", "055-010-2233", "155-010-2233", "12345", "", "   ", "phone", "+", "+0 555 010 2233",
]


def sql_phones(db, inputs: list[str | None]) -> list[str | None]:
    rows = db.execute("SELECT normalize_phone_e164(x) AS v FROM unnest(%s::text[]) WITH ORDINALITY AS t(x, n) "
                      "ORDER BY n", (inputs,)).fetchall()
    return [r["v"] for r in rows]


def test_python_and_sql_phones_agree_on_known_inputs(db):
    assert [normalize_phone(x) for x in PHONE_INPUTS] == sql_phones(db, PHONE_INPUTS)


def test_python_and_sql_phones_agree_on_random_nanp_formatting(db):
    rng = random.Random(20261126)
    inputs = []
    for _ in range(2000):
        digits = rng.choice("23456789") + "".join(rng.choice("0123456789") for _ in range(9))
        sep = rng.choice(["", " ", "-", ".", " - "])
        area = f"({digits[:3]})" if rng.random() < 0.3 else digits[:3]
        prefix = rng.choice(["", "1", "1 ", "+1", "+1 ", "+1-", "001 "])
        suffix = rng.choice(["", "", " x12", " ext 345", " X9"])
        inputs.append(f"{prefix}{area}{sep}{digits[3:6]}{sep}{digits[6:]}{suffix}")
    # Noise: wrong lengths, leading 0/1 area codes, letters.
    for _ in range(500):
        inputs.append("".join(rng.choice("0123456789 -()+x") for _ in range(rng.randint(0, 16))))
    python = [normalize_phone(x) for x in inputs]
    sql = sql_phones(db, inputs)
    disagree = [(x, p, s) for x, p, s in zip(inputs, python, sql) if p != s and (p or "").startswith("+1") | (
        (s or "").startswith("+1"))]
    assert not disagree[:10]


def test_where_they_differ_python_is_only_stricter(db):
    """Outside NANP, phonenumbers knows each country's lengths; the SQL only the E.164 range. So Python may
    give None where SQL gives a number (a missed match), never a different number (a wrong match)."""
    rng = random.Random(7)
    inputs = ["+" + "".join(rng.choice("0123456789") for _ in range(rng.randint(6, 16))) for _ in range(1000)]
    for x, p, s in zip(inputs, [normalize_phone(x) for x in inputs], sql_phones(db, inputs)):
        assert p is None or p == s, x


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=st.sampled_from(list("aAnNsSwWeErR _-\t")), max_size=20))
def test_status_normalisation_agrees(db, raw):
    assert db.execute("SELECT normalize_call_status(%s) AS v", (raw,)).fetchone()["v"] == normalize_call_status(raw)


def test_transient_statuses_agree(db):
    statuses = sorted(TRANSIENT_STATUSES) + ["answered", "completed", "no-answer", "busy", "failed", "voicemail"]
    rows = db.execute("SELECT s, is_transient_call_status(s) AS t FROM unnest(%s::text[]) AS s", (statuses,))
    assert {r["s"]: r["t"] for r in rows} == {s: s in TRANSIENT_STATUSES for s in statuses}


WORDS = ["gatekeeper", "assistant", "receptionist", "wrong number", "disconnected", "not in service",
         "not interested", "no thanks", "don't call", "dont call", "don’t call", "call back", "callback",
         "try again", "call later", "call me back next week", "call us back", "call me later", "meeting", "schedule",
         "booked", "hello", "the", "Call", "BACK", "later"]


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(["answered", "completed", "no-answer", "busy", "missed", "voicemail", "failed", "ringing",
                        None, "weird"]),
       st.one_of(st.none(), st.lists(st.sampled_from(WORDS), max_size=4).map(" ".join)),
       st.one_of(st.none(), st.lists(st.sampled_from(WORDS), max_size=4).map(" ".join)))
def test_disposition_inference_agrees(db, status, notes, transcript):
    sql = db.execute("SELECT infer_call_disposition(%s, %s, %s) AS v", (status, notes, transcript)).fetchone()["v"]
    assert sql == infer_disposition(status, notes, transcript)
