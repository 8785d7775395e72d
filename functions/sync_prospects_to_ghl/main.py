"""sync-prospects-to-ghl: push due prospects to GHL contacts (POST, called by a scheduler or an operator).

Auth: `Authorization: Bearer <SCHEDULER_SECRET>` (or the service-role key). Body, every key optional:
    {"location_id": str, "campaign": str, "limit": int >= 1 (per location), "dry_run": bool}
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
           "limit": "an integer of at least 1", "dry_run": "true or false"}


def parse_sync_request(raw: bytes) -> dict:
    """The validated options; an empty body means all defaults."""
    body = parse_json_object(raw) if raw.strip() else {}
    unknown = sorted(set(body) - set(_FIELDS))
    if unknown:
        raise errors.BadRequest(f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(_FIELDS)}")
    options = {"location_id": None, "campaign": None, "limit": None, "dry_run": False}
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
    return options


@function_handler(methods=("POST",), name=NAME, summary_message="sync run handled", logger=log)
def handle(request, request_id: str, summary: dict):
    started = time.monotonic()
    settings = bootstrap.get_settings()
    require_scheduler_auth(request, settings)
    options = parse_sync_request(read_body(request, MAX_BODY_BYTES))
    summary.update(options)

    from shared.services.sync_prospects import run_sync

    locations = run_sync(bootstrap.get_database(), settings, **options,
                         deadline=started + settings.sync_deadline_seconds)
    summary.update(locations=len(locations), pushed=sum(s.pushed for s in locations),
                   failed=sum(s.failed for s in locations))
    return {"locations": [location.to_dict() for location in locations], "dry_run": options["dry_run"]}, 200
