"""The GHL client against the GHL sandbox over real HTTP: paging, retries, budgets, errors."""

from __future__ import annotations

import asyncio
import logging
import time

import httpx
import pytest

from shared.adapters.ghl_client import BudgetExhausted, GhlPermanentError, GhlTransientError
from shared.adapters.rate_limiting import LocationRateLimiter

pytestmark = pytest.mark.stack


class RecordingSleep:
    """An instant sleep that remembers what the client asked for (backoff only; the limiter waits for real)."""

    def __init__(self):
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


def test_upsert_writes_custom_fields_in_both_item_shapes_and_ignores_unknown_ids(
        ghl_sandbox, make_location, client_for):
    location = make_location(custom_fields=[{"id": "cf_title", "name": "Job title"},
                                            {"id": "cf_url", "name": "LinkedIn URL"}])

    async def scenario():
        async with client_for(location) as ghl:
            first = await ghl.upsert_contact({
                "email": "Ada@Example.com", "phone": "(555) 201-3344", "firstName": "Ada",
                "customFields": [{"id": "cf_title", "value": "CTO"}, {"id": "cf_unknown", "value": "x"}]})
            second = await ghl.upsert_contact({
                "email": "ada@example.com", "customFields": [{"id": "cf_url", "key": "linkedin", "field_value": "u"}]})
            read = await ghl.get_contact(first.contact.id)
            fields = await ghl.list_custom_fields()
            return first, second, read, fields

    first, second, read, fields = asyncio.run(scenario())
    assert first.new is True and second.new is False
    assert second.contact.id == first.contact.id
    assert read.phone == "+15552013344"
    assert read.custom_field("cf_title") == "CTO" and read.custom_field("cf_url") == "u"
    assert {f.id: f.name for f in fields} == {"cf_title": "Job title", "cf_url": "LinkedIn URL"}
    assert ghl_sandbox.stats(location.id)["ignored_custom_field_ids"] == {"cf_unknown": 1}


def test_search_pages_to_the_end_past_10000_contacts_with_search_after(ghl_sandbox, make_location, client_for):
    location = make_location(burst_limit=100, burst_window_ms=1000)
    ghl_sandbox.seed(location.id, contacts=10_700)

    async def scenario():
        ids, pages = [], 0
        async with client_for(location) as ghl:
            async for page in ghl.iter_contact_pages(page_limit=500):
                pages += 1
                ids += [contact.id for contact in page.contacts]
                assert page.total == 10_700
        return ids, pages

    ids, pages = asyncio.run(scenario())
    assert len(ids) == 10_700 and len(set(ids)) == 10_700
    assert pages == 22
    # Page numbers stop at 10,000 records (that is why the client uses searchAfter).
    response = httpx.post(f"{location.base_url}/contacts/search", json={
        "locationId": location.id, "pageLimit": 500, "page": 21},
        headers={"Authorization": f"Bearer {location.token}", "Version": "2021-07-28"})
    assert response.status_code == 400 and "searchAfter" in response.json()["message"]


def test_call_export_pages_to_the_end_keeping_calls_only_in_both_shapes(ghl_sandbox, make_location, client_for):
    location = make_location()
    seeded = ghl_sandbox.seed(location.id, calls=1_234, voicemail_share=0.1)
    assert seeded["voicemails"] > 0

    async def scenario():
        pages = []
        async with client_for(location) as ghl:
            async for page in ghl.iter_call_message_pages(limit=100):
                pages.append(page)
            connected = next(m for page in pages for m in page.messages if m.duration_seconds)
            recording = await ghl.get_call_recording(connected.id)
            transcript = await ghl.get_call_transcription(connected.id)
            unconnected = next(m for page in pages for m in page.messages if m.call_status in ("busy", "no-answer"))
            no_recording = await ghl.get_call_recording(unconnected.id)
        return pages, recording, transcript, no_recording

    pages, recording, transcript, no_recording = asyncio.run(scenario())
    messages = [m for page in pages for m in page.messages]
    assert len(pages) == 13 and pages[-1].next_cursor is None
    assert len(messages) == seeded["calls"] and len({m.id for m in messages}) == seeded["calls"]
    assert sum(page.skipped_non_calls for page in pages) == seeded["voicemails"]
    assert all(m.message_type == "TYPE_CALL" and m.call_status for m in messages)
    shapes = {("call" in m.raw.get("meta", {}), "callStatus" in m.raw.get("meta", {})) for m in messages}
    assert shapes == {(True, False), (False, True)}  # both call-data shapes were read
    assert recording[:4] == b"RIFF" and no_recording is None
    assert transcript and transcript[0].transcript


def test_429_then_success_waits_as_told_and_loses_nothing(ghl_sandbox, make_location, client_for):
    location = make_location()
    ghl_sandbox.set_faults(location.id, rate_limit_count=2, retry_after_seconds=0.3)

    async def scenario():
        async with client_for(location) as ghl:
            started = time.monotonic()
            result = await ghl.upsert_contact({"email": "storm@example.com"})
            return result, time.monotonic() - started, ghl.stats

    result, elapsed, client_stats = asyncio.run(scenario())
    stats = ghl_sandbox.stats(location.id)
    assert result.new is True
    assert stats["rate_limited_sent"] == 2 and client_stats.rate_limited == 2
    assert stats["requests"]["POST /contacts/upsert"] == 3
    assert elapsed >= 0.6  # waited Retry-After twice


def test_the_limiter_keeps_within_the_budget_without_429s(ghl_sandbox, make_location, client_for):
    location = make_location(burst_limit=10, burst_window_ms=500)

    async def scenario():
        async with client_for(location) as ghl:
            started = time.monotonic()
            await asyncio.gather(*(ghl.upsert_contact({"email": f"c{i}@example.com"}) for i in range(40)))
            return time.monotonic() - started

    elapsed = asyncio.run(scenario())
    stats = ghl_sandbox.stats(location.id)
    assert stats["rate_limited_sent"] == 0
    assert stats["requests"]["POST /contacts/upsert"] == 40
    assert elapsed >= 1.5  # 40 requests at 10 per 0.5 s: the 31st cannot start before 1.5 s
    assert elapsed < 4.0


def test_two_workers_on_one_location_lose_nothing(ghl_sandbox, make_location, client_for):
    """Two processes (two limiters) share one budget: the server's X-RateLimit-Remaining corrects each."""
    location = make_location(burst_limit=10, burst_window_ms=500)

    async def worker(name: str):
        async with client_for(location, limiter=LocationRateLimiter(location.id)) as ghl:
            results = await asyncio.gather(*(ghl.upsert_contact({"email": f"{name}{i}@example.com"})
                                             for i in range(25)))
            return results, ghl.limiter.phantom_starts

    async def scenario():
        return await asyncio.gather(worker("a"), worker("b"))

    outcomes = asyncio.run(scenario())
    assert sum(len(results) for results, _ in outcomes) == 50
    assert len(ghl_sandbox.contacts(location.id)) == 50
    assert any(phantoms > 0 for _, phantoms in outcomes)  # each learned what the other spent


def test_5xx_then_success_with_backoff(ghl_sandbox, make_location, client_for):
    location = make_location()
    ghl_sandbox.set_faults(location.id, error_count=2, error_status=503)
    sleep = RecordingSleep()

    async def scenario():
        async with client_for(location, sleep=sleep) as ghl:
            return await ghl.upsert_contact({"email": "flaky@example.com"})

    assert asyncio.run(scenario()).new is True
    assert ghl_sandbox.stats(location.id)["requests"]["POST /contacts/upsert"] == 3
    assert len(sleep.delays) == 2 and all(0 <= d <= 1.0 for d in sleep.delays)  # jittered, capped by 2^n * base


def test_5xx_gives_up_after_max_attempts(ghl_sandbox, make_location, client_for):
    location = make_location()
    ghl_sandbox.set_faults(location.id, error_count=10, error_status=502)

    async def scenario():
        async with client_for(location, sleep=RecordingSleep(), max_attempts=3) as ghl:
            await ghl.get_contact("anything")

    with pytest.raises(GhlTransientError, match="failed 3 times; last: HTTP 502"):
        asyncio.run(scenario())
    assert ghl_sandbox.stats(location.id)["requests"]["GET /contacts/{contactId}"] == 3


def test_timeout_then_success_upsert_retry_is_idempotent(ghl_sandbox, make_location, client_for):
    location = make_location()
    ghl_sandbox.set_faults(location.id, hang_count=1, hang_seconds=2.0)

    async def scenario():
        async with client_for(location, timeout=0.5, sleep=RecordingSleep()) as ghl:
            return await ghl.upsert_contact({"email": "slow@example.com", "firstName": "Slow"})

    result = asyncio.run(scenario())
    stats = ghl_sandbox.stats(location.id)
    assert stats["requests"]["POST /contacts/upsert"] == 2
    # The first attempt was processed but its answer came too late; the retry updated the same contact.
    assert result.new is False and stats["upserts_per_contact"] == {result.contact.id: 2}
    assert len(ghl_sandbox.contacts(location.id)) == 1


def test_permanent_errors_are_not_retried_and_carry_ghls_message(ghl_sandbox, make_location, client_for):
    location = make_location()

    async def missing_contact():
        async with client_for(location, sleep=RecordingSleep()) as ghl:
            await ghl.get_contact("no-such-contact")

    with pytest.raises(GhlPermanentError) as error:
        asyncio.run(missing_contact())
    assert error.value.status_code == 400 and "Contact not found" in str(error.value)
    assert ghl_sandbox.stats(location.id)["requests"]["GET /contacts/{contactId}"] == 1


def test_a_wrong_token_is_a_permanent_401_and_never_shows_up(ghl_sandbox, make_location, client_for, caplog):
    location = make_location()
    secret = "wrong-token-1234567890-do-not-print"
    other = type(location)(id=location.id, token=secret, base_url=location.base_url)

    async def scenario():
        async with client_for(other, sleep=RecordingSleep()) as ghl:
            await ghl.upsert_contact({"email": "x@example.com"})

    caplog.set_level(logging.DEBUG)
    with pytest.raises(GhlPermanentError) as error:
        asyncio.run(scenario())
    assert error.value.status_code == 401
    assert secret not in str(error.value) and secret not in repr(error.value.details)
    assert secret not in caplog.text


def test_retries_log_no_token(ghl_sandbox, make_location, client_for, caplog):
    location = make_location()
    ghl_sandbox.set_faults(location.id, error_count=1)
    caplog.set_level(logging.DEBUG)

    async def scenario():
        async with client_for(location, sleep=RecordingSleep()) as ghl:
            await ghl.upsert_contact({"email": "log@example.com"})

    asyncio.run(scenario())
    assert "retrying" in caplog.text
    assert location.token not in caplog.text


def test_budget_exhausted_before_the_reserve_is_touched(ghl_sandbox, make_location, client_for):
    location = make_location(daily_limit=30)

    async def scenario():
        sent = 0
        async with client_for(location, daily_reserve=10) as ghl:
            with pytest.raises(BudgetExhausted, match="10 are kept in reserve"):
                for i in range(100):
                    await ghl.upsert_contact({"email": f"b{i}@example.com"})
                    sent += 1
        return sent

    sent = asyncio.run(scenario())
    stats = ghl_sandbox.stats(location.id)
    assert sent == 20 and stats["requests_total"] == 20 and stats["rate_limited_sent"] == 0
    assert stats["location"]["daily_used"] == 20


def test_two_locations_in_parallel_each_on_its_own_budget(ghl_sandbox, make_location, client_for):
    first = make_location(burst_limit=10, burst_window_ms=1000)
    second = make_location(burst_limit=10, burst_window_ms=1000)

    async def upserts(location):
        async with client_for(location) as ghl:
            await asyncio.gather(*(ghl.upsert_contact({"email": f"p{i}@example.com"}) for i in range(25)))

    async def scenario():
        started = time.monotonic()
        await asyncio.gather(upserts(first), upserts(second))
        return time.monotonic() - started

    elapsed = asyncio.run(scenario())
    # 25 each at 10 per second: about 2 s when the budgets are independent, 4 s if they were shared.
    assert 2.0 <= elapsed < 3.5
    for location in (first, second):
        stats = ghl_sandbox.stats(location.id)
        assert stats["requests"]["POST /contacts/upsert"] == 25 and stats["rate_limited_sent"] == 0
