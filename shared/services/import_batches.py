"""Batch import use cases: pull a location's contacts and calls into a staged batch, then process it in chunks.

Ports come in as arguments: `repo` (shared.adapters.import_repository.ImportRepository or anything with its
methods) and `ghl_factory(location_id, token) -> GhlClient` (an async context manager).

Everything resumes: the pull's cursors live on the batch (stage_import_page moves a cursor in the same
transaction that stages its page), and processing claims whatever rows are still open. An invocation that runs
out of time stops between two round trips; the next call (a scheduler's "process") goes on from there.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shared import errors
from shared.domain.import_records import (
    PullRequest, contact_filters, staged_call, staged_contact,
)
from shared.domain.list_end import list_end
from shared.logs import get_logger

log = get_logger("services.import_batches")

OPEN_STATUSES = ("pending", "processing")


@dataclass
class BatchRun:
    """What one invocation did to one batch, and the batch as it stands afterwards."""

    batch: dict[str, Any]
    pages: int = 0
    staged: int = 0
    chunks: int = 0
    imported: int = 0
    skipped: int = 0
    errors: int = 0
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {**self.batch, "run": {"pages_pulled": self.pages, "records_staged": self.staged,
                                      "chunks": self.chunks, "imported": self.imported, "skipped": self.skipped,
                                      "errors": self.errors, "warnings": self.warnings}}


def ghl_client_factory(settings) -> Callable:
    """The real GHL port: `factory(location_id, token)` -> GhlClient configured from the settings."""

    def make(location_id: str, token: str, http=None):
        """http: an aiohttp session (ghl_client.shared_http_session) shared by many locations' clients (one TLS context for all), else its own."""
        from shared.adapters.ghl_client import GhlClient

        return GhlClient(location_id=location_id, token=token, base_url=settings.ghl_api_base_url,
                         daily_reserve=settings.ghl_daily_budget_reserve, max_in_flight=settings.ghl_max_in_flight,
                         timeout=settings.ghl_request_timeout_seconds, http=http)

    return make


def _time_left(deadline: float) -> bool:
    return time.monotonic() < deadline


def start_import(repo, ghl_factory: Callable, settings, request: PullRequest, *, deadline: float) -> BatchRun:
    """Create the batch, pull as far as the deadline allows, then process what is staged."""
    batch = repo.create_batch(request.location_id, list(request.kinds), request.since, request.created_by)
    if not batch:
        raise errors.UnknownLocation(f"no active GHL integration for location {request.location_id}")
    log.info("import batch created", extra={"fields": {"batch_id": batch["id"], "location_id": request.location_id,
                                                       "kinds": list(request.kinds)}})
    return advance_batch(repo, ghl_factory, settings, batch["id"], deadline=deadline)


def process_open_batches(repo, ghl_factory: Callable, settings, *, deadline: float,
                         location_id: str | None = None) -> list[BatchRun]:
    """The scheduler's call: advance every open batch (or one location's: a fan-out task) at once, each
    location on its own GHL budget, all under one deadline (sync's pattern: one event loop, a gather, database
    calls in threads). A batch that fails (its database calls, a bug) comes back with a warning; the others go on."""
    return asyncio.run(_advance_all(repo, ghl_factory, settings, deadline, location_id))


async def _advance_all(repo, ghl_factory: Callable, settings, deadline: float,
                       location_id: str | None = None) -> list[BatchRun]:
    batch_ids = await asyncio.to_thread(repo.open_batch_ids, location_id)
    return list(await asyncio.gather(*(_advance_isolated(repo, ghl_factory, settings, batch_id, deadline)
                                       for batch_id in batch_ids)))


async def _advance_isolated(repo, ghl_factory: Callable, settings, batch_id: str, deadline: float) -> BatchRun:
    try:
        return await _advance(repo, ghl_factory, settings, batch_id, deadline)
    except Exception as exc:  # noqa: BLE001 - one batch's failure must not lose the other batches' runs
        reason = exc.message if isinstance(exc, errors.BridgeError) else f"unexpected error ({type(exc).__name__})"
        log.exception("import batch not advanced", extra={"fields": {"batch_id": batch_id, "reason": reason}})
        # The batch as it stands; if even that cannot be read, the database is down for every batch: raise.
        summary = await asyncio.to_thread(repo.summary, batch_id)
        run = BatchRun(batch=summary or {"id": batch_id})
        run.warnings.append(f"batch not advanced: {reason}")
        return run


def advance_batch(repo, ghl_factory: Callable, settings, batch_id: str, *, deadline: float) -> BatchRun:
    """Continue the batch's pull if it is unfinished, then process chunks until nothing is open or time is up."""
    return asyncio.run(_advance(repo, ghl_factory, settings, batch_id, deadline))


async def _advance(repo, ghl_factory: Callable, settings, batch_id: str, deadline: float) -> BatchRun:
    context = await asyncio.to_thread(repo.pull_context, batch_id)
    if not context:
        raise errors.BadRequest(f"import batch {batch_id} does not exist")
    run = BatchRun(batch=_summary(context))
    if context["status"] not in OPEN_STATUSES:
        return run
    if not context["integration_active"]:
        run.batch = await asyncio.to_thread(
            repo.fail_batch, batch_id, f"no active GHL integration for location {context['location_id']}")
        return run
    if context.get("pull_completed_at") is None:
        try:
            await _pull(repo, ghl_factory, settings, context, run, deadline)
        except errors.GhlPermanentError as exc:
            # GHL refuses the location's requests (401 token revoked, 403, 404 ...): retrying cannot help.
            reason = f"GHL rejected the pull: {exc.message}"
            log.warning("import batch failed", extra={"fields": {"batch_id": batch_id, "reason": reason}})
            run.batch = await asyncio.to_thread(repo.fail_batch, batch_id, reason)
            return run
        except errors.TransientError as exc:
            # GHL unavailable or the daily budget spent: keep the cursors; the next call goes on from them.
            run.warnings.append(f"pull paused: {exc.message}")
            log.warning("import pull paused", extra={"fields": {"batch_id": batch_id, "reason": exc.message}})
    await _process(repo, settings, batch_id, run, deadline)
    return run


# ---- the pull --------------------------------------------------------------------------------------------------
#
# Per kind (contacts, calls) a stream of two tasks: the fetcher asks GHL for page after page on its own copy of
# the cursor and puts each page (already turned into staging rows) in a small queue; the stager stages them in
# order with the cursor move in one rpc (compare-and-set on the staged cursor), the pages waiting in the queue
# together when it fell behind. The fetcher thus runs up to PAGES_AHEAD pages ahead, so GHL's round trip and
# the database's overlap; memory holds at most PAGES_AHEAD + 2 pages per stream. The kinds' streams run at once
# on one GHL client: the location's limiter paces both. A crash loses only fetched, unstaged pages: the next
# call fetches them again from the staged cursor.

PAGES_AHEAD = 3


@dataclass
class _Page:
    records: list[dict[str, Any]]
    next_state: dict[str, Any]
    done: bool
    warning: str | None = None


@dataclass
class _Failed:
    error: BaseException


async def _pull(repo, ghl_factory: Callable, settings, context: dict, run: BatchRun, deadline: float) -> None:
    pull_state = context.get("pull_state") or {}
    since = _parse_moment(context.get("since"))
    kinds = [kind for kind in context["kinds"] if not (pull_state.get(kind) or {}).get("done")]
    if not kinds:
        return
    async with ghl_factory(context["location_id"], context["api_token"]) as ghl:
        streams = [asyncio.create_task(_pull_stream(repo, ghl, settings, context["id"], kind, pull_state.get(kind),
                                                    since, run, deadline)) for kind in kinds]
        try:
            await asyncio.wait(streams, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for stream in streams:  # the first error stops the other stream too (the next call resumes both)
                stream.cancel()
            await asyncio.gather(*streams, return_exceptions=True)
        for stream in streams:
            if not stream.cancelled() and stream.exception() is not None:
                raise stream.exception()


async def _pull_stream(repo, ghl, settings, batch_id: str, kind: str, state: dict | None, since, run: BatchRun,
                       deadline: float) -> None:
    """Stage the kind's pages in order as the fetcher brings them, until the list ends or the deadline."""
    queue: asyncio.Queue = asyncio.Queue(maxsize=PAGES_AHEAD)
    fetcher = asyncio.create_task(_fetch_pages(ghl, settings, kind, state, since, queue, deadline))
    try:
        while True:
            pages, end = await _take_pages(queue)
            if pages:
                last = pages[-1]
                result = await asyncio.to_thread(
                    repo.stage_page, batch_id, kind, [record for page in pages for record in page.records], state,
                    last.next_state, last.done, last.warning, len(pages))
                run.batch = result["batch"]
                if not result["advanced"]:
                    # Another worker moved this cursor (or the batch closed): it continues the pull.
                    run.warnings.append(f"{kind} pull continued by another worker")
                    return
                run.pages += len(pages)
                run.staged += result["staged"]
                state = result["state"]
                if last.warning:
                    run.warnings.append(last.warning)
                    log.warning("import list ended short", extra={"fields": {"batch_id": batch_id,
                                                                             "warning": last.warning}})
                if last.done:
                    return
            if isinstance(end, _Failed):  # what was fetched before the error is staged; now the error
                raise end.error
            if end is not None:  # the deadline: the fetcher stopped between two requests
                return
    finally:
        fetcher.cancel()
        await asyncio.gather(fetcher, return_exceptions=True)


_DEADLINE = object()


async def _take_pages(queue: asyncio.Queue) -> tuple[list[_Page], object]:
    """The next page and those already waiting behind it (a stager that fell behind the fetcher stages them in
    one rpc), and what ended them: None (go on), _DEADLINE, or a _Failed."""
    pages: list[_Page] = []
    item = await queue.get()
    while True:
        if item is None:
            return pages, _DEADLINE
        if isinstance(item, _Failed):
            return pages, item
        pages.append(item)
        if item.done or queue.empty():
            return pages, None
        item = queue.get_nowait()


async def _fetch_pages(ghl, settings, kind: str, state: dict | None, since, queue: asyncio.Queue,
                       deadline: float) -> None:
    cursor = dict(state or {})
    try:
        while _time_left(deadline):
            page = await (_fetch_contacts if kind == "contacts" else _fetch_calls)(ghl, settings, cursor, since)
            await queue.put(page)
            if page.done:
                return
            cursor = page.next_state
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - handed to the stager, which raises it after the pages before it
        await queue.put(_Failed(exc))
        return
    await queue.put(None)


async def _fetch_contacts(ghl, settings, cursor: dict, since) -> _Page:
    limit = min(settings.import_page_size, 500)
    page = await ghl.search_contacts(page_limit=limit, search_after=cursor.get("search_after"),
                                     filters=contact_filters(since))
    read = int(cursor.get("read") or 0) + len(page.contacts)
    last = page.contacts[-1].search_after if page.contacts else None
    end = list_end("contacts", received=len(page.contacts), limit=limit, read=read, total=page.total,
                   has_next=bool(last))
    records = [staged_contact(contact) for contact in page.contacts]
    return _Page(records, {"search_after": last, "read": read}, end.done, end.warning)


async def _fetch_calls(ghl, settings, cursor: dict, since) -> _Page:
    limit = max(10, min(settings.import_page_size, 500))
    previous = cursor.get("cursor")
    page = await ghl.export_call_messages(cursor=previous, limit=limit, start_date=since)
    received = len(page.messages) + page.skipped_non_calls  # the export's own count, voicemail drops included
    read = int(cursor.get("read") or 0) + received
    end = list_end("calls", received=received, limit=limit, read=read, total=page.total,
                   has_next=page.next_cursor is not None and page.next_cursor != previous)
    records = [staged_call(message, settings.phone_default_region) for message in page.messages]
    return _Page(records, {"cursor": page.next_cursor, "read": read}, end.done, end.warning)


async def _process(repo, settings, batch_id: str, run: BatchRun, deadline: float) -> None:
    while _time_left(deadline):
        # a thread per chunk, not per batch: batches processing at once share the thread pool with the pulls
        result = await asyncio.to_thread(repo.process_chunk, batch_id, settings.import_chunk_size,
                                         settings.import_create_unmatched_prospects)
        run.batch = result["batch"]
        if not result["claimed"]:
            return
        run.chunks += 1
        run.imported += result.get("imported") or 0
        run.skipped += result.get("skipped") or 0
        run.errors += result.get("errors") or 0


def _summary(context: dict) -> dict:
    return {k: v for k, v in context.items()
            if k not in ("api_token", "pull_state", "integration_active", "integration_type")}


def _parse_moment(value):
    if value is None:
        return None
    from datetime import datetime

    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
