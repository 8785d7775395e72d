"""process-ghl-import: pull a GHL location's contacts and calls into a staged batch, match and import them.

Auth: `Authorization: Bearer <SCHEDULER_SECRET>` (or the service-role key). POST bodies:
    {"action": "pull", "location_id": str, "kinds": ["contacts", "calls"], "since": ISO date-time?,
     "created_by": user uuid?}                      -> creates a batch, pulls and processes until the deadline
    {"action": "process", "batch_id": uuid?}        -> advances that batch, or every open batch (pulls included)
    {"action": "replay_spool"}                      -> replays the webhook spool (shared/services/replay_spool.py)
    {"action": "health", "check_tokens": bool?, "location_id": str?}
                                                    -> the doctor's report (shared/services/doctor.py): no GHL
                                                       request unless check_tokens
    {"action": "enrich", "location_id": str?, "limit": int?}
                                                    -> fetches due calls' transcripts and recordings
                                                       (shared/services/enrich_calls.py, docs/enrichment.md)
    {"action": "analyze", "location_id": str?, "limit": int?}
                                                    -> analyses due calls with Claude
                                                       (shared/services/analyze_calls.py, docs/analysis.md)
Answer 200: {"batch": {id, status, counters ..., "run": {...}}} or, without batch_id, {"batches": [...]};
for replay_spool {"replay": {configured, listed, replayed, rejected, kept, ..., stopped_by}};
for health {"status": "OK"|"WARN"|"FAIL", "locations": [...], "general": [...], ...} (200 whatever the status);
for enrich {"enrich": {"locations": [{location_id, claimed, done, transcripts, recordings, not_ready, ...}]}};
for analyze {"analyze": {"locations": [{location_id, claimed, done, failed, input_tokens, output_tokens, ...}]}}.
400 bad body, 401 credentials, 422 no active integration for the location. One JSON summary line per request.
"""

from __future__ import annotations

import time

from shared import bootstrap, errors
from shared.http import function_handler, parse_json_object, read_body, require_scheduler_auth
from shared.logs import get_logger

NAME = "process-ghl-import"
MAX_BODY_BYTES = 16 * 1024
log = get_logger("process_ghl_import")


@function_handler(methods=("POST",), name=NAME, summary_message="import request handled", logger=log)
def handle(request, request_id: str, summary: dict):
    deadline_start = time.monotonic()
    settings = bootstrap.get_settings()
    require_scheduler_auth(request, settings)
    deadline = deadline_start + settings.import_deadline_seconds
    body = parse_json_object(read_body(request, MAX_BODY_BYTES))
    if body.get("action") == "replay_spool":
        return _replay_spool(body, settings, deadline, summary)
    if body.get("action") == "health":
        return _health(body, settings, summary)
    if body.get("action") == "enrich":
        return _enrich(body, settings, deadline_start + settings.enrich_deadline_seconds, summary)
    if body.get("action") == "analyze":
        return _analyze(body, settings, deadline_start + settings.analysis_deadline_seconds, summary)

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
        spool=bootstrap.get_spool(), analysis_prices=doctor.analysis_prices(settings))
    summary.update(status_of_report=report.status, db_round_trips=report.db_round_trips,
                   ghl_requests=report.ghl_requests)
    return report.to_dict(), 200
def _location_and_limit(body: dict, action: str) -> tuple[str | None, int | None]:
    unknown = set(body) - {"action", "location_id", "limit"}
    if unknown:
        raise errors.BadRequest(f"unknown field(s) for action {action}: {', '.join(sorted(unknown))}; "
                                "it takes location_id and limit")
    location_id, limit = body.get("location_id"), body.get("limit")
    if location_id is not None and (not isinstance(location_id, str) or not location_id.strip()):
        raise errors.BadRequest("location_id must be a non-empty string")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise errors.BadRequest("limit must be a positive integer")
    return location_id and location_id.strip(), limit


def _analyze(body: dict, settings, deadline: float, summary: dict):
    summary["action"] = "analyze"
    location_id, limit = _location_and_limit(body, "analyze")
    from shared.services.analyze_calls import run_analyze

    summaries = run_analyze(bootstrap.get_database(), settings, location_id=location_id, limit=limit,
                            deadline=deadline)
    locations = [s.to_dict() for s in summaries]
    summary["analyze"] = [{k: s[k] for k in ("location_id", "claimed", "done", "failed", "input_tokens",
                                             "output_tokens", "status")} for s in locations]
    return {"analyze": {"locations": locations}}, 200


def _enrich(body: dict, settings, deadline: float, summary: dict):
    summary["action"] = "enrich"
    location_id, limit = _location_and_limit(body, "enrich")
    from shared.services.enrich_calls import run_enrich

    summaries = run_enrich(bootstrap.get_database(), settings, recordings=bootstrap.get_recordings(),
                           location_id=location_id, limit=limit, deadline=deadline)
    locations = [s.to_dict() for s in summaries]
    summary["enrich"] = [{k: s[k] for k in ("location_id", "claimed", "done", "not_ready", "status")}
                         for s in locations]
    return {"enrich": {"locations": locations}}, 200
