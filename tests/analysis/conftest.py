"""Fixtures of the analysis tests: locations with integrations, calls written through upsert_call (as the webhook
and the import write them), settings pointed at the stack's Anthropic stand-in, and its request log by call."""

from __future__ import annotations

import hashlib
import json

import pytest

from shared.adapters.supabase_db import create_service_client
from tests.conftest import unique
from tests.enrichment.conftest import aws_credentials, media_location, recordings  # noqa: F401 - fixtures used here
from tests.sync.conftest import insert_integration, make_settings

# A conversation (two speakers, > 40 words) the stand-in dispositions "Meeting Booked" and the regex inference
# "Not Interested" (the agent says the words): the AI replaces the regex's value.
MEETING = ("Agent: Hi Dana, it's Sam from Acme. If you're not interested just say so and I'll let you go.\n"
           "Contact: No, go on, we have been looking at new phone systems for the office this quarter.\n"
           "Agent: Great. Could we book a short demo on Thursday at two so I can show you the dashboard?\n"
           "Contact: Yes, that works for me, sounds good. Send over the invite please.")
CALLBACK = ("Agent: Hello, this is Sam from Acme calling about the phone system quote you asked for last week.\n"
            "Contact: Oh right, I'm driving at the moment and can't look at anything properly right now.\n"
            "Agent: No problem at all, when would be a better time for a quick call about it?\n"
            "Contact: Call me back on Tuesday after three, I'll be at my desk then with the numbers.")
TEN_WORDS = "Agent: hello there\nContact: not now thanks, maybe later okay"


def variant(text: str) -> str:
    """The same conversation with a unique last line (each call's transcript has its own sha256)."""
    return f"{text}\nAgent: Thanks, reference {unique('ref')}."


def sha(transcript: str) -> str:
    return hashlib.sha256(transcript.strip().encode()).hexdigest()


def analysis_settings(stack, **overrides):
    values = {"anthropic_api_key": stack["anthropic_api_key"], "anthropic_base_url": stack["anthropic_url"],
              "analysis_max_in_flight": 4, "analysis_lease_seconds": 60, **overrides}
    return make_settings(stack, **values)


@pytest.fixture
def settings(stack):
    return analysis_settings(stack)


@pytest.fixture(scope="session")
def database(stack):
    return create_service_client(stack["supabase_url"], stack["service_role_key"])


@pytest.fixture
def standin(anthropic_standin):
    """The stand-in with its defaults (high limits, no latency, no faults) and an empty request log."""
    anthropic_standin.reset()
    yield anthropic_standin
    anthropic_standin.reset()


@pytest.fixture
def location(db):
    def make(kind: str = "internal", **columns) -> str:
        location_id = unique("loc_an")
        insert_integration(db, location_id, integration_type=kind)
        for name, value in columns.items():
            db.execute(f"UPDATE ghl_integrations SET {name} = %s WHERE location_id = %s", (value, location_id))
        return location_id
    return make


def upsert(db, location_id: str, call_id: str | None = None, **fields) -> dict:
    call_id = call_id or unique("call")
    payload = {"external_call_id": call_id, "location_id": location_id, "call_status": "completed",
               "started_at": "2026-12-04T20:04:05Z", **fields}
    outcome = db.execute("SELECT upsert_call(%s::jsonb) AS r", (json.dumps(payload),)).fetchone()["r"]
    return db.execute(f"SELECT * FROM {outcome['table']} WHERE id = %s", (outcome["id"],)).fetchone()


def row(db, call: dict, table: str = "sales_calls") -> dict:
    return db.execute(f"SELECT * FROM {table} WHERE id = %s", (call["id"],)).fetchone()


def messages_for(standin, transcripts) -> dict[str, list[dict]]:
    """The stand-in's POST /v1/messages log entries per transcript sha256 (of the transcripts given)."""
    wanted = {sha(t): t for t in transcripts}
    found: dict[str, list[dict]] = {s: [] for s in wanted}
    for entry in standin.requests():
        if entry.get("path") == "/v1/messages" and entry.get("transcript_sha256") in wanted:
            found[entry["transcript_sha256"]].append(entry)
    return found



def sent_count(standin, transcript: str) -> int:
    return len(messages_for(standin, [transcript])[sha(transcript)])
