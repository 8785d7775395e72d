"""process-ghl-import: pull a GHL location's contacts and calls into a staged batch, match and import them.

Auth: `Authorization: Bearer <SCHEDULER_SECRET>` (or the service-role key). POST bodies:
    {"action": "pull", "location_id": str, "kinds": ["contacts", "calls"], "since": ISO date-time?,
     "created_by": user uuid?}                      -> creates a batch, pulls and processes until the deadline
    {"action": "process", "batch_id": uuid?}        -> advances that batch, or every open batch (pulls included)
    {"action": "replay_spool"}                      -> replays the webhook spool (shared/services/replay_spool.py)
Answer 200: {"batch": {id, status, counters ..., "run": {...}}} or, without batch_id, {"batches": [...]};
for replay_spool {"replay": {configured, listed, replayed, rejected, kept, ..., stopped_by}}.
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


@function_handler(methods=("POST",), name=NAME)
def handle(request, request_id: str):
    started = time.monotonic()
    summary: dict = {"function": NAME, "request_id": request_id}
    try:
        settings = bootstrap.get_settings()
        require_scheduler_auth(request, settings)

        from shared.domain.import_records import PullRequest, parse_import_request

        body = parse_json_object(read_body(request, MAX_BODY_BYTES))
        if body.get("action") == "replay_spool":
            summary["action"] = "replay_spool"
            if set(body) != {"action"}:
                raise errors.BadRequest(f"unknown field(s) for action replay_spool: "
                                        f"{', '.join(sorted(set(body) - {'action'}))}; it takes none")
            from shared.services.replay_spool import replay_from_settings

            report = replay_from_settings(settings, bootstrap.get_database(), bootstrap.get_spool(),
                                          deadline=started + settings.import_deadline_seconds)
            summary.update(status=200, replay={k: v for k, v in report.to_dict().items() if k != "unreadable"})
            return {"replay": report.to_dict()}, 200
        command = parse_import_request(body)
        summary["action"] = "pull" if isinstance(command, PullRequest) else "process"

        from shared.adapters.import_repository import ImportRepository
        from shared.services import import_batches

        repo = ImportRepository(bootstrap.get_database())
        ghl_factory = import_batches.ghl_client_factory(settings)
        deadline = started + settings.import_deadline_seconds
        if isinstance(command, PullRequest):
            summary["location_id"] = command.location_id
            run = import_batches.start_import(repo, ghl_factory, settings, command, deadline=deadline)
            body = {"batch": run.to_dict()}
        elif command.batch_id:
            run = import_batches.advance_batch(repo, ghl_factory, settings, command.batch_id, deadline=deadline)
            body = {"batch": run.to_dict()}
        else:
            runs = import_batches.process_open_batches(repo, ghl_factory, settings, deadline=deadline)
            body = {"batches": [run.to_dict() for run in runs]}
        batches = [body["batch"]] if "batch" in body else body["batches"]
        summary.update(status=200, batches=[{"id": b["id"], "status": b["status"],
                                             "processed_records": b["processed_records"],
                                             "error_count": b["error_count"]} for b in batches])
        return body, 200
    except errors.BridgeError as exc:
        summary.update(status=errors.http_status(exc), error=exc.code)
        raise
    except Exception:
        summary.update(status=500, error="internal_error")
        raise
    finally:
        summary["seconds"] = round(time.monotonic() - started, 3)
        log.info("import request handled", extra={"fields": summary})
