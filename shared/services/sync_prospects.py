"""Push due prospects to GHL contacts: each exactly once per content change, as fast as the rate limit allows.

Per active internal integration (locations run in parallel, each with its own GHL client and budget):

    count due ─► claim a chunk (lease, SKIP LOCKED) ─► queue ─► N workers: POST /contacts/upsert ─► results
         ▲                                              │                                             │
         └──── while the queue has room, before the deadline, under the limit ◄───────────────────────┘
                                                                    writer: one rpc per group of answers

- Claims are small (2 x the workers) and taken only when the queue has room, so a claimed prospect waits
  seconds, not minutes, for its push, well inside its lease; a worker does not push a prospect whose lease
  is about to run out (it is released instead). The limiter inside the GHL client, not this code, sets
  the pace: the workers keep up to `ghl_max_in_flight` requests open so latency costs no budget.
- Results are written as answers arrive: the writer takes every answer waiting and writes them in one rpc,
  which applies only to prospects still claimed by this run (an expired and re-claimed prospect is
  written by the run that holds it).
- The time budget: no claim after `deadline`; what is claimed is pushed, the next run takes the rest.
- A failed prospect keeps its error and attempt count and waits out a backoff; the run goes on. The run
  stops early (releasing what it claimed but did not push) when GHL rejects the token (401/403), the daily
  budget is spent, or GHL fails so many times in a row that pushing on would only burn attempts.
- dry_run: counts and plans, no claim, no write, no upsert (the location's custom fields are read to
  check the mapping).

The claim/work/write pipeline and the parallel run of the locations are shared with call enrichment
(shared/services/leased_work.py); what a push is and how its result is recorded are here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

from shared import errors
from shared.domain.contact_mapping import CustomFieldMapping, plan_contact_upsert, resolve_custom_field_mapping
from shared.logs import get_logger
from shared.services.leased_work import (
    ClientFactory, LocationRun, default_client_factory, record_answers, run_locations, work_leased_rows,
)

log = get_logger("services.sync_prospects")

BACKOFF_BASE_SECONDS = 60  # a failed prospect waits 60 s, 120 s, 240 s ... up to sync_max_attempts_backoff_seconds
DRY_RUN_DEFAULT_LIMIT = 100
_AUTH_STATUSES = (401, 403)


@dataclass
class LocationSummary:
    location_id: str
    due: int = 0
    pushed: int = 0
    created: int = 0
    updated: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    status: str | None = None  # success | partial | failed (what was written on the integration); None: dry run
    error: str | None = None
    stopped_by_deadline: bool = False
    dry_run: bool = False
    prospects: list[dict[str, Any]] | None = None  # dry run: what would be pushed

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if not self.dry_run:
            data.pop("prospects")
        return data


@dataclass
class _Result:
    id: str
    outcome: str  # pushed | failed | skipped | released
    content_updated_at: str | None = None
    ghl_contact_id: str | None = None
    error: str | None = None

    def as_row(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class _LocationRun(LocationRun):
    summary: LocationSummary
    first_failure: str | None = None
    lost_claims: int = 0

    def claim_failed(self, exc: errors.BridgeError) -> None:
        self.abort_reason = f"claiming prospects failed: {exc.message}"


def run_sync(database, settings, *, location_id: str | None = None, campaign: str | None = None,
             limit: int | None = None, dry_run: bool = False, deadline: float | None = None,
             client_factory: ClientFactory | None = None) -> list[LocationSummary]:
    """The synchronous entry point (function handlers): one event loop for the whole run."""
    from shared.adapters.sync_repository import SyncRepository

    return asyncio.run(sync_locations(SyncRepository(database), settings, location_id=location_id,
                                      campaign=campaign, limit=limit, dry_run=dry_run, deadline=deadline,
                                      client_factory=client_factory))


async def sync_locations(repository, settings, *, location_id: str | None = None, campaign: str | None = None,
                         limit: int | None = None, dry_run: bool = False, deadline: float | None = None,
                         client_factory: ClientFactory | None = None,
                         clock: Callable[[], float] = time.monotonic) -> list[LocationSummary]:
    """Sync every active internal integration (or the one asked for), locations in parallel.

    `deadline` is a `clock()` value after which no more work is claimed (default: now +
    settings.sync_deadline_seconds). `limit`: at most this many prospects per location.
    """
    factory = client_factory or default_client_factory(settings)

    def sync_location(integration: dict[str, Any], run_deadline: float):
        return _sync_location(repository, settings, integration, factory, campaign=campaign, limit=limit,
                              dry_run=dry_run, deadline=run_deadline, clock=clock)

    return await run_locations(
        repository.list_integrations, sync_location, location_id=location_id, limit=limit, deadline=deadline,
        budget_seconds=settings.sync_deadline_seconds, clock=clock,
        unknown_location=f"no active internal integration for location {location_id!r}")


async def _sync_location(repository, settings, integration, factory, *, campaign, limit, dry_run, deadline,
                         clock) -> LocationSummary:
    started = clock()
    location_id = integration["location_id"]
    summary = LocationSummary(location_id=location_id, dry_run=dry_run)
    run = _LocationRun(integration=integration, summary=summary)
    mapping = CustomFieldMapping()
    try:
        summary.due = await asyncio.to_thread(repository.count_due, location_id, campaign)
        if dry_run or summary.due:  # nothing due: no GHL request at all
            async with factory(integration) as client:
                mapping = await _checked_mapping(client, integration.get("custom_field_mapping"))
                if dry_run:
                    await _dry_run(repository, settings, run, mapping, campaign=campaign, limit=limit)
                else:
                    await _push_location(repository, settings, run, client, mapping, campaign=campaign, limit=limit,
                                         deadline=deadline, clock=clock)
    except errors.GhlPermanentError as exc:  # listing custom fields was refused (a bad token, mostly)
        run.abort_reason = f"GHL refused the location's requests: {exc.message}"
    except errors.BridgeError as exc:
        run.abort_reason = exc.message
    except Exception as exc:  # noqa: BLE001 - one location's bug must not lose the other locations' summaries
        log.exception("sync of a location failed", extra={"fields": {"location_id": location_id}})
        run.abort_reason = f"unexpected error ({type(exc).__name__})"
    summary.seconds = round(clock() - started, 3)
    if not dry_run:
        summary.status, summary.error = _run_outcome(run, mapping)
        try:
            await asyncio.to_thread(repository.finish_run, location_id, summary.status, summary.error)
        except errors.BridgeError as exc:
            log.error("could not record the run on the integration",
                      extra={"fields": {"location_id": location_id, "reason": exc.message}})
    elif run.abort_reason or mapping.problems:
        summary.error = "; ".join(filter(None, [run.abort_reason, mapping.problem_text]))
    log.info("location synced", extra={"fields": {
        **summary.to_dict(), "prospects": None, "claim_id": run.claim_id, "lost_claims": run.lost_claims}})
    return summary


async def _checked_mapping(client, raw_mapping) -> CustomFieldMapping:
    """The mapping checked against the location's custom fields (listed once per run, only if there is one)."""
    if not raw_mapping:
        return CustomFieldMapping()
    fields = await client.list_custom_fields()
    return resolve_custom_field_mapping(raw_mapping, [(f.id, f.field_key) for f in fields])


async def _dry_run(repository, settings, run: _LocationRun, mapping, *, campaign, limit) -> None:
    location_id = run.summary.location_id
    rows = await asyncio.to_thread(repository.list_due, location_id, campaign, limit or DRY_RUN_DEFAULT_LIMIT)
    run.summary.prospects = []
    for row in rows:
        plan = plan_contact_upsert(row, location_id=location_id, mapping=mapping,
                                   value_key=settings.sync_custom_field_value_key,
                                   default_region=settings.phone_default_region)
        entry: dict[str, Any] = {"id": plan.prospect_id,
                                 "action": "skip" if plan.body is None else ("update" if row.get("ghl_contact_id")
                                                                              else "create")}
        if plan.body is not None:
            entry["body"] = plan.body
        if plan.skip_reason:
            entry["skip_reason"] = plan.skip_reason
        if plan.notes:
            entry["notes"] = list(plan.notes)
        run.summary.prospects.append(entry)


async def _push_location(repository, settings, run: _LocationRun, client, mapping, *, campaign, limit, deadline,
                         clock) -> None:
    lease_seconds = settings.sync_lease_seconds
    await work_leased_rows(
        run, claim=partial(repository.claim, run.summary.location_id, run.claim_id, lease_seconds=lease_seconds,
                           campaign=campaign),
        work=partial(_push_one, run, client, settings, mapping, clock=clock),
        write=partial(_write_results, repository, settings, run),
        workers=settings.ghl_max_in_flight, lease_seconds=lease_seconds, limit=limit, deadline=deadline, clock=clock)


async def _push_one(run: _LocationRun, client, settings, mapping, row, push_by: float, clock) -> _Result:
    summary = run.summary
    prospect_id = str(row["id"])
    content_at = row.get("content_updated_at")
    plan = plan_contact_upsert(row, location_id=summary.location_id, mapping=mapping,
                               value_key=settings.sync_custom_field_value_key,
                               default_region=settings.phone_default_region)
    if plan.body is None:
        summary.skipped += 1
        return _Result(prospect_id, "skipped", content_updated_at=content_at, error=f"skipped: {plan.skip_reason}")
    if run.abort_reason is not None or clock() >= push_by:
        return _Result(prospect_id, "released")
    try:
        answer = await client.upsert_contact(plan.body)
    except errors.BudgetExhausted as exc:
        run.stop(f"daily GHL budget spent: {exc.message}")
        return _Result(prospect_id, "released")
    except errors.GhlPermanentError as exc:
        if exc.status_code in _AUTH_STATUSES:
            run.stop(f"GHL refused the location's token: {exc.message}")
            return _Result(prospect_id, "released")
        run.consecutive_transient = 0
        return _failed(run, prospect_id, exc.message)
    except errors.TransientError as exc:
        run.transient_failure("pushes", exc.message)
        return _failed(run, prospect_id, exc.message)
    except Exception as exc:  # noqa: BLE001 - a bug for one prospect is recorded on it, the run goes on
        log.exception("unexpected error pushing a prospect",
                      extra={"fields": {"location_id": summary.location_id, "prospect_id": prospect_id}})
        return _failed(run, prospect_id, f"unexpected error ({type(exc).__name__})")
    run.consecutive_transient = 0
    summary.pushed += 1
    if answer.new:
        summary.created += 1
    else:
        summary.updated += 1
    if row.get("ghl_contact_id") and row["ghl_contact_id"] != answer.contact.id:
        log.warning("GHL matched a different contact than the one recorded", extra={"fields": {
            "location_id": summary.location_id, "prospect_id": prospect_id,
            "recorded": row["ghl_contact_id"], "matched": answer.contact.id}})
    return _Result(prospect_id, "pushed", content_updated_at=content_at, ghl_contact_id=answer.contact.id)


def _failed(run: _LocationRun, prospect_id: str, message: str) -> _Result:
    run.summary.failed += 1
    run.first_failure = run.first_failure or message
    return _Result(prospect_id, "failed", error=message)


async def _write_results(repository, settings, run: _LocationRun, batch: list[_Result]) -> None:
    rows = [result.as_row() for result in batch]
    written = await record_answers(run, partial(
        repository.record_results, run.claim_id, rows, backoff_base_seconds=BACKOFF_BASE_SECONDS,
        backoff_cap_seconds=settings.sync_max_attempts_backoff_seconds), len(rows),
        log=log, failure="could not record sync results")
    if written is not None:
        # Fewer written than sent: those claims expired and another run took them (it writes them).
        run.lost_claims += len(rows) - written


def _run_outcome(run: _LocationRun, mapping: CustomFieldMapping) -> tuple[str, str | None]:
    """last_sync_status and last_sync_error for the integration."""
    summary = run.summary
    problems: list[str] = []
    if run.abort_reason:
        problems.append(run.abort_reason)
    if summary.failed:
        problems.append(f"{summary.failed} prospect(s) failed and will be retried; first error: {run.first_failure}")
    if run.write_errors:
        problems.append(f"{run.write_errors} result(s) could not be recorded; those prospects are pushed again "
                        "once their claim expires")
    if mapping.problems:
        problems.append(mapping.problem_text)
    if summary.stopped_by_deadline:
        problems.append("time budget reached; the next run continues with the prospects still due")
    if not problems:
        return "success", None
    nothing_done = summary.pushed == 0 and summary.skipped == 0
    hard_failure = run.abort_reason is not None or summary.failed > 0
    return ("failed" if hard_failure and nothing_done else "partial"), "; ".join(problems)
