"""The webhook's cold path stays lean: what a workflow hit never uses is never imported (checked in a fresh
interpreter: the function imported by functions-framework, then one real hit answered 200 through the stack).

Moved off the hot path (issue 14): the parts of supabase-py beyond its PostgREST client (the client
is `postgrest.SyncPostgrestClient`), pydantic-settings (shared/config.py reads the environment itself),
signature libraries (only a delivery with a signature header and a configured key loads `cryptography`);
and, as before, boto3 and the spool replay (only a request that spools). The Anthropic SDK and the call
analysis (issue 21) are never imported by a workflow hit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import TEST_WEBHOOK_SECRET, unique
from tests.webhook.conftest import FUNCTION_SOURCE, load_fixture, with_ids

pytestmark = pytest.mark.stack

NEVER_ON_THE_HOT_PATH = ("supabase", "supabase_auth", "realtime", "storage3", "supabase_functions", "gotrue", "jwt",
                         "websockets", "pydantic_settings", "dotenv", "cryptography", "boto3", "botocore",
                         "shared.services.replay_spool", "shared.adapters.object_spool",
                         # call analysis runs out of band (docs/analysis.md): never on a workflow hit
                         "anthropic", "shared.adapters.anthropic_client", "shared.services.analyze_calls",
                         "shared.domain.call_analysis")


def test_a_workflow_hit_imports_none_of_the_modules_moved_off_the_hot_path(stack, make_integration):
    location, _ = make_integration("internal")
    body = with_ids(load_fixture("call-completed.json"), unique("call"), location)
    script = f"""
import json, sys
from functions_framework import create_app
client = create_app(target="handle", source={str(FUNCTION_SOURCE)!r}).test_client()
answer = client.post("/", data={json.dumps(body)!r}, headers={{"X-Webhook-Secret": {TEST_WEBHOOK_SECRET!r},
                                                              "Content-Type": "application/json"}})
loaded = [name for name in {NEVER_ON_THE_HOT_PATH!r} if name in sys.modules]
print(json.dumps({{"status": answer.status_code, "loaded": loaded, "postgrest": "postgrest" in sys.modules}}))
"""
    env = {**os.environ, "SUPABASE_URL": stack["supabase_url"], "SUPABASE_SERVICE_ROLE_KEY": stack["service_role_key"],
           "GHL_WEBHOOK_SECRET": TEST_WEBHOOK_SECRET, "PYTHONPATH": str(FUNCTION_SOURCE.parents[2]),
           # a spool configured and a signature key too: neither may cost a workflow hit an import
           "SPOOL_S3_BUCKET": "ghl-webhook-spool", "SPOOL_S3_ENDPOINT_URL": stack.get("s3_endpoint_url") or "http://x",
           "GHL_WEBHOOK_ED25519_PUBLIC_KEY": "-----BEGIN PUBLIC KEY-----\\nnot checked: no signature header\\n"
                                             "-----END PUBLIC KEY-----"}
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result == {"status": 200, "loaded": [], "postgrest": True}
