"""Every `--json` command prints exactly one JSON document on stdout, whatever happens: here with GHL answering 503
to the first requests of the location (the sandbox's fault injection), so the GHL client retries and logs it.
The logs go to stderr (the CLI's logging set-up, ghl_bridge/cli.main), never ahead of the result.

A new --json command: add one line to JSON_COMMANDS."""

from __future__ import annotations

import json
import uuid

import pytest
from psycopg.types.json import Jsonb

from tests.conftest import TEST_WEBHOOK_SECRET, unique

pytestmark = pytest.mark.stack

# (label, argv with {placeholders}, what goes on stdin). {loc}: a location with an integration and a due prospect
# and call; {other}: a sandbox location without an integration; {url}: the webhook; {csv}: a CSV of {other}.
JSON_COMMANDS: list[tuple[str, list[str], str | None]] = [
    ("sync dry run", ["sync", "--location", "{loc}", "--dry-run", "--json"], None),
    ("sync", ["sync", "--location", "{loc}", "--json"], None),
    ("import pull", ["import", "pull", "--location", "{loc}", "--kinds", "contacts", "--json"], None),
    ("import process", ["import", "process", "--json"], None),
    ("import status", ["import", "status", "--json"], None),
    ("import status of a batch that does not exist", ["import", "status", str(uuid.uuid4()), "--json"], None),
    ("replay", ["replay", "--json"], None),
    ("doctor", ["doctor", "--location", "{loc}", "--json"], None),
    ("doctor without GHL", ["doctor", "--location", "{loc}", "--no-ghl", "--json"], None),
    ("enrich", ["enrich", "--location", "{loc}", "--json"], None),
    ("webhook test", ["webhook", "test", "--location", "{loc}", "--url", "{url}", "--json"], None),
    ("location add", ["location", "add", "{loc}", "--json"], "{loc_token}"),
    ("location add, a token of another location", ["location", "add", "{other}", "--json"], "{loc_token}"),
    ("location add without a token", ["location", "add", "{other}", "--json"], ""),
    ("location add --from-csv", ["location", "add", "--from-csv", "{csv}", "--json"], None),
    ("location list", ["location", "list", "--json"], None),
    ("location map", ["location", "map", "{loc}", "--json"], None),
    ("location rotate-token", ["location", "rotate-token", "{loc}", "--json"], "{loc_token}"),
    ("location disable", ["location", "disable", "{loc}", "--json"], None),
    ("location enable", ["location", "enable", "{loc}", "--json"], None),
    ("location enable of an unknown location", ["location", "enable", "{unknown}", "--json"], None),
    ("stack status", ["stack", "status", "--json"], None),
]


@pytest.fixture
def faulty_location(db, ghl_sandbox, cli):
    """A sandbox location with calls and contacts in GHL, its integration, a due prospect and a call waiting for
    its transcript."""
    from shared.domain.calls import CallRecord

    loc = ghl_sandbox.create_location(custom_fields=[{"id": "cf_li", "name": "LinkedIn URL"}])
    ghl_sandbox.seed(loc.id, contacts=5, calls=3)
    assert cli("location", "add", loc.id, stdin=loc.token).returncode == 0
    tag = unique("j")
    db.execute("INSERT INTO sales_prospects (first_name, last_name, email, ghl_location_id) VALUES (%s, %s, %s, %s)",
               ("Json", tag, f"{tag}@example.com", loc.id))
    call = CallRecord.build(external_call_id="msg_" + uuid.uuid4().hex[:16], location_id=loc.id,
                            call_status="completed", duration_seconds=90, direction="outbound", raw={"t": tag})
    db.execute("SELECT ingest_call_event(%s)", (Jsonb(call.to_sql_payload()),))
    return loc


@pytest.mark.parametrize("label,argv,stdin", JSON_COMMANDS, ids=[c[0] for c in JSON_COMMANDS])
def test_each_json_command_prints_one_json_document_under_ghl_faults(label, argv, stdin, cli, faulty_location,
                                                                     ghl_sandbox, stack, home):
    other = ghl_sandbox.create_location()
    csv_file = home / "rows.csv"
    csv_file.write_text(f"id,token\n{other.id},{other.token}\nnot an id,x\n")
    csv_file.chmod(0o600)
    values = {"loc": faulty_location.id, "loc_token": faulty_location.token, "other": other.id,
              "url": stack["functions"]["ghl-call-webhook"], "csv": str(csv_file), "unknown": unique("loc")}
    env = {"GHL_WEBHOOK_SECRET": TEST_WEBHOOK_SECRET, "RECORDINGS_ENABLED": "false",
           "SPOOL_S3_ENDPOINT_URL": stack["s3_endpoint_url"], "SPOOL_S3_BUCKET": "ghl-webhook-spool",
           "SPOOL_S3_PREFIX": f"json-test-{uuid.uuid4().hex[:8]}/", "AWS_ACCESS_KEY_ID": "local",
           "AWS_SECRET_ACCESS_KEY": "local", "GHL_BRIDGE_STATE_DIR": str(home / ".stack")}
    for location in (faulty_location.id, other.id):
        ghl_sandbox.set_faults(location, error_count=2, error_status=503)
    run = cli(*[a.format(**values) for a in argv], stdin=stdin.format(**values) if stdin is not None else None,
              env=env)
    try:
        document = json.loads(run.stdout)
    except ValueError:
        pytest.fail(f"{label}: stdout is not one JSON document (exit {run.returncode}):\n{run.stdout[:2000]}\n"
                    f"stderr:\n{run.stderr[-2000:]}")
    assert isinstance(document, dict)
    if run.returncode not in (0, 1) or "error" in document:
        assert document.get("ok") is False or label == "stack status", document
    assert faulty_location.token not in run.stdout + run.stderr


def test_the_retry_log_lines_go_to_stderr(cli, ghl_sandbox):
    loc = ghl_sandbox.create_location()
    ghl_sandbox.set_faults(loc.id, error_count=2, error_status=503)
    run = cli("location", "add", loc.id, "--json", stdin=loc.token, env={"LOG_LEVEL": "WARNING"})
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["outcome"] == "inserted"
    retries = [line for line in run.stderr.splitlines() if "GHL request failed; retrying" in line]
    assert len(retries) == 2 and all(json.loads(line)["severity"] == "WARNING" for line in retries)
