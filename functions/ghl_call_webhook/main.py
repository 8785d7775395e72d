"""ghl-call-webhook: GHL workflow call hits -> one merged call row each (POST only).

Glue only: authenticate (headers, then signatures over the raw body), hand the body to the ingest service
(one database round trip), answer {"outcome", "call_id", "id"}. One JSON summary line per request.
When the database cannot be reached, the authenticated request is spooled for replay and the answer is 503
with Retry-After (shared/services/replay_spool.py).
"""

from __future__ import annotations

from datetime import datetime, timezone

from shared import bootstrap, errors
from shared.adapters.supabase_db import call_rpc
from shared.http import function_handler, read_body
from shared.logs import get_logger
from shared.services.ingest_call_event import CountingRpc, ingest_webhook_body
from shared.webhook_auth import ReplayGuard, check_freshness, require_webhook_secret, verify_signatures

NAME = "ghl-call-webhook"
log = get_logger("ghl_call_webhook")
_replay_guard = ReplayGuard()


@function_handler(methods=("POST",), name=NAME, summary_message="webhook handled", logger=log)
def handle(request, request_id: str, summary: dict):
    received_at = datetime.now(timezone.utc)
    summary.update(call_id=None, outcome=None, db_round_trips=0)
    settings = bootstrap.get_settings()
    require_webhook_secret(request.headers, settings)
    raw_body = read_body(request, settings.webhook_max_body_bytes)
    signed = bool(verify_signatures(request.headers, raw_body, settings))
    delivery = {}

    def check_delivery(payload: dict) -> None:
        delivery["id"] = check_freshness(request.headers, payload, settings, _replay_guard, signed)

    database = bootstrap.get_database()
    rpc = CountingRpc(lambda function, params: call_rpc(database, function, params), summary)
    try:
        result = ingest_webhook_body(raw_body, rpc=rpc, default_region=settings.phone_default_region,
                                     check_delivery=check_delivery)
    except errors.DatabaseUnavailable as exc:
        from shared.services.replay_spool import keep_for_replay

        unavailable = keep_for_replay(bootstrap.get_spool(), raw_body, received_at=received_at,
                                      request_id=request_id, cause=exc)
        summary["spooled"] = unavailable.details["spooled"]
        raise unavailable from exc
    if delivery.get("id"):
        _replay_guard.remember(delivery["id"])
    summary.update(call_id=result.call_id, outcome=result.outcome, table=result.table)
    return result.response_body(), 200
