"""process-ghl-import: pull a GHL location's contacts and calls into a staged batch, match and import them.

Auth: `Authorization: Bearer <SCHEDULER_SECRET>` (or the service-role key), or deployed private the OIDC token
of the invoker account (shared/http.py). POST bodies:
    {"action": "pull", "location_id": str, "kinds": ["contacts", "calls"], "since": ISO date-time?,
     "created_by": user uuid?}                      -> creates a batch, pulls and processes until the deadline
    {"action": "process", "batch_id": uuid?}        -> advances that batch, or every open batch (pulls included)
    {"action": "process", "location_id": str}       -> advances that location's open batches (a fan-out task;
                                                       holds the location's import lease: 409 location_busy)
    {"action": "process", "dispatch": true}         -> fan-out: one Cloud Task per location with an open batch
    {"action": "replay_spool"}                      -> replays the webhook spool (shared/services/replay_spool.py)
    {"action": "health", "check_tokens": bool?, "location_id": str?}
                                                    -> the doctor's report (shared/services/doctor.py): no GHL
                                                       request unless check_tokens
    {"action": "enrich", "location_id": str?, "limit": int?}
                                                    -> fetches due calls' transcripts and recordings
                                                       (shared/services/enrich_calls.py, docs/enrichment.md);
                                                       one location holds its enrich lease (409 location_busy)
    {"action": "enrich", "dispatch": true}          -> fan-out: one Cloud Task per location with calls due
    {"action": "analyze", "location_id": str?, "limit": int?}
                                                    -> analyses due calls with Claude (shared/services/
                                                       analyze_calls.py, docs/analysis.md); one location holds
                                                       its analyze lease (409 location_busy)
    {"action": "analyze", "dispatch": true}         -> fan-out: one Cloud Task per location with calls to analyse
Answer 200: {"batch": {id, status, counters ..., "run": {...}}} or, without batch_id, {"batches": [...]};
for replay_spool {"replay": {configured, listed, replayed, rejected, kept, ..., stopped_by}};
for health {"status": "OK"|"WARN"|"FAIL", "locations": [...], "general": [...], ...} (200 whatever the status);
for enrich {"enrich": {"locations": [{location_id, claimed, done, transcripts, recordings, not_ready, ...}]}};
for analyze {"analyze": {"locations": [{location_id, claimed, done, failed, input_tokens, output_tokens, ...}]}};
for dispatch {"dispatch": {job, queue, slot, locations, created, existing, seconds}} (shared/services/fanout.py).
400 bad body, 401 credentials, 422 no active integration for the location. One JSON summary line per request.
"""

from __future__ import annotations

import time

from shared import bootstrap, errors
from shared.http import function_handler, parse_json_object, read_body, require_scheduler_auth
from shared.logs import get_logger

NAME = "process-ghl-import"
MAX_BODY_BYTES = 16 * 1024
MAX_LIMIT = 1_000_000
log = get_logger("process_ghl_import")


@function_handler(methods=("POST",), name=NAME, summary_message="import request handled", logger=log)
def handle(request, request_id: str, summary: dict):
    deadline_start = time.monotonic()
    settings = bootstrap.get_settings()
    require_scheduler_auth(request, settings, NAME)
    deadline = deadline_start + settings.import_deadline_seconds
    body = parse_json_object(read_body(request, MAX_BODY_BYTES))
    if body.get("action") == "replay_spool":
        return _replay_spool(body, settings, deadline, summary)
    if body.get("action") == "health":
        return _health(body, settings, summary)
    if body.get("action") == "enrich":
        return _location_job(request, body, settings, deadline_start, summary, "enrich", _run_enrich)
    if body.get("action") == "analyze":
        return _location_job(request, body, settings, deadline_start, summary, "analyze", _run_analyze)

    from shared.adapters.import_repository import ImportRepository
    from shared.domain.import_records import PullRequest, parse_import_request
    from shared.services import import_batches

    command = parse_import_request(body)
    repo = ImportRepository(bootstrap.get_database())
    ghl_factory = import_batches.ghl_client_factory(settings)
    if isinstance(command, PullRequest):
        summary.update(action="pull", location_id=command.location_id)
        runs = [import_batches.start_import(repo, ghl_factory, settings, command, deadline=deadline)]
    elif command.batch_id:
        summary["action"] = "process"
        runs = [import_batches.advance_batch(repo, ghl_factory, settings, command.batch_id, deadline=deadline)]
    elif command.dispatch:
        return _dispatch("import", summary)
    elif command.location_id:
        summary.update(action="process", location_id=command.location_id)
        location_deadline = deadline_start + _location_seconds(request, "import", settings)
        runs = _leased("import", command.location_id, settings, lambda: import_batches.process_open_batches(
            repo, ghl_factory, settings, deadline=location_deadline, location_id=command.location_id))
    else:
        summary["action"] = "process"
        runs = import_batches.process_open_batches(repo, ghl_factory, settings, deadline=deadline)
    batches = [run.to_dict() for run in runs]
    summary["batches"] = [{key: b[key] for key in ("id", "status", "processed_records", "error_count")}
                          for b in batches]
    # One batch asked for (a pull, or a batch id): {"batch": ...}; the scheduler's sweep: {"batches": [...]}.
    one = isinstance(command, PullRequest) or command.batch_id
    return ({"batch": batches[0]} if one else {"batches": batches}), 200


def _replay_spool(body: dict, settings, deadline: float, summary: dict):
    summary["action"] = "replay_spool"
    if set(body) != {"action"}:
        raise errors.BadRequest(f"unknown field(s) for action replay_spool: "
                                f"{', '.join(sorted(set(body) - {'action'}))}; it takes none")
    from shared.services.replay_spool import replay_from_settings

    report = replay_from_settings(settings, bootstrap.get_database(), bootstrap.get_spool(), deadline=deadline)
    summary["replay"] = {k: v for k, v in report.to_dict().items() if k != "unreadable"}
    return {"replay": report.to_dict()}, 200


def _health(body: dict, settings, summary: dict):
    summary["action"] = "health"
    unknown = sorted(set(body) - {"action", "check_tokens", "location_id"})
    if unknown:
        raise errors.BadRequest(f"unknown field(s) for action health: {', '.join(unknown)}; "
                                "it takes check_tokens (boolean) and location_id (string)")
    check_tokens = body.get("check_tokens", False)
    location_id = body.get("location_id")
    if not isinstance(check_tokens, bool):
        raise errors.BadRequest("check_tokens must be true or false")
    if "location_id" in body and (not isinstance(location_id, str) or not location_id):
        raise errors.BadRequest("location_id must be a non-empty string")
    from shared.adapters.doctor_repository import DoctorRepository
    from shared.services import doctor

    report = doctor.run_doctor(
        DoctorRepository(bootstrap.get_database()), location_id=location_id, check_ghl=check_tokens,
        ghl_factory=doctor.doctor_ghl_factory(settings), ghl_reserve=settings.ghl_daily_budget_reserve,
        spool=bootstrap.get_spool())
    summary.update(status_of_report=report.status, db_round_trips=report.db_round_trips,
                   ghl_requests=report.ghl_requests)
    return report.to_dict(), 200


def _dispatch(job: str, summary: dict):
    """The scheduler's run with fan-out: one task per location with due work of the job."""
    from shared.services import fanout

    report = fanout.dispatch(job, bootstrap.get_database(), bootstrap.get_settings())
    summary.update(action=f"{job}_dispatch", dispatch=report.to_dict())
    return {"dispatch": report.to_dict()}, 200


def _location_seconds(request, job: str, settings) -> float:
    """A task works to its slot's deadline (shared/services/fanout.py); an operator's call to the job's own."""
    from shared.services import fanout

    spec = fanout.JOBS[job]
    return fanout.task_seconds(spec, settings) if fanout.is_task_request(request) else getattr(
        settings, spec.deadline_setting)


def _leased(job: str, location_id: str, settings, work):
    from shared.services import fanout

    return fanout.run_leased(job, location_id, bootstrap.get_database(), settings, work)


def _run_enrich(settings, location_id: str | None, limit: int | None, deadline: float):
    from shared.services.enrich_calls import run_enrich

    summaries = run_enrich(bootstrap.get_database(), settings, recordings=bootstrap.get_recordings(),
                           location_id=location_id, limit=limit, deadline=deadline)
    return ("location_id", "claimed", "done", "not_ready", "status"), summaries


def _run_analyze(settings, location_id: str | None, limit: int | None, deadline: float):
    from shared.services.analyze_calls import run_analyze

    summaries = run_analyze(bootstrap.get_database(), settings, location_id=location_id, limit=limit,
                            deadline=deadline)
    return ("location_id", "claimed", "done", "failed", "input_tokens", "output_tokens", "status"), summaries


def _location_job(request, body: dict, settings, started: float, summary: dict, job: str, run):
    """enrich and analyze: {"dispatch": true} fans out one task per location with due work; {"location_id"} runs
    that location under its job lease; {} runs every location in this process (an operator's run)."""
    from shared.services import fanout

    summary["action"] = job
    unknown = set(body) - {"action", "location_id", "limit", "dispatch"}
    if unknown:
        raise errors.BadRequest(f"unknown field(s) for action {job}: {', '.join(sorted(unknown))}; "
                                "it takes location_id and limit, or dispatch")
    location_id, limit, dispatch = body.get("location_id"), body.get("limit"), body.get("dispatch", False)
    if not isinstance(dispatch, bool):
        raise errors.BadRequest("dispatch must be true or false")
    if dispatch:
        if location_id is not None or limit is not None:
            raise errors.BadRequest("dispatch takes no other field: each task runs one location")
        return _dispatch(job, summary)
    if location_id is not None and (not isinstance(location_id, str) or not location_id.strip()):
        raise errors.BadRequest("location_id must be a non-empty string")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise errors.BadRequest("limit must be a positive integer")
    if limit is not None and limit > MAX_LIMIT:  # the claim's SQL integer; more than a run can do anyway
        raise errors.BadRequest(f"limit must be at most {MAX_LIMIT}")
    if location_id:  # one location: its runner holds the job's lease
        location_id = location_id.strip()
        deadline = started + _location_seconds(request, job, settings)
        fields, summaries = _leased(job, location_id, settings, lambda: run(settings, location_id, limit, deadline))
    else:
        fields, summaries = run(settings, None, limit, started + getattr(settings, fanout.JOBS[job].deadline_setting))
    locations = [s.to_dict() for s in summaries]
    summary[job] = [{k: s[k] for k in fields} for s in locations]
    return {job: {"locations": locations}}, 200
