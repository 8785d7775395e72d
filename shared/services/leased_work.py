"""Leased work: the machinery the prospect sync (sync_prospects.py) and call enrichment (enrich_calls.py) share.

Every location in parallel under one time budget (`run_locations`); per location (`work_leased_rows`):

    claim a chunk (lease, SKIP LOCKED) ─► queue ─► N workers ─► answers ─► writer: one call per group of answers
                                                                          (a group gathers for up to a second)
         ▲                                  │
         └── while the queue has room, before the deadline, until the location's run stops

- Claims are small (2 x the workers) and taken only when the queue has room, so a claimed row waits seconds,
  not minutes, for its work, well inside its lease; each row goes to its worker with a `work_by` time (the
  lease's end less a safety margin): past it the work function releases the row instead of working it.
- The time budget: no claim after `deadline`; what is claimed is worked, the next run takes the rest.
- What a row's work is, how answers are recorded and what a run's outcome is belong to each service.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from shared import errors
from shared.logs import register_secret

MAX_CONSECUTIVE_TRANSIENT_FAILURES = 10  # GHL failing this often in a row stops the location: going on burns attempts
LEASE_SAFETY_SECONDS = 15  # a row whose lease ends sooner than this is released, not worked
WRITE_ATTEMPTS = 3
# Answers wait at most this long for others to share their write: one rpc per second or so per location, not one
# per few answers (each rpc costs ~1 ms of CPU in the worker); a crash loses at most this much work (redone).
WRITE_GROUP_SECONDS = 1.0
WRITE_GROUP_MAX = 500

ClientFactory = Callable[[dict[str, Any]], Any]  # integration row -> async context manager GHL client
T = TypeVar("T")
R = TypeVar("R")
S = TypeVar("S")


def default_client_factory(settings) -> ClientFactory:
    def make(integration: dict[str, Any]):
        from shared.adapters.ghl_client import GhlClient

        register_secret(integration["api_token"])  # masked in every log line from now on
        return GhlClient(location_id=integration["location_id"], token=integration["api_token"],
                         base_url=settings.ghl_api_base_url, daily_reserve=settings.ghl_daily_budget_reserve,
                         max_in_flight=settings.ghl_max_in_flight, timeout=settings.ghl_request_timeout_seconds)

    return make


async def run_locations(list_integrations: Callable[[str | None], list[dict[str, Any]]],
                        run_location: Callable[[dict[str, Any], float], Awaitable[S]], *,
                        location_id: str | None, limit: int | None, deadline: float | None,
                        budget_seconds: float, clock: Callable[[], float], unknown_location: str) -> list[S]:
    """`run_location(integration, deadline)` for every integration listed (or the one asked for), in parallel.
    `deadline`: a clock() value after which nothing more is claimed (default now + budget_seconds).
    `unknown_location`: the error when the location asked for has no integration."""
    if limit is not None and limit < 1:
        raise errors.BadRequest(f"limit must be at least 1, not {limit}")
    if deadline is None:
        deadline = clock() + budget_seconds
    integrations = await asyncio.to_thread(list_integrations, location_id)
    if location_id is not None and not integrations:
        raise errors.UnknownLocation(unknown_location)
    return list(await asyncio.gather(*(run_location(integration, deadline) for integration in integrations)))


@dataclass
class LocationRun:
    """One location's run: its claim id and why it stopped early. `summary` needs a `stopped_by_deadline`."""

    integration: dict[str, Any]
    summary: Any
    claim_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    abort_reason: str | None = None
    consecutive_transient: int = 0
    write_errors: int = 0

    def stop(self, reason: str) -> None:
        """Stop the location's run (its claimed, unworked rows are released); the first reason stays."""
        self.abort_reason = self.abort_reason or reason

    def transient_failure(self, what: str, last: str) -> None:
        """One more transient GHL failure in a row (`what`: the plural noun of the log line)."""
        self.consecutive_transient += 1
        if self.consecutive_transient >= MAX_CONSECUTIVE_TRANSIENT_FAILURES:
            self.stop(f"GHL failed {self.consecutive_transient} {what} in a row (last: {last}); stopped early")

    def claimed(self, rows: list[dict[str, Any]]) -> None:
        """Called with every chunk claimed (a service counts them here if it wants)."""

    def claim_failed(self, exc: errors.BridgeError) -> None:
        self.stop(f"claiming failed: {exc.message}")

    def outcome(self, *, redone: str, nothing_done: bool) -> tuple[str, str | None]:
        """(status, error) of the run for the location's record: success, partial, or failed when it stopped before
        doing anything. `redone` ends the sentence "those ... once their claim expires" (e.g. "calls are fetched
        again")."""
        problems: list[str] = []
        if self.abort_reason:
            problems.append(self.abort_reason)
        if self.write_errors:
            problems.append(f"{self.write_errors} result(s) could not be recorded; those {redone} once their claim "
                            "expires")
        if self.summary.stopped_by_deadline:
            problems.append("time budget reached; the next run continues with the calls still due")
        if not problems:
            return "success", None
        return ("failed" if self.abort_reason and nothing_done else "partial"), "; ".join(problems)


async def work_leased_rows(run: LocationRun, *, claim: Callable[..., list[dict[str, Any]]],
                           work: Callable[[dict[str, Any], float], Awaitable[R]],
                           write: Callable[[list[R]], Awaitable[None]], workers: int, lease_seconds: float,
                           limit: int | None, deadline: float, clock: Callable[[], float]) -> None:
    """Claim, work and write one location's rows until none is due, `limit` are claimed, the deadline passes
    or the run stops.

    `claim(limit=n)` (synchronous, run in a thread) leases up to n rows; `work(row, work_by)` returns the row's answer
    (releasing the row itself when clock() >= work_by or the run has stopped); `write(answers)` records the
    answers waiting, in order of arrival, one group at a time."""
    workers = max(1, workers)
    chunk_size = 2 * workers
    queue: asyncio.Queue = asyncio.Queue(maxsize=chunk_size)
    answers: asyncio.Queue = asyncio.Queue()
    ended = asyncio.Event()  # every answer is in `answers`

    async def produce() -> None:
        remaining = limit if limit is not None else float("inf")
        try:
            while remaining > 0 and run.abort_reason is None:
                if clock() >= deadline:
                    run.summary.stopped_by_deadline = True
                    return
                claimed_at = clock()
                rows = await asyncio.to_thread(claim, limit=int(min(chunk_size, remaining)))
                if not rows:
                    return
                remaining -= len(rows)
                run.claimed(rows)
                work_by = claimed_at + lease_seconds - min(LEASE_SAFETY_SECONDS, lease_seconds / 4)
                for row in rows:
                    await queue.put((row, work_by))
        except errors.BridgeError as exc:
            run.claim_failed(exc)
        finally:
            for _ in range(workers):
                await queue.put(None)

    async def work_rows() -> None:
        while (item := await queue.get()) is not None:
            row, work_by = item
            await answers.put(await work(row, work_by))

    async def write_answers() -> None:
        done = False
        while not done:
            batch = [await answers.get()]
            if batch[-1] is not None and not ended.is_set():  # let the group fill (the end does not wait)
                try:
                    await asyncio.wait_for(ended.wait(), WRITE_GROUP_SECONDS)
                except asyncio.TimeoutError:
                    pass
            while not answers.empty() and len(batch) < WRITE_GROUP_MAX and batch[-1] is not None:
                batch.append(answers.get_nowait())
            if batch[-1] is None:
                batch.pop()
                done = True
            if batch:
                await write(batch)

    writer = asyncio.create_task(write_answers())
    try:
        await asyncio.gather(produce(), *(work_rows() for _ in range(workers)))
    finally:
        await answers.put(None)
        ended.set()
        await writer


async def record_with_retries(record: Callable[[], T]) -> T:
    """`record()` (synchronous, run in a thread), tried again after a transient error (0.2 s, then 0.4 s);
    the last error is raised."""
    for attempt in range(WRITE_ATTEMPTS):
        try:
            return await asyncio.to_thread(record)
        except errors.TransientError:
            if attempt == WRITE_ATTEMPTS - 1:
                raise
            await asyncio.sleep(0.2 * 2 ** attempt)
    raise AssertionError("unreachable")


async def record_answers(run: LocationRun, record: Callable[[], int], count: int, *, log, failure: str) -> int | None:
    """How many of `count` answers `record()` wrote (see record_with_retries), or None when it failed: then
    they count in run.write_errors and `failure` is logged on the service's `log` (their rows are worked
    again once their leases end)."""
    try:
        return await record_with_retries(record)
    except errors.BridgeError as exc:
        run.write_errors += count
        log.error(failure, extra={"fields": {
            "location_id": run.summary.location_id, "results": count, "reason": exc.message}})
        return None
