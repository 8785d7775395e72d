"""Analyse calls with Claude, out of the webhook's path (docs/analysis.md).

Per active integration whose analysis is on (locations in parallel, ONE Anthropic client and pacer for all: the rate
limit is the organisation's):

    collect: every Message Batch its calls wait in -> ended? claim its calls, read the results, write them
    then, if more calls are due than ANALYSIS_BATCH_THRESHOLD: claim them, submit ONE Message Batch
                                                                (custom_id = <table>-<call id>), record it
    else live: claim a chunk (lease, SKIP LOCKED) -> queue -> workers -> POST /v1/messages (paced by the
               rate-limit headers) -> validate -> writer (one rpc per group of results, claim checked)

- Which calls are due is decided in SQL (the marking trigger: transcript present, not voicemail, more than one
  speaker, enough words, the location's switch on); this code analyses what it claimed.
- An invalid or refused answer gets one more request; still invalid: 'failed' with the reason.
- 429/529/5xx/timeouts: the client's paced retries; when they run out the call is due again later (backoff).
- 401/403: the whole run stops (every location), its claimed calls are released untouched.
- Exactly one successful request per call and prompt version: a call is claimed by one run at a time (lease), its
  result is written only while that claim holds, and 'done' is never claimed again. What remains: a worker that
  dies after Anthropic answered and before the write (milliseconds, or a database outage) leaves the call due
  after its lease, so it is requested again - one extra request per call caught in that window. A batch created
  while its run dies before recording it (one POST) is the same window for its calls.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

from shared import errors
from shared.domain.call_analysis import (
    PROMPT_VERSION, InvalidAnswer, custom_id, parse_answer, parse_custom_id, request_params,
)
from shared.logs import get_logger
from shared.services.leased_work import LocationRun, record_answers, run_locations, work_leased_rows

log = get_logger("services.analyze_calls")

WRITE_GROUP = 200  # batch results written per rpc
DEADLINE_GRACE_SECONDS = 30  # no request starts later than this after the run's deadline (the platform's timeout is
# 40 s after the default deadline): a call still waiting in the rate limit's line then is given back


@dataclass
class AnalyzeSummary:
    location_id: str
    claimed: int = 0
    done: int = 0  # analyses stored
    failed: int = 0  # invalid/refused twice, or the request refused
    retry_later: int = 0  # Anthropic unavailable: due again after a backoff
    released: int = 0  # claims given back unworked (deadline, stopped run)
    lost_claims: int = 0  # results not written: the lease had ended and another run holds the call
    requests: int = 0  # messages requests answered for this location's calls (429/529 retries not counted)
    input_tokens: int = 0
    output_tokens: int = 0
    batches_submitted: int = 0
    batched_calls: int = 0
    batches_collected: int = 0
    batches_waiting: int = 0  # still in progress at Anthropic
    seconds: float = 0.0
    status: str = "success"  # success | partial | failed
    error: str | None = None
    stopped_by_deadline: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Result:
    id: str
    table: str
    outcome: str  # done | failed | retry | released | batched | unbatched
    summary: dict[str, Any] | None = None
    model: str | None = None
    prompt_version: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    reason: str | None = None
    batch_id: str | None = None
    batched: bool = False

    def as_row(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class _RunStop:
    """Shared by every location of a run: an invalid API key stops them all."""

    reason: str | None = None


@dataclass
class _LocationRun(LocationRun):
    summary: AnalyzeSummary
    shared_stop: _RunStop = field(default_factory=_RunStop)

    def claimed(self, rows: list[dict[str, Any]]) -> None:
        self.summary.claimed += len(rows)

    def claim_failed(self, exc: errors.BridgeError) -> None:
        self.stop(f"claiming calls failed: {exc.message}")

    def stop_all(self, reason: str) -> None:
        self.shared_stop.reason = self.shared_stop.reason or reason
        self.stop(reason)

    @property
    def stopped(self) -> bool:
        if self.shared_stop.reason and not self.abort_reason:
            self.stop(self.shared_stop.reason)
        return self.abort_reason is not None


Progress = Callable[[int], None]  # called with the number of calls whose results were just written
ClientFactory = Callable[[Any], Any]  # settings -> async context manager AnthropicClient


def run_analyze(database, settings, *, location_id: str | None = None, limit: int | None = None,
                deadline: float | None = None, client_factory: ClientFactory | None = None,
                progress: Progress | None = None) -> list[AnalyzeSummary]:
    """The synchronous entry point (function handler, CLI, a per-location dispatcher): one event loop per run."""
    from shared.adapters.analysis_repository import AnalysisRepository

    return asyncio.run(analyze_locations(AnalysisRepository(database), settings, location_id=location_id,
                                         limit=limit, deadline=deadline, client_factory=client_factory,
                                         progress=progress))


def _default_client(settings):
    from shared.adapters.anthropic_client import client_from_settings

    return client_from_settings(settings)


async def analyze_locations(repository, settings, *, location_id: str | None = None, limit: int | None = None,
                            deadline: float | None = None, client_factory: ClientFactory | None = None,
                            progress: Progress | None = None,
                            clock: Callable[[], float] = time.monotonic) -> list[AnalyzeSummary]:
    """Analyse the due calls of every integration whose analysis is on (or the one asked for), in parallel.
    `limit`: at most this many calls per location (live or batched)."""
    client = (client_factory or _default_client)(settings)
    stop = _RunStop()
    async with client:

        async def analyze_location(integration: dict[str, Any], run_deadline: float) -> AnalyzeSummary:
            return await _analyze_location(repository, settings, client, stop, integration, limit=limit,
                                           deadline=run_deadline, progress=progress, clock=clock)

        return await run_locations(
            repository.list_integrations, analyze_location, location_id=location_id, limit=limit,
            deadline=deadline, budget_seconds=settings.analysis_deadline_seconds, clock=clock,
            unknown_location=f"no active integration with call analysis on for location {location_id!r}")


async def _analyze_location(repository, settings, client, stop: _RunStop, integration, *, limit, deadline, progress,
                            clock) -> AnalyzeSummary:
    started = clock()
    location_id = integration["location_id"]
    summary = AnalyzeSummary(location_id=location_id)
    run = _LocationRun(integration=integration, summary=summary, shared_stop=stop)
    try:
        state = await asyncio.to_thread(repository.location_state, location_id)
        for batch_id in state.get("batches") or []:
            if run.stopped or clock() >= deadline:
                break
            await _collect_batch(repository, settings, client, run, batch_id, progress=progress)
        due = int(state.get("due") or 0)
        threshold = settings.analysis_batch_threshold
        if not run.stopped and threshold and due > threshold and clock() < deadline:
            await _submit_batch(repository, settings, client, run, limit=limit)
        elif not run.stopped:
            await _work_live(repository, settings, client, run, limit=limit, deadline=deadline, progress=progress,
                             clock=clock)
    except errors.BridgeError as exc:
        _stop_for(run, exc)
    except Exception as exc:  # noqa: BLE001 - one location's bug must not lose the other locations' summaries
        log.exception("analysis of a location failed", extra={"fields": {"location_id": location_id}})
        run.stop(f"unexpected error ({type(exc).__name__})")
    summary.seconds = round(clock() - started, 3)
    summary.status, summary.error = run.outcome(
        redone="calls are analysed again",
        nothing_done=summary.done == 0 and summary.batches_submitted == 0 and summary.batches_collected == 0)
    log.info("location analysed", extra={"fields": {**summary.to_dict(), "claim_id": run.claim_id}})
    return summary


def _stop_for(run: _LocationRun, exc: errors.BridgeError) -> None:
    from shared.adapters.anthropic_client import AnthropicConfigError, AnthropicUnauthorized

    if isinstance(exc, (AnthropicUnauthorized, AnthropicConfigError)):
        run.stop_all(exc.message)
    else:
        run.stop(exc.message)


# ---- live requests --------------------------------------------------------------------------------------------

async def _work_live(repository, settings, client, run: _LocationRun, *, limit, deadline, progress, clock) -> None:
    lease_seconds = settings.analysis_lease_seconds

    async def write(batch: list[_Result]) -> None:
        await _write_results(repository, settings, run, batch)
        if progress is not None:
            progress(len(batch))

    await work_leased_rows(
        run, claim=partial(repository.claim, run.summary.location_id, run.claim_id, lease_seconds=lease_seconds),
        work=partial(_analyze_one, run, client, settings, clock=clock,
                     last_start=deadline + DEADLINE_GRACE_SECONDS), write=write,
        workers=settings.analysis_max_in_flight, lease_seconds=lease_seconds, limit=limit, deadline=deadline,
        clock=clock)


async def _analyze_one(run: _LocationRun, client, settings, row: dict[str, Any], work_by: float, clock,
                       last_start: float | None = None) -> _Result:
    from shared.adapters.anthropic_client import (
        AnthropicConfigError, AnthropicRefused, AnthropicUnauthorized, AnthropicUnavailable, PacerTimeout,
    )

    summary = run.summary
    result = _Result(id=str(row["id"]), table=row["call_table"], outcome="released")
    if run.stopped or clock() >= work_by:
        summary.released += 1
        return result
    params = request_params(row["transcript"] or "", row.get("started_at"), row.get("time_zone"),
                            model=settings.anthropic_model, max_tokens=settings.analysis_max_tokens)
    problems: list[str] = []
    try:
        for _attempt in range(2):  # an invalid or refused answer gets one more request
            # never a request after work_by (the lease may end and another claim take the call) nor long after the
            # run's deadline (the platform may end the run): the call waits in the pacer's line until then at most
            answer = await client.create_message(params, not_after=min(work_by, last_start or work_by))
            summary.requests += 1
            result.input_tokens += answer.input_tokens
            result.output_tokens += answer.output_tokens
            result.model = answer.model or settings.anthropic_model
            try:
                analysis = parse_answer(answer.text, answer.stop_reason)
            except InvalidAnswer as exc:
                problems.append(str(exc))
                continue
            result.outcome, result.summary = "done", analysis.to_summary()
            break
        else:
            result.outcome = "failed"
            result.reason = f"invalid answer twice: {problems[-1]}"[:1000]
    except PacerTimeout:
        if result.input_tokens == 0:
            summary.released += 1
            return _Result(id=result.id, table=result.table, outcome="released")
        result.outcome, result.reason = "retry", "the rate limit left no room before the lease ended"
    except (AnthropicUnauthorized, AnthropicConfigError) as exc:
        run.stop_all(exc.message)
        if result.input_tokens == 0:
            summary.released += 1
            return _Result(id=result.id, table=result.table, outcome="released")
        result.outcome, result.reason = "retry", exc.message  # tokens were spent: keep them on the call
    except AnthropicRefused as exc:
        result.outcome, result.reason = "failed", exc.message[:1000]
    except AnthropicUnavailable as exc:
        result.outcome, result.reason = "retry", exc.message[:1000]
        run.transient_failure("calls", exc.message)
    result.prompt_version = PROMPT_VERSION
    summary.input_tokens += result.input_tokens
    summary.output_tokens += result.output_tokens
    if result.outcome == "done":
        run.consecutive_transient = 0
    return result


async def _write_results(repository, settings, run: _LocationRun, batch: list[_Result]) -> None:
    rows = [result.as_row() for result in batch]
    written = await record_answers(run, partial(
        repository.record_results, run.claim_id, rows, backoff_base_seconds=settings.analysis_backoff_base_seconds,
        backoff_cap_seconds=settings.analysis_backoff_cap_seconds, max_attempts=settings.analysis_max_attempts),
        len(rows), log=log, failure="could not record analysis results")
    if written is None:
        return
    run.summary.lost_claims += len(rows) - written
    if written == len(rows):
        for result in batch:
            if result.outcome == "done":
                run.summary.done += 1
            elif result.outcome == "failed":
                run.summary.failed += 1
            elif result.outcome == "retry":
                run.summary.retry_later += 1


# ---- Message Batches ------------------------------------------------------------------------------------------

async def _submit_batch(repository, settings, client, run: _LocationRun, *, limit) -> None:
    """Claim the due calls (up to the batch size), send them as one Message Batch, record it on them."""
    size = min(settings.analysis_batch_max_requests, limit or settings.analysis_batch_max_requests)
    rows = await asyncio.to_thread(repository.claim, run.summary.location_id, run.claim_id,
                                   lease_seconds=settings.analysis_lease_seconds, limit=size)
    run.claimed(rows)
    if not rows:
        return
    requests = [{"custom_id": custom_id(row["call_table"], str(row["id"])),
                 "params": request_params(row["transcript"] or "", row.get("started_at"), row.get("time_zone"),
                                          model=settings.anthropic_model, max_tokens=settings.analysis_max_tokens)}
                for row in rows]
    try:
        batch_id = await client.create_batch(requests)
    except errors.BridgeError as exc:
        await _write_results(repository, settings, run, [
            _Result(id=str(row["id"]), table=row["call_table"], outcome="released") for row in rows])
        run.summary.released += len(rows)
        _stop_for(run, exc)
        return
    run.summary.batches_submitted += 1
    run.summary.batched_calls += len(rows)
    # The window: a crash between the batch's creation and this write sends these calls again after the lease.
    rows_written = [_Result(id=str(row["id"]), table=row["call_table"], outcome="batched", batch_id=batch_id)
                    for row in rows]
    for start in range(0, len(rows_written), WRITE_GROUP):
        await _write_results(repository, settings, run, rows_written[start:start + WRITE_GROUP])
    log.info("message batch submitted", extra={"fields": {
        "location_id": run.summary.location_id, "batch_id": batch_id, "calls": len(rows)}})


async def _collect_batch(repository, settings, client, run: _LocationRun, batch_id: str, *, progress) -> None:
    """An ended batch's results written with the live path's validation; errored/expired/canceled calls pending
    again; a batch still in progress is left for a later run."""
    status = await client.batch_status(batch_id)
    if status != "ended":
        run.summary.batches_waiting += 1
        return
    rows = await asyncio.to_thread(repository.claim_batch, run.summary.location_id, batch_id, run.claim_id,
                                   lease_seconds=settings.analysis_lease_seconds)
    claimed = {(row["call_table"], str(row["id"])) for row in rows}
    if not claimed:
        return
    run.claimed(rows)
    pending: list[_Result] = []
    seen: set[tuple[str, str]] = set()

    async def flush() -> None:
        if pending:
            await _write_results(repository, settings, run, list(pending))
            if progress is not None:
                progress(len(pending))
            pending.clear()

    async for entry_id, kind, answer, error in client.batch_results(batch_id):
        key = parse_custom_id(entry_id)
        if key is None or key not in claimed or key in seen:
            continue
        seen.add(key)
        table, call_id = key
        result = _Result(id=call_id, table=table, outcome="unbatched", prompt_version=PROMPT_VERSION, batched=True)
        if kind == "succeeded" and answer is not None:
            result.input_tokens, result.output_tokens = answer.input_tokens, answer.output_tokens
            result.model = answer.model or settings.anthropic_model
            try:
                result.summary = parse_answer(answer.text, answer.stop_reason).to_summary()
                result.outcome = "done"
            except InvalidAnswer as exc:  # the live path asks once more (and fails it if still invalid)
                result.outcome, result.reason = "retry", f"invalid answer in batch {batch_id}: {exc}"[:1000]
        else:
            result.reason = f"batch {batch_id}: request {kind}" + (f" ({error})" if error else "")
        run.summary.input_tokens += result.input_tokens
        run.summary.output_tokens += result.output_tokens
        pending.append(result)
        if len(pending) >= WRITE_GROUP:
            await flush()
    # Calls the results file did not mention (should not happen): back to the live path.
    for table, call_id in sorted(claimed - seen):
        pending.append(_Result(id=call_id, table=table, outcome="unbatched",
                               reason=f"batch {batch_id}: no result for the call"))
    await flush()
    run.summary.batches_collected += 1
