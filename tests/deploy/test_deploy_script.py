"""deploy.sh against stub `gcloud`/`supabase`/`psql` executables that only record their arguments (no real cloud).

The stubs log every call (argv, and the content of any --flags-file) as JSON lines; the script runs with a
PATH of the stubs plus a few real tools, so a missing tool is really missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest

from ghl_bridge.paths import MIGRATIONS_DIR, PROJECT_ROOT

DEPLOY_SH = PROJECT_ROOT / "deploy.sh"
FUNCTIONS = {"ghl-call-webhook": "60s", "sync-prospects-to-ghl": "540s", "process-ghl-import": "540s"}
TOOLS = ["bash", "env", "sed", "sort", "find", "xargs", "sha256sum", "cut", "paste", "mktemp", "rm", "cat",
         "grep", "basename", "dirname"]
SERVICE_KEY = "svc-key-" + uuid.uuid4().hex
WEBHOOK_SECRET = "wh-secret-" + uuid.uuid4().hex
SCHEDULER_SECRET = 'sched,"secret"-' + uuid.uuid4().hex  # a comma and quotes: must survive the flags file
SM_SCHEDULER_SECRET = "sm-sched-" + uuid.uuid4().hex
DB_PASSWORD = "pw-" + uuid.uuid4().hex

STUB = f"""#!{sys.executable}
import json, os, sys
args = sys.argv[1:]
record = {{"tool": os.path.basename(sys.argv[0]), "args": args}}
for arg in args:
    if arg.startswith("--flags-file="):
        record["flags_file"] = json.load(open(arg.split("=", 1)[1]))
with open(os.environ["STUB_LOG"], "a") as log:
    log.write(json.dumps(record) + "\\n")
line = " ".join(args)
if line.startswith("functions describe"):
    label = os.environ.get("STUB_FUNCTION_LABEL")
    if not label:
        sys.exit(1)
    print(label)
elif line.startswith("scheduler jobs describe"):
    sys.exit(0 if os.environ.get("STUB_JOB_EXISTS") else 1)
elif line.startswith("secrets versions access"):
    print(os.environ["STUB_SM_SCHEDULER_SECRET"], end="")
"""


@pytest.fixture
def bin_dirs(tmp_path) -> tuple[Path, Path]:
    """(stubs, real tools): folders for PATH."""
    stubs, tools = tmp_path / "stubs", tmp_path / "tools"
    stubs.mkdir()
    tools.mkdir()
    for name in ("gcloud", "supabase", "psql"):
        (stubs / name).write_text(STUB)
        (stubs / name).chmod(0o755)
    for name in TOOLS:
        (tools / name).symlink_to(shutil.which(name))
    return stubs, tools


def _run(tmp_path, bin_dirs, *args, env: dict | None = None, stubs: bool = True, extra_path: str = ""):
    stubs_dir, tools_dir = bin_dirs
    path = ":".join(filter(None, [str(stubs_dir) if stubs else "", str(tools_dir), extra_path]))
    base = {
        "PATH": path, "HOME": str(tmp_path), "TMPDIR": str(tmp_path), "PYTHON": sys.executable,
        "STUB_LOG": str(tmp_path / "calls.jsonl"), "BUILD_DIR": str(tmp_path / "build"),
        "STUB_SM_SCHEDULER_SECRET": SM_SCHEDULER_SECRET,
        "GCP_PROJECT": "demo-project", "GCP_REGION": "europe-west1", "SUPABASE_URL": "https://abcd.supabase.co",
        "DATABASE_URL": f"postgresql://postgres:{DB_PASSWORD}@db.abcd.supabase.co:5432/postgres",
    }
    base.update(env or {})
    base = {k: v for k, v in base.items() if v is not None}
    return subprocess.run(["bash", str(DEPLOY_SH), *args], capture_output=True, text=True, env=base,
                          cwd=tmp_path, timeout=120)


def _calls(tmp_path) -> list[dict]:
    log = tmp_path / "calls.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


ENV_SECRETS = {"SECRETS_SOURCE": "env", "SUPABASE_SERVICE_ROLE_KEY": SERVICE_KEY,
               "GHL_WEBHOOK_SECRET": WEBHOOK_SECRET, "SCHEDULER_SECRET": SCHEDULER_SECRET}
ALL_SECRETS = (SERVICE_KEY, WEBHOOK_SECRET, SCHEDULER_SECRET, SM_SCHEDULER_SECRET, DB_PASSWORD)


def _commands(stdout: str, prefix: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith(prefix)]


def test_dry_run_prints_every_deploy_and_scheduler_command_and_runs_none(tmp_path, bin_dirs):
    result = _run(tmp_path, bin_dirs, "--dry-run", env=ENV_SECRETS)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert all(line.startswith("+ ") for line in out.splitlines()), out
    deploys = _commands(out, "+ gcloud functions deploy ")
    assert [line.split()[4] for line in deploys] == list(FUNCTIONS)
    for line, (name, timeout) in zip(deploys, FUNCTIONS.items()):
        for flag in ("--gen2", "--runtime=python311", "--trigger-http", "--entry-point=handle",
                     "--allow-unauthenticated", "--region=europe-west1", "--project=demo-project",
                     f"--source={tmp_path}/build/{name}", f"--timeout={timeout}", "--update-labels=ghl_bridge_config="):
            assert flag in line, (flag, line)
        assert "SUPABASE_URL=https://abcd.supabase.co" in line and "SUPABASE_SERVICE_ROLE_KEY=***" in line
        assert ("GHL_WEBHOOK_SECRET=***" in line) == (name == "ghl-call-webhook")
        assert ("SCHEDULER_SECRET=***" in line) == (name != "ghl-call-webhook")
        assert (tmp_path / "build" / name / "main.py").is_file()  # the local build step did run
    jobs = _commands(out, "+ gcloud scheduler jobs create http ")
    assert len(jobs) == 3
    sync, process, replay = jobs
    assert sync.split()[6] == "sync-prospects-to-ghl" and '"--schedule=*/5 * * * *"' in sync
    assert "--uri=https://europe-west1-demo-project.cloudfunctions.net/sync-prospects-to-ghl" in sync
    assert process.split()[6] == "process-ghl-import" and '"--schedule=* * * * *"' in process
    assert """'--message-body={"action":"process"}'""" in process
    assert replay.split()[6] == "replay-webhook-spool" and """'--message-body={"action":"replay_spool"}'""" in replay
    assert "--uri=https://europe-west1-demo-project.cloudfunctions.net/process-ghl-import" in replay
    for job in jobs:
        assert "--http-method=POST" in job and "Authorization=Bearer ***" in job and "--location=europe-west1" in job
    assert len(_commands(out, "+ psql ***")) == len(list(MIGRATIONS_DIR.glob("*.sql"))) + 2
    assert "dry run" in result.stderr and "build" in result.stderr
    assert _calls(tmp_path) == []  # no gcloud, supabase or psql was run
    for secret in ALL_SECRETS:
        assert secret not in out and secret not in result.stderr
    assert not list(tmp_path.glob("ghl-bridge-deploy.*"))  # the private flags folder is gone


def test_dry_run_with_secret_manager_references_secret_names(tmp_path, bin_dirs):
    result = _run(tmp_path, bin_dirs, "--dry-run", "--skip-migrations",
                  env={"SECRET_NAME_SERVICE_ROLE_KEY": "prod-srk", "SYNC_SCHEDULE": "*/15 * * * *"})
    assert result.returncode == 0, result.stderr
    webhook, sync, _ = _commands(result.stdout, "+ gcloud functions deploy ")
    assert ("--set-secrets=SUPABASE_SERVICE_ROLE_KEY=prod-srk:latest,"
            "GHL_WEBHOOK_SECRET=ghl-bridge-ghl-webhook-secret:latest") in webhook
    assert "SCHEDULER_SECRET=ghl-bridge-scheduler-secret:latest" in sync
    assert "+ gcloud secrets versions access latest --secret=ghl-bridge-scheduler-secret" in result.stdout
    assert '"--schedule=*/15 * * * *"' in result.stdout
    assert "psql" not in result.stdout and _calls(tmp_path) == []


def test_a_configured_spool_gives_its_s3_credentials_to_the_functions_that_use_it(tmp_path, bin_dirs):
    spool = {"SPOOL_S3_BUCKET": "ghl-spool", "SPOOL_S3_ENDPOINT_URL": "https://abcd.supabase.co/storage/v1/s3"}
    result = _run(tmp_path, bin_dirs, "--dry-run", "--skip-migrations", env=spool)
    assert result.returncode == 0, result.stderr
    webhook, sync, process = _commands(result.stdout, "+ gcloud functions deploy ")
    for line in (webhook, process):  # the webhook writes the spool, the import function replays it
        assert "AWS_ACCESS_KEY_ID=ghl-bridge-spool-access-key-id:latest" in line
        assert "AWS_SECRET_ACCESS_KEY=ghl-bridge-spool-secret-access-key:latest" in line
        assert "SPOOL_S3_BUCKET=ghl-spool" in line
    assert "AWS_ACCESS_KEY_ID" not in sync
    key_secret = "spool-secret-" + uuid.uuid4().hex
    missing = _run(tmp_path, bin_dirs, "--dry-run", "--skip-migrations",
                   env={**spool, **ENV_SECRETS, "AWS_ACCESS_KEY_ID": "AKIA-TEST"})
    assert missing.returncode == 2 and "AWS_SECRET_ACCESS_KEY" in missing.stdout + missing.stderr
    masked = _run(tmp_path, bin_dirs, "--dry-run", "--skip-migrations",
                  env={**spool, **ENV_SECRETS, "AWS_ACCESS_KEY_ID": "AKIA-TEST", "AWS_SECRET_ACCESS_KEY": key_secret})
    assert masked.returncode == 0, masked.stderr
    assert key_secret not in masked.stdout + masked.stderr and "AWS_SECRET_ACCESS_KEY=***" in masked.stdout


@pytest.mark.parametrize("unset, message", [
    (["GCP_PROJECT"], "missing variable(s): GCP_PROJECT"),
    (["GCP_REGION", "SUPABASE_URL"], "missing variable(s): GCP_REGION SUPABASE_URL"),
    (["SCHEDULER_SECRET"], "missing variable(s): SCHEDULER_SECRET"),
    (["DATABASE_URL"], "migrations need the supabase CLI with a linked project"),
])
def test_a_missing_variable_is_named_with_exit_2(tmp_path, bin_dirs, unset, message):
    result = _run(tmp_path, bin_dirs, "--dry-run", env={**ENV_SECRETS, **{name: None for name in unset}})
    assert result.returncode == 2
    assert f"deploy.sh: {message}" in result.stderr
    assert result.stdout == "" and _calls(tmp_path) == []


def test_a_missing_tool_is_named_with_exit_2(tmp_path, bin_dirs):
    result = _run(tmp_path, bin_dirs, "--dry-run", env=ENV_SECRETS, stubs=False)
    assert result.returncode == 2
    assert "missing tool(s): gcloud (Google Cloud SDK" in result.stderr
    assert "psql (PostgreSQL client" in result.stderr
    assert result.stdout == ""


def test_secrets_are_refused_as_arguments(tmp_path, bin_dirs):
    result = _run(tmp_path, bin_dirs, f"--scheduler-secret={SCHEDULER_SECRET}", env=ENV_SECRETS)
    assert result.returncode == 2 and "secrets are never arguments" in result.stderr


def test_deploy_passes_secrets_only_through_private_flags_files_and_is_idempotent(tmp_path, bin_dirs):
    first = _run(tmp_path, bin_dirs, "--skip-migrations", env=ENV_SECRETS)
    assert first.returncode == 0, first.stderr
    calls = _calls(tmp_path)
    for call in calls:  # no secret on any command line
        assert not any(secret in arg for arg in call["args"] for secret in ALL_SECRETS), call
    deploys = [c for c in calls if c["args"][:2] == ["functions", "deploy"]]
    assert [c["args"][2] for c in deploys] == list(FUNCTIONS)
    webhook_env = deploys[0]["flags_file"]["--set-env-vars"]
    assert webhook_env == {"SUPABASE_URL": "https://abcd.supabase.co", "SUPABASE_SERVICE_ROLE_KEY": SERVICE_KEY,
                           "GHL_WEBHOOK_SECRET": WEBHOOK_SECRET, "THREADS": "16"}
    assert deploys[1]["flags_file"]["--set-env-vars"]["SCHEDULER_SECRET"] == SCHEDULER_SECRET
    creates = [c for c in calls if c["args"][:4] == ["scheduler", "jobs", "create", "http"]]
    assert [c["args"][4] for c in creates] == ["sync-prospects-to-ghl", "process-ghl-import", "replay-webhook-spool"]
    for create in creates:
        assert create["flags_file"] == {"--headers": {"Authorization": f"Bearer {SCHEDULER_SECRET}",
                                                      "Content-Type": "application/json"}}
    for secret in ALL_SECRETS:
        assert secret not in first.stdout and secret not in first.stderr
    assert not list(tmp_path.glob("ghl-bridge-deploy.*"))

    # Second run: every function already carries its configuration label; the jobs exist.
    label = next(a for a in deploys[0]["args"] if a.startswith("--update-labels=")).split("=", 2)[2]
    (tmp_path / "calls.jsonl").unlink()
    second = _run(tmp_path, bin_dirs, "--skip-migrations",
                  env={**ENV_SECRETS, "STUB_FUNCTION_LABEL": label, "STUB_JOB_EXISTS": "1"})
    assert second.returncode == 0, second.stderr
    calls = _calls(tmp_path)
    deployed = [c["args"][2] for c in calls if c["args"][:2] == ["functions", "deploy"]]
    assert deployed == ["sync-prospects-to-ghl", "process-ghl-import"]  # their labels differ from the webhook's
    assert "ghl-call-webhook: unchanged" in second.stderr
    updates = [c for c in calls if c["args"][:4] == ["scheduler", "jobs", "update", "http"]]
    assert [c["args"][4] for c in updates] == ["sync-prospects-to-ghl", "process-ghl-import", "replay-webhook-spool"]
    assert updates[0]["flags_file"]["--update-headers"]["Authorization"] == f"Bearer {SCHEDULER_SECRET}"
    assert not [c for c in calls if c["args"][:3] == ["scheduler", "jobs", "create"]]


def test_secret_manager_scheduler_secret_is_read_not_printed(tmp_path, bin_dirs):
    result = _run(tmp_path, bin_dirs, "--skip-migrations", "--skip-functions")
    assert result.returncode == 0, result.stderr
    creates = [c for c in _calls(tmp_path) if c["args"][:4] == ["scheduler", "jobs", "create", "http"]]
    assert creates[0]["flags_file"]["--headers"]["Authorization"] == f"Bearer {SM_SCHEDULER_SECRET}"
    assert SM_SCHEDULER_SECRET not in result.stdout + result.stderr


def test_linked_supabase_project_uses_db_push(tmp_path, bin_dirs, monkeypatch):
    ref_file = PROJECT_ROOT / "supabase" / ".temp" / "project-ref"
    if ref_file.exists():
        pytest.skip("this checkout is linked to a real Supabase project")
    ref_file.parent.mkdir(exist_ok=True)
    ref_file.write_text("abcd")
    try:
        result = _run(tmp_path, bin_dirs, "--skip-functions", "--skip-scheduler", env={"DATABASE_URL": None})
    finally:
        ref_file.unlink()
        if not any(ref_file.parent.iterdir()):
            ref_file.parent.rmdir()
    assert result.returncode == 0, result.stderr
    assert [c["args"][:3] for c in _calls(tmp_path)] == [["db", "push", "--linked"]]


@pytest.mark.stack
def test_psql_migrations_apply_each_file_once_and_record_it(tmp_path, bin_dirs, stack):
    from ghl_bridge.stack import database

    server = database.with_database(stack["database_url"], "postgres")
    name = f"t_deploy_{uuid.uuid4().hex[:8]}"
    url = database.create_database(server, name)
    try:
        database.apply_bootstrap(url)  # what hosted Supabase already has (roles, auth schema)
        (bin_dirs[0] / "psql").unlink()  # the real psql this time
        psql_dir = str(Path(shutil.which("psql")).parent)
        env = {"DATABASE_URL": url}
        first = _run(tmp_path, bin_dirs, "--skip-functions", "--skip-scheduler", env=env, extra_path=psql_dir)
        assert first.returncode == 0, first.stderr
        files = sorted(MIGRATIONS_DIR.glob("*.sql"))
        assert f"applied {len(files)} migration(s)" in first.stderr
        with psycopg.connect(url) as conn:
            recorded = conn.execute("SELECT version, name FROM supabase_migrations.schema_migrations "
                                    "ORDER BY version").fetchall()
            assert conn.execute("SELECT to_regclass('public.ghl_integrations')").fetchone()[0] is not None
        assert recorded == [tuple(path.stem.split("_", 1)) for path in files]
        second = _run(tmp_path, bin_dirs, "--skip-functions", "--skip-scheduler", env=env, extra_path=psql_dir)
        assert second.returncode == 0 and "applied 0 migration(s)" in second.stderr
    finally:
        database.drop_database(server, name)


def test_the_webhook_gets_its_concurrency_cpu_min_instances_and_matching_threads(tmp_path, bin_dirs):
    """Cloud Functions 2nd gen: the webhook serves WEBHOOK_CONCURRENCY requests per instance with as many
    gunicorn threads (THREADS), on WEBHOOK_CPU vCPUs, WEBHOOK_MIN_INSTANCES kept warm (default 0)."""
    from ghl_bridge.stack.stack import WEBHOOK_CONCURRENCY_DEFAULT

    result = _run(tmp_path, bin_dirs, "--dry-run", "--skip-migrations")
    assert result.returncode == 0, result.stderr
    webhook, *others = _commands(result.stdout, "+ gcloud functions deploy ")
    concurrency = WEBHOOK_CONCURRENCY_DEFAULT  # the local stack serves the webhook with the same threads
    for flag in (f"--concurrency={concurrency}", "--cpu=1", "--min-instances=0", f"THREADS={concurrency}"):
        assert flag in webhook, (flag, webhook)
    for line in others:  # the scheduler-facing functions keep the platform's defaults (one request at a time)
        assert "--concurrency" not in line and "--min-instances" not in line and "THREADS=" not in line

    tuned = _run(tmp_path, bin_dirs, "--dry-run", "--skip-migrations",
                 env={"WEBHOOK_CONCURRENCY": "40", "WEBHOOK_CPU": "2", "WEBHOOK_MIN_INSTANCES": "1"})
    assert tuned.returncode == 0, tuned.stderr
    webhook = _commands(tuned.stdout, "+ gcloud functions deploy ")[0]
    for flag in ("--concurrency=40", "--cpu=2", "--min-instances=1", "THREADS=40"):
        assert flag in webhook, (flag, webhook)

    for wrong in ({"WEBHOOK_CONCURRENCY": "many"}, {"WEBHOOK_CONCURRENCY": "8", "WEBHOOK_CPU": "0.5"},
                  {"WEBHOOK_MIN_INSTANCES": "-1"}, {"WEBHOOK_CONCURRENCY": "1001"}):
        refused = _run(tmp_path, bin_dirs, "--dry-run", "--skip-migrations", env=wrong)
        assert refused.returncode == 2 and "WEBHOOK_CONCURRENCY" in refused.stderr, (wrong, refused.stderr)
