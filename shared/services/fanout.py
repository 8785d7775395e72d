"""Fan-out on Cloud Tasks: a scheduled run dispatches one task per (job, location with due work); each task runs
its job for its location, alone, under a job lease.

    Cloud Scheduler ─► function {"dispatch": true} ─► due_locations_<job>() (one round trip)
                                                   └► one task per location: POST <function> {"location_id": ...}
    Cloud Tasks ─► function {"location_id": L} ─► take_job_lease(job, L) ─► the job's service for L until the
                                                  task's deadline ─► release_job_lease (what is left: next slot)

- Task names: `<hash>-<job>-<location>-<slot>`, slot = now // the job's slot seconds (its schedule's period),
  so a slot's task for a location exists once: a second dispatch in the slot (a retried scheduler attempt, an
  operator) gets "already exists" for it, which counts as success.
- Never two runners of one job on one location at once: the job lease row (ghl_job_leases, taken atomically in
  SQL), because task names dedupe one slot only (a slot's task may outlive the slot, an operator may run the
  location by hand). A runner that finds the lease held answers 409 location_busy: its queue retries it with
  backoff, so the location is worked as soon as the other runner is done. The lease is renewed by a heartbeat
  every third of fanout_lease_seconds and released at the end; a killed worker's lease ends by itself within
  fanout_lease_seconds, and the rows it had claimed return when their own leases end (nothing is lost; a
  push that was in flight is sent again, which GHL's upsert matches to the same contact).
- JOBS is the registry: a job is a name (its queue `<prefix><name>`, its lease, its SQL `due_locations_<name>`),
  the function its tasks go to, the body they carry, and its slot and deadline settings.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from shared import errors
from shared.adapters.supabase_db import call_rpc
from shared.logs import get_logger

log = get_logger("services.fanout")

T = TypeVar("T")
SLOT_MARGIN_SECONDS = 20  # a task stops claiming this long before its slot ends, so the next slot's task finds
MIN_TASK_SECONDS = 10     # the location free (and a task gets at least this long)
DISPATCH_DEADLINE_MARGIN_SECONDS = 40  # work claimed before the deadline is finished after it


@dataclass(frozen=True)
class Job:
    name: str                # queue <prefix><name>, lease job <name>, SQL due_locations_<name>()
    function: str            # the function its tasks POST to
    task_body: dict[str, Any] = field(default_factory=dict)  # plus {"location_id": ...}
    slot_setting: str = ""   # Settings field: seconds of one slot (the schedule's period)
    deadline_setting: str = ""  # Settings field: the job's own time budget


JOBS: dict[str, Job] = {job.name: job for job in (
    Job("sync", "sync-prospects-to-ghl", {}, "sync_slot_seconds", "sync_deadline_seconds"),
    Job("enrich", "process-ghl-import", {"action": "enrich"}, "enrich_slot_seconds", "enrich_deadline_seconds"),
    Job("import", "process-ghl-import", {"action": "process"}, "import_slot_seconds", "import_deadline_seconds"),
    Job("analyze", "process-ghl-import", {"action": "analyze"}, "analysis_slot_seconds", "analysis_deadline_seconds"),
)}


def queue_of(job: Job, settings) -> str:
    return f"{settings.cloud_tasks_queue_prefix}{job.name}"


def task_id(job: Job, location_id: str, slot: int) -> str:
    """Cloud Tasks' task id ([A-Za-z0-9_-], at most 500): a hash first (names spread over the queue's key space,
    as Cloud Tasks advises; and two locations that read the same once cleaned never share a name)."""
    digest = hashlib.sha256(f"{job.name}\0{location_id}".encode()).hexdigest()[:12]
    return f"{digest}-{job.name}-{re.sub(r'[^A-Za-z0-9_-]', '_', location_id)[:200]}-{slot}"


def task_seconds(job: Job, settings) -> float:
    """How long a task of the job claims work: its deadline, and no later than its slot's end less a margin."""
    slot = getattr(settings, job.slot_setting)
    return max(MIN_TASK_SECONDS, min(getattr(settings, job.deadline_setting), slot - SLOT_MARGIN_SECONDS))


@dataclass
class DispatchReport:
    job: str
    queue: str
    slot: int
    locations: int = 0
    created: int = 0
    existing: int = 0  # the slot's task of the location existed already (an earlier dispatch in the slot)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def tasks_client(settings):
    """The Cloud Tasks adapter for the settings (production: the metadata server's token; the stand-in: none)."""
    from shared.adapters.cloud_tasks import GOOGLE_TASKS_API, CloudTasks, MetadataServerToken

    if not (settings.cloud_tasks_project and settings.cloud_tasks_location and settings.functions_base_url):
        raise errors.ConfigurationError(
            "fan-out is not configured: set CLOUD_TASKS_PROJECT, CLOUD_TASKS_LOCATION and FUNCTIONS_BASE_URL "
            "(docs/deploy.md \"Fan-out\")")
    google = settings.cloud_tasks_api_url.rstrip("/") == GOOGLE_TASKS_API
    return CloudTasks(api_url=settings.cloud_tasks_api_url, project=settings.cloud_tasks_project,
                      location=settings.cloud_tasks_location, token_source=MetadataServerToken() if google else None)


def dispatch(job_name: str, database, settings, *, tasks=None, clock: Callable[[], float] = time.time) -> DispatchReport:
    """One task per location with due work of the job, in this slot's names: one SQL round trip, then the
    task creations (up to fanout_dispatch_concurrency at once)."""
    from shared.adapters.cloud_tasks import HttpTask

    job = JOBS[job_name]
    tasks = tasks or tasks_client(settings)
    started = time.monotonic()
    slot = int(clock() // getattr(settings, job.slot_setting))
    report = DispatchReport(job=job.name, queue=queue_of(job, settings), slot=slot)
    rows = call_rpc(database, f"due_locations_{job.name}", {}) or []
    locations = [row if isinstance(row, str) else next(iter(row.values())) for row in rows]
    report.locations = len(locations)
    url = f"{settings.functions_base_url.rstrip('/')}/{job.function}"
    outcomes = tasks.create_tasks(
        report.queue, [HttpTask(task_id(job, location, slot), url, {**job.task_body, "location_id": location})
                       for location in locations],
        oidc_service_account=settings.cloud_tasks_invoker_email,
        dispatch_deadline_seconds=int(min(1800, task_seconds(job, settings) + DISPATCH_DEADLINE_MARGIN_SECONDS)),
        concurrency=settings.fanout_dispatch_concurrency)
    report.created = sum(outcome == "created" for outcome in outcomes.values())
    report.existing = sum(outcome == "exists" for outcome in outcomes.values())
    report.seconds = round(time.monotonic() - started, 3)
    log.info("dispatched", extra={"fields": report.to_dict()})
    return report


def run_leased(job_name: str, location_id: str, database, settings, work: Callable[[], T]) -> T:
    """`work()` for one location while holding the job's lease on it (LocationBusy when another runner holds it).
    The lease is renewed every third of fanout_lease_seconds while `work` runs, and released after it."""
    job = JOBS[job_name]
    holder = str(uuid.uuid4())
    lease_seconds = max(3, settings.fanout_lease_seconds)
    lease = {"p_job": job.name, "p_location_id": location_id, "p_holder": holder}
    if not call_rpc(database, "take_job_lease", {**lease, "p_seconds": lease_seconds}):
        raise errors.LocationBusy(f"another {job.name} run works location {location_id!r} now; "
                                  "this one starts when it is done")
    done = threading.Event()

    def heartbeat() -> None:
        while not done.wait(lease_seconds / 3):
            try:
                if not call_rpc(database, "renew_job_lease", {**lease, "p_seconds": lease_seconds}):
                    log.warning("job lease lost", extra={"fields": {"job": job.name, "location_id": location_id}})
                    return
            except errors.BridgeError as exc:  # the next beat tries again; the lease has two more thirds
                log.warning("job lease not renewed", extra={"fields": {
                    "job": job.name, "location_id": location_id, "reason": exc.message}})

    beat = threading.Thread(target=heartbeat, name=f"lease-{job.name}", daemon=True)
    beat.start()
    try:
        return work()
    finally:
        done.set()
        beat.join(timeout=5)
        try:
            call_rpc(database, "release_job_lease", lease)
        except errors.BridgeError as exc:  # it ends by itself within fanout_lease_seconds
            log.warning("job lease not released", extra={"fields": {
                "job": job.name, "location_id": location_id, "reason": exc.message}})


def is_task_request(request) -> bool:
    """A request Cloud Tasks delivered (its queue's name header), which works to its slot's deadline."""
    return bool(request.headers.get("X-CloudTasks-QueueName"))


_TASK_NAME = re.compile(r"[A-Za-z0-9_-]{1,500}")


def task_name_of(request) -> str | None:
    """The task's name for the summary line, when the header holds one (a caller's header is not logged as is)."""
    name = request.headers.get("X-CloudTasks-TaskName") or ""
    return name if _TASK_NAME.fullmatch(name) else None
