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

    def make(location_id: str, token: str):
        from shared.adapters.ghl_client import GhlClient

        return GhlClient(location_id=location_id, token=token, base_url=settings.ghl_api_base_url,
                         daily_reserve=settings.ghl_daily_budget_reserve, max_in_flight=settings.ghl_max_in_flight,
                         timeout=settings.ghl_request_timeout_seconds)

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


def process_open_batches(repo, ghl_factory: Callable, settings, *, deadline: float) -> list[BatchRun]:
    """The scheduler's call: advance every open batch (unfinished pulls included), oldest first."""
    runs = []
    for batch_id in repo.open_batch_ids():
        if not _time_left(deadline):
            break
        runs.append(advance_batch(repo, ghl_factory, settings, batch_id, deadline=deadline))
    return runs


def advance_batch(repo, ghl_factory: Callable, settings, batch_id: str, *, deadline: float) -> BatchRun:
    """Continue the batch's pull if it is unfinished, then process chunks until nothing is open or time is up."""
    context = repo.pull_context(batch_id)
    if not context:
        raise errors.BadRequest(f"import batch {batch_id} does not exist")
    run = BatchRun(batch=_summary(context))
    if context["status"] not in OPEN_STATUSES:
        return run
    if not context["integration_active"]:
        run.batch = repo.fail_batch(batch_id, f"no active GHL integration for location {context['location_id']}")
        return run
    if context.get("pull_completed_at") is None:
        try:
            asyncio.run(_pull(repo, ghl_factory, settings, context, run, deadline))
        except errors.GhlPermanentError as exc:
            # GHL refuses the location's requests (401 token revoked, 403, 404 ...): retrying cannot help.
            reason = f"GHL rejected the pull: {exc.message}"
            log.warning("import batch failed", extra={"fields": {"batch_id": batch_id, "reason": reason}})
            run.batch = repo.fail_batch(batch_id, reason)
            return run
        except errors.TransientError as exc:
            # GHL unavailable or the daily budget spent: keep the cursor; the next call goes on from it.
            run.warnings.append(f"pull paused: {exc.message}")
            log.warning("import pull paused", extra={"fields": {"batch_id": batch_id, "reason": exc.message}})
    _process(repo, settings, batch_id, run, deadline)
    return run


async def _pull(repo, ghl_factory: Callable, settings, context: dict, run: BatchRun, deadline: float) -> None:
    """Page through GHL, one page in memory at a time, each staged with its cursor in one round trip."""
    batch_id, pull_state = context["id"], dict(context.get("pull_state") or {})
    since = _parse_moment(context.get("since"))
    async with ghl_factory(context["location_id"], context["api_token"]) as ghl:
        for kind in context["kinds"]:
            state = pull_state.get(kind)
            while not (state or {}).get("done"):
                if not _time_left(deadline):
                    return
                if kind == "contacts":
                    page = await ghl.search_contacts(page_limit=min(settings.import_page_size, 500),
                                                     search_after=(state or {}).get("search_after"),
                                                     filters=contact_filters(since))
                    records = [staged_contact(contact) for contact in page.contacts]
                    next_state, done = {"search_after": page.next_search_after}, page.next_search_after is None
                else:
                    cursor = (state or {}).get("cursor")
                    page = await ghl.export_call_messages(cursor=cursor,
                                                          limit=max(10, min(settings.import_page_size, 500)),
                                                          start_date=since)
                    records = [staged_call(message, settings.phone_default_region) for message in page.messages]
                    done = page.next_cursor is None or page.next_cursor == cursor
                    next_state = {"cursor": page.next_cursor}
                del page  # the staged rows hold what is needed; keep one page in memory
                result = repo.stage_page(batch_id, kind, records, state, next_state, done)
                run.batch = result["batch"]
                if not result["advanced"]:
                    # Another worker moved this cursor (or the batch closed): it continues the pull.
                    run.warnings.append(f"{kind} pull continued by another worker")
                    return
                run.pages += 1
                run.staged += result["staged"]
                state = result["state"]


def _process(repo, settings, batch_id: str, run: BatchRun, deadline: float) -> None:
    while _time_left(deadline):
        result = repo.process_chunk(batch_id, settings.import_chunk_size, settings.import_create_unmatched_prospects)
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
