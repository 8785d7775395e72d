"""sync-prospects-to-ghl: push due prospects to GHL contacts (POST, called by a scheduler or an operator).

Auth: `Authorization: Bearer <SCHEDULER_SECRET>` (or the service-role key), or deployed private the OIDC token
of the invoker account (shared/http.py). Body, every key optional:
    {"location_id": str, "campaign": str, "limit": int >= 1 (per location), "dry_run": bool}
                   -> every location (or the one asked for) in this process
    {"dispatch": true}
                   -> fan-out (shared/services/fanout.py): one Cloud Task per location with due prospects, each
                      a POST here of {"location_id": ...}; answer {"dispatch": {job, queue, slot, locations,
                      created, existing, seconds}}
A run of one location holds the location's sync lease (409 location_busy while another run holds it).
Answer 200: {"locations": [{"location_id", "due", "pushed", "created", "updated", "failed", "skipped",
"seconds", "status", "error", ...}], "dry_run": bool}. One JSON summary line per request.
"""

from __future__ import annotations

import time

from shared import bootstrap, errors
from shared.http import function_handler, parse_json_object, read_body, require_scheduler_auth
from shared.logs import get_logger

NAME = "sync-prospects-to-ghl"
MAX_BODY_BYTES = 16 * 1024
log = get_logger("sync_prospects_to_ghl")

_FIELDS = {"location_id": "a non-empty string", "campaign": "a non-empty string",
           "limit": "an integer of at least 1", "dry_run": "true or false", "dispatch": "true or false"}


def parse_sync_request(raw: bytes) -> dict:
    """The validated options; an empty body means all defaults."""
    body = parse_json_object(raw) if raw.strip() else {}
    unknown = sorted(set(body) - set(_FIELDS))
    if unknown:
        raise errors.BadRequest(f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(_FIELDS)}")
    options = {"location_id": None, "campaign": None, "limit": None, "dry_run": False, "dispatch": False}
    for key, value in body.items():
        if value is None:
            continue
        if key in ("location_id", "campaign"):
            valid = isinstance(value, str) and value.strip() != ""
            value = value.strip() if valid else value
        elif key == "limit":
            valid = isinstance(value, int) and not isinstance(value, bool) and value >= 1
        else:
            valid = isinstance(value, bool)
        if not valid:
            raise errors.BadRequest(f"{key} must be {_FIELDS[key]}, not {value!r}"[:300])
        options[key] = value
    if options["dispatch"] and any(options[key] not in (None, False) for key in _FIELDS if key != "dispatch"):
        raise errors.BadRequest("dispatch takes no other field: each task runs one location with the defaults")
    return options


@function_handler(methods=("POST",), name=NAME, summary_message="sync run handled", logger=log)
def handle(request, request_id: str, summary: dict):
    started = time.monotonic()
    settings = bootstrap.get_settings()
    require_scheduler_auth(request, settings, NAME)
    options = parse_sync_request(read_body(request, MAX_BODY_BYTES))
    dispatch = options.pop("dispatch")
    summary.update(options)
    if dispatch:
        from shared.services import fanout

        report = fanout.dispatch("sync", bootstrap.get_database(), settings)
        summary["dispatch"] = report.to_dict()
        return {"dispatch": report.to_dict()}, 200

    from shared.services.sync_prospects import run_sync

    def sync(deadline: float):
        return run_sync(bootstrap.get_database(), settings, **options, deadline=deadline)

    location_id = options["location_id"]
    if location_id and not options["dry_run"]:  # one location: its runner holds the sync lease
        from shared.services import fanout

        seconds = (fanout.task_seconds(fanout.JOBS["sync"], settings) if fanout.is_task_request(request)
                   else settings.sync_deadline_seconds)
        summary["task"] = fanout.task_name_of(request)
        locations = fanout.run_leased("sync", location_id, bootstrap.get_database(), settings,
                                      lambda: sync(started + seconds))
    else:
        locations = sync(started + settings.sync_deadline_seconds)
    summary.update(locations=len(locations), pushed=sum(s.pushed for s in locations),
                   failed=sum(s.failed for s in locations))
    return {"locations": [location.to_dict() for location in locations], "dry_run": options["dry_run"]}, 200
