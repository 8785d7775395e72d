"""Complete calls with GHL's transcript and recording, out of the webhook's path (docs/enrichment.md).

Per active integration (locations run in parallel, each with its own GHL client, limiter and budget):

    claim a chunk of due calls (lease, SKIP LOCKED) ─► queue ─► N workers ─► results ─► writer (one rpc per group)
       transcript needed: GET .../transcription  -> text with speaker labels + the raw sentences
       recording needed:  GET .../recording      -> streamed to a temp file (memory up to a threshold)
                                                    -> object storage, key <location>/<message id>.<ext>

- Which calls are due, and when again, is decided in SQL (the marking trigger and the results function):
  this code fetches what a claimed row says it needs and reports what it got.
- "Not ready" (an empty transcript, 404/422, no audio) and other refusals are reported with the reason;
  SQL schedules the next attempt (1 min doubling, capped) or, past the horizon, marks the call unavailable.
  429 and 5xx are the client's own retries; a call whose retries ran out is reported like "not ready".
- 401/403 (the token) and a spent daily budget stop that location's run: its claimed calls are released.
- A recording is written once: for a call an earlier (killed) claim held, its key is checked (HEAD) before
  the audio is read; an upload appears whole or not at all; so a re-run after a crash overwrites nothing
  complete. A result that stores a recording always records its key, so only a lost claim can leave one.
- The time budget: no claim after `deadline`; a claimed call whose lease is about to end is released.

The claim/work/write pipeline and the parallel run of the locations are shared with the prospect sync
(shared/services/leased_work.py); what fetching a call is and how its result is recorded are here.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

from shared import errors
from shared.domain.enrichment import flatten_transcript, recording_key
from shared.logs import get_logger
from shared.services.leased_work import (
    ClientFactory, LocationRun, default_client_factory, record_answers, run_locations, work_leased_rows,
)

log = get_logger("services.enrich_calls")

UPLOAD_THREADS = 8  # object-store calls at once per run (boto3 is synchronous); enough to keep up with 3 locations
_AUTH_STATUSES = (401, 403)


@dataclass
class EnrichSummary:
    location_id: str
    claimed: int = 0
    done: int = 0  # calls with nothing left to fetch after this run
    transcripts: int = 0  # transcripts fetched
    recordings: int = 0  # recordings stored
    not_ready: int = 0  # calls GHL had (part of) nothing for yet: retried later
    released: int = 0  # claims given back unworked (deadline, stopped location)
    lost_claims: int = 0  # results not written: the lease had ended and another run holds the call
    requests: int = 0  # GHL requests sent (retries included)
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
    outcome: str  # attempted | released
    transcript: str | None = None
    sentences: list[dict[str, Any]] | None = None
    recording_path: str | None = None
    error: str | None = None
    complete: bool = False  # everything asked for was fetched (for the summary only)

    def as_row(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None and k != "complete"}


@dataclass
class _LocationRun(LocationRun):
    summary: EnrichSummary

    def claimed(self, rows: list[dict[str, Any]]) -> None:
        self.summary.claimed += len(rows)

    def claim_failed(self, exc: errors.BridgeError) -> None:
        self.stop(f"claiming calls failed: {exc.message}")


Progress = Callable[[int], None]  # called with the number of calls whose results were just written


def run_enrich(database, settings, *, recordings=None, location_id: str | None = None, limit: int | None = None,
               deadline: float | None = None, client_factory: ClientFactory | None = None,
               progress: Progress | None = None) -> list[EnrichSummary]:
    """The synchronous entry point (function handler, CLI): one event loop for the whole run.
    `recordings`: the recordings' S3Bucket (None: recordings are not downloaded)."""
    from shared.adapters.enrich_repository import EnrichRepository

    return asyncio.run(enrich_locations(EnrichRepository(database), settings, recordings, location_id=location_id,
                                        limit=limit, deadline=deadline, client_factory=client_factory,
                                        progress=progress))


async def enrich_locations(repository, settings, recordings, *, location_id: str | None = None,
                           limit: int | None = None, deadline: float | None = None,
                           client_factory: ClientFactory | None = None, progress: Progress | None = None,
                           clock: Callable[[], float] = time.monotonic) -> list[EnrichSummary]:
    """Enrich the due calls of every active integration (or the one asked for), locations in parallel.
    `deadline`: a clock() value after which nothing more is claimed (default now + enrich_deadline_seconds).
    `limit`: at most this many calls per location."""
    factory = client_factory or default_client_factory(settings)
    with ThreadPoolExecutor(max_workers=UPLOAD_THREADS, thread_name_prefix="recording-upload") as uploads:

        def enrich_location(integration: dict[str, Any], run_deadline: float):
            return _enrich_location(repository, settings, recordings, uploads, integration, factory, limit=limit,
                                    deadline=run_deadline, progress=progress, clock=clock)

        return await run_locations(
            repository.list_integrations, enrich_location, location_id=location_id, limit=limit,
            deadline=deadline, budget_seconds=settings.enrich_deadline_seconds, clock=clock,
            unknown_location=f"no active integration for location {location_id!r}")


async def _enrich_location(repository, settings, recordings, uploads, integration, factory, *, limit, deadline,
                           progress, clock) -> EnrichSummary:
    started = clock()
    location_id = integration["location_id"]
    summary = EnrichSummary(location_id=location_id)
    run = _LocationRun(integration=integration, summary=summary)
    client = None
    try:
        client = factory(integration)
        async with client:
            await _work_location(repository, settings, recordings, uploads, run, client, limit=limit,
                                 deadline=deadline, progress=progress, clock=clock)
    except errors.BridgeError as exc:
        run.stop(exc.message)
    except Exception as exc:  # noqa: BLE001 - one location's bug must not lose the other locations' summaries
        log.exception("enrichment of a location failed", extra={"fields": {"location_id": location_id}})
        run.stop(f"unexpected error ({type(exc).__name__})")
    stats = getattr(client, "stats", None)
    summary.requests = getattr(stats, "requests", 0)
    summary.seconds = round(clock() - started, 3)
    summary.status, summary.error = run.outcome(
        redone="calls are fetched again",
        nothing_done=summary.transcripts == 0 and summary.recordings == 0 and summary.done == 0)
    log.info("location enriched", extra={"fields": {**summary.to_dict(), "claim_id": run.claim_id}})
    return summary


async def _work_location(repository, settings, recordings, uploads, run: _LocationRun, client, *, limit, deadline,
                         progress, clock) -> None:
    lease_seconds = settings.enrich_lease_seconds
    recordings_enabled = recordings is not None

    async def write(batch: list[_Result]) -> None:
        await _write_results(repository, settings, run, batch, recordings_enabled)
        if progress is not None:
            progress(len(batch))

    await work_leased_rows(
        run, claim=partial(repository.claim, run.summary.location_id, run.claim_id, lease_seconds=lease_seconds,
                           recordings_enabled=recordings_enabled),
        work=partial(_enrich_one, run, client, recordings, uploads, settings, clock=clock), write=write,
        workers=settings.ghl_max_in_flight, lease_seconds=lease_seconds, limit=limit, deadline=deadline, clock=clock)


async def _enrich_one(run: _LocationRun, client, recordings, uploads, settings, row: dict[str, Any],
                      work_by: float, clock) -> _Result:
    summary = run.summary
    result = _Result(id=str(row["id"]), table=row["call_table"], outcome="attempted")
    if run.abort_reason is not None or clock() >= work_by:
        result.outcome = "released"
        summary.released += 1
        return result
    message_id = row["external_call_id"]

    async def transcript() -> str | None:
        sentences = await client.get_call_transcription(message_id)
        text = flatten_transcript(sentences)
        if not text:
            return "GHL has none yet (empty)"
        result.transcript = text
        result.sentences = [sentence.raw for sentence in sentences]
        summary.transcripts += 1
        return None

    async def recording() -> str | None:
        path, problem = await _store_recording(client, recordings, uploads, settings, summary.location_id,
                                               message_id, maybe_stored=bool(row.get("was_claimed")))
        if path:
            result.recording_path = path
            summary.recordings += 1
        return problem

    parts = [("transcript", transcript)] if row.get("need_transcript") else []
    if row.get("need_recording") and recordings is not None:
        parts.append(("recording", recording))
    problems: list[str] = []
    transient = False
    try:
        for part, fetch in parts:  # each part on its own: a transcript GHL refuses does not hold up the audio
            problem, part_transient = await _attempt(summary.location_id, message_id, fetch)
            transient = transient or part_transient
            if problem:
                problems.append(f"{part}: {problem}")
    except _StopLocation as stop:
        run.stop(stop.reason)
        summary.released += 1
        return _Result(id=result.id, table=result.table, outcome="released")
    if transient:
        run.transient_failure("calls", problems[-1])
    else:
        run.consecutive_transient = 0
    if problems:
        result.error = "; ".join(problems)[:1000]
        summary.not_ready += 1
    else:
        result.complete = True
    return result


class _StopLocation(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


async def _attempt(location_id: str, message_id: str, fetch) -> tuple[str | None, bool]:
    """(why the part is not stored yet or None, whether it was a transient failure). 401/403 and a spent daily
    budget stop the location (_StopLocation); other refusals (400/404/422) mean GHL has nothing yet."""
    try:
        return await fetch(), False
    except errors.BudgetExhausted as exc:
        raise _StopLocation(f"daily GHL budget spent: {exc.message}") from exc
    except errors.GhlPermanentError as exc:
        if exc.status_code in _AUTH_STATUSES:
            raise _StopLocation(f"GHL refused the location's token: {exc.message}") from exc
        return exc.message, False
    except errors.TransientError as exc:  # the client's retries ran out, or the object store failed
        return exc.message, True
    except Exception as exc:  # noqa: BLE001 - a bug for one call is recorded on it, the run goes on
        log.exception("unexpected error enriching a call", extra={"fields": {
            "location_id": location_id, "call_id": message_id}})
        return f"unexpected error ({type(exc).__name__})", False


async def _store_recording(client, recordings, uploads, settings, location_id: str, message_id: str, *,
                           maybe_stored: bool) -> tuple[str | None, str | None]:
    """(object key, None) once the audio is stored (or was already), else (None, why not).
    maybe_stored: an earlier claim of the call ended without a result, so the object may exist: its key is
    checked before the audio is read (a call never claimed before cannot have one: the key is its own)."""
    loop = asyncio.get_running_loop()
    async with client.stream_call_recording(message_id) as audio:
        if audio is None:
            return None, "GHL has none yet (422)"
        key = recording_key(location_id, message_id, audio.content_type)
        if maybe_stored and await _storage(loop, uploads, "head", partial(recordings.exists, key)):
            return key, None  # written by an earlier run: never overwritten
        with tempfile.SpooledTemporaryFile(max_size=settings.recordings_memory_bytes) as buffer:
            async for chunk in audio.chunks:  # a cut download is the client's GhlTransientError
                buffer.write(chunk)
            size = buffer.tell()
            if size == 0:
                return None, "GHL sent no audio yet"
            buffer.seek(0)
            await _storage(loop, uploads, "upload", partial(recordings.upload, key, buffer, size=size,
                                                           content_type=audio.content_type))
    return key, None


class StorageUnavailable(errors.TransientError):
    code = "object_store_unavailable"


async def _storage(loop, uploads, what: str, operation: Callable[[], Any]) -> Any:
    try:
        return await loop.run_in_executor(uploads, operation)
    except Exception as exc:  # noqa: BLE001 - botocore's errors are many; all mean "try again later" here
        raise StorageUnavailable(f"object store unavailable ({what}: {type(exc).__name__})") from exc


async def _write_results(repository, settings, run: _LocationRun, batch: list[_Result],
                         recordings_enabled: bool) -> None:
    rows = [result.as_row() for result in batch]
    written = await record_answers(run, partial(
        repository.record_results, run.claim_id, rows, recordings_enabled=recordings_enabled,
        horizon_seconds=int(settings.enrich_horizon_hours * 3600),
        backoff_base_seconds=settings.enrich_backoff_base_seconds,
        backoff_cap_seconds=settings.enrich_backoff_cap_seconds), len(rows),
        log=log, failure="could not record enrichment results")
    if written is None:
        return
    # Fewer written than sent: those leases ended and another run holds the calls (it writes them).
    run.summary.lost_claims += len(rows) - written
    if written == len(rows):
        run.summary.done += sum(1 for result in batch if result.complete)
