"""A small in-process stand-in for GhlClient (upsert by email, then phone; custom fields), for service tests.

Only what the sync service calls: async context manager, upsert_contact, list_custom_fields. The real
client against the sandbox is exercised in test_sync_sandbox.py.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from types import SimpleNamespace

from shared import errors


class FakeGhlLocation:
    def __init__(self, world: "FakeGhl", location_id: str):
        self.world = world
        self.location_id = location_id

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc_info):
        return None

    async def list_custom_fields(self):
        self.world.field_listings[self.location_id] += 1
        return [SimpleNamespace(id=field_id, field_key=key) for field_id, key in self.world.fields]

    async def upsert_contact(self, body: dict):
        world = self.world
        world.in_flight += 1
        world.max_in_flight = max(world.max_in_flight, world.in_flight)
        try:
            if world.latency:
                await asyncio.sleep(world.latency)
            if world.before_answer:
                await world.before_answer(body)
            failure = world.fail(body) if world.fail else None
            if failure is not None:
                raise failure
            contacts = world.contacts.setdefault(self.location_id, {})
            match = next((cid for cid, c in contacts.items()
                          if (body.get("email") and c.get("email") == body.get("email"))
                          or (body.get("phone") and c.get("phone") == body.get("phone"))), None)
            new = match is None
            contact_id = match or f"ct{next(world.ids)}"
            contacts[contact_id] = {**contacts.get(contact_id, {}), **body}
            world.upserts[contact_id] += 1
            world.bodies.append(body)
            return SimpleNamespace(new=new, contact=SimpleNamespace(id=contact_id))
        finally:
            world.in_flight -= 1


class FakeGhl:
    """The client factory: FakeGhl()(integration) -> a client for that integration's location."""

    def __init__(self, *, fields=(), latency: float = 0.0, fail=None, before_answer=None):
        self.fields = list(fields)
        self.latency = latency
        self.fail = fail  # body -> exception to raise, or None
        self.before_answer = before_answer  # async body -> None, runs while the request is "in flight"
        self.contacts: dict[str, dict[str, dict]] = {}
        self.upserts: Counter = Counter()
        self.bodies: list[dict] = []
        self.field_listings: Counter = Counter()
        self.ids = itertools.count(1)
        self.in_flight = 0
        self.max_in_flight = 0
        self.tokens: list[str] = []

    def __call__(self, integration: dict) -> FakeGhlLocation:
        self.tokens.append(integration["api_token"])
        return FakeGhlLocation(self, integration["location_id"])


def permanent(status: int, message: str = "rejected") -> errors.GhlPermanentError:
    return errors.GhlPermanentError(status, message)
