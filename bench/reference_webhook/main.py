"""The floor ghl-call-webhook is measured against (bench/bench_webhook.py); never deployed.

The smallest function under the same functions-framework and server settings: read the body, json.loads it,
make the same `ingest_call_event` rpc through the same supabase client (shared.adapters.supabase_db), answer.
No authentication, no logging, no validation: the payload is built by the plainest code that gives the SQL
function the same work (a phone number in E.164, so the prospect match runs as it does for the webhook).
"""

import json
import os

from shared.adapters.supabase_db import create_service_client

client = create_service_client(os.environ["SUPABASE_URL"], os.environ["SUPABASE_SERVICE_ROLE_KEY"])


def handle(request):
    body = json.loads(request.get_data())
    fields = {**body, **(body.get("customData") or {})}
    to = fields.get("to")
    call = {
        "external_call_id": fields.get("callId") or fields.get("call_id"),
        "location_id": fields.get("locationId") or (fields.get("location") or {}).get("id"),
        "ghl_contact_id": fields.get("contactId"),
        "direction": fields.get("direction"),
        "from_number": fields.get("from"),
        "to_number": to if not to or to.startswith("+") else "+1" + "".join(c for c in to if c.isdigit()),
        "call_status": fields.get("callStatus"),
        "duration_seconds": fields.get("duration"),
        "started_at": fields.get("callStartTime"),
        "disposition": fields.get("disposition"),
        "disposition_source": "chosen" if fields.get("disposition") else None,
        "notes": fields.get("notes"),
        "transcript": fields.get("transcription"),
        "raw": body,
    }
    result = client.rpc("ingest_call_event", {"p_call": {k: v for k, v in call.items() if v is not None}}).execute().data
    return {"outcome": result["outcome"], "id": result.get("id")}
