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
ANTHROPIC_KEY = "sk-ant-" + uuid.uuid4().hex

STUB = f"""#!{sys.executable}
import json, os, sys
args = sys.argv[1:]
record = {{"tool": os.path.basename(sys.argv[0]), "args": args,
          "env": {{k: os.environ[k] for k in ("PGPASSFILE", "PGPASSWORD") if k in os.environ}}}}
for arg in args:
    if arg.startswith("--flags-file="):
        record["flags_file"] = json.load(open(arg.split("=", 1)[1]))
if os.path.isfile(os.environ.get("PGPASSFILE", "")):
    record["pgpass"] = open(os.environ["PGPASSFILE"]).read()
    record["pgpass_mode"] = oct(os.stat(os.environ["PGPASSFILE"]).st_mode & 0o777)
with open(os.environ["STUB_LOG"], "a") as log:
    log.write(json.dumps(record) + "\\n")
line = " ".join(args)
option = lambda name: next((a.split("=", 1)[1] for a in args if a.startswith(name + "=")), None)
if line.startswith("projects describe"):
    print("123456789012")
elif line.startswith("projects get-iam-policy"):
    print(os.environ.get("STUB_PROJECT_POLICY", ""))
elif line.startswith("iam service-accounts describe"):
    sys.exit(1 if args[3] in os.environ.get("STUB_MISSING_ACCOUNTS", "").split() else 0)
elif line.startswith("secrets versions describe"):
    if option("--secret") in os.environ.get("STUB_MISSING_SECRETS", "").split():
        sys.exit(1)
    print("ENABLED")
elif line.startswith("secrets get-iam-policy"):
    if args[2] not in os.environ.get("STUB_UNREADABLE_SECRETS", "").split():
        account = os.environ.get("FUNCTION_SERVICE_ACCOUNT") or "123456789012-compute@developer.gserviceaccount.com"
        print("roles/secretmanager.secretAccessor\\tserviceAccount:" + account)
elif "SELECT 1" in args:
    sys.exit(1 if os.environ.get("STUB_DB_DOWN") else 0)
elif line.startswith("functions describe"):
    label = os.environ.get("STUB_FUNCTION_LABEL")
    if not label:
        sys.exit(1)
    print(label)
elif line.startswith("scheduler jobs describe"):
    sys.exit(0 if os.environ.get("STUB_JOB_EXISTS") else 1)
elif line.startswith("secrets versions access"):
    print(os.environ["STUB_SM_SCHEDULER_SECRET"], end="")
elif line.startswith("services list"):
    disabled = os.environ.get("STUB_DISABLED_APIS", "").split()
    for api in ("cloudtasks.googleapis.com", "cloudscheduler.googleapis.com"):
        if api not in disabled:
            print(api)
elif line.startswith("tasks queues describe"):
    sys.exit(0 if os.environ.get("STUB_QUEUES_EXIST") else 1)
elif line.startswith("run services get-iam-policy"):
    print(os.environ.get("STUB_RUN_POLICY", ""))
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
               "GHL_WEBHOOK_SECRET": WEBHOOK_SECRET, "SCHEDULER_SECRET": SCHEDULER_SECRET,
               "ANTHROPIC_API_KEY": ANTHROPIC_KEY}
ALL_SECRETS = (SERVICE_KEY, WEBHOOK_SECRET, SCHEDULER_SECRET, SM_SCHEDULER_SECRET, DB_PASSWORD, ANTHROPIC_KEY)


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
        public = "--allow-unauthenticated" if name == "ghl-call-webhook" else "--no-allow-unauthenticated"
        for flag in ("--gen2", "--runtime=python311", "--trigger-http", "--entry-point=handle",
                     public, "--region=europe-west1", "--project=demo-project",
                     f"--source={tmp_path}/build/{name}", f"--timeout={timeout}", "--update-labels=ghl_bridge_config="):
            assert flag in line, (flag, line)
        assert "SUPABASE_URL=https://abcd.supabase.co" in line and "SUPABASE_SERVICE_ROLE_KEY=***" in line
        assert ("GHL_WEBHOOK_SECRET=***" in line) == (name == "ghl-call-webhook")
        assert ("SCHEDULER_SECRET=***" in line) == (name != "ghl-call-webhook")
        assert ("ANTHROPIC_API_KEY=***" in line) == (name == "process-ghl-import")
        assert (tmp_path / "build" / name / "main.py").is_file()  # the local build step did run
    jobs = _commands(out, "+ gcloud scheduler jobs create http ")
    assert len(jobs) == 5
    sync, process, replay, enrich, analyze = jobs
    assert analyze.split()[6] == "analyze-calls"
    assert """'--message-body={"action":"analyze","dispatch":true}'""" in analyze
    assert '"--schedule=*/5 * * * *"' in analyze and "process-ghl-import" in analyze
    assert sync.split()[6] == "sync-prospects-to-ghl" and '"--schedule=*/5 * * * *"' in sync
    assert """'--message-body={"dispatch":true}'""" in sync
    assert "--uri=https://europe-west1-demo-project.cloudfunctions.net/sync-prospects-to-ghl" in sync
    assert process.split()[6] == "process-ghl-import" and '"--schedule=* * * * *"' in process
    assert """'--message-body={"action":"process","dispatch":true}'""" in process
    assert replay.split()[6] == "replay-webhook-spool" and """'--message-body={"action":"replay_spool"}'""" in replay
    assert "--uri=https://europe-west1-demo-project.cloudfunctions.net/process-ghl-import" in replay
    assert enrich.split()[6] == "enrich-calls" and """'--message-body={"action":"enrich","dispatch":true}'""" in enrich
    assert '"--schedule=*/5 * * * *"' in enrich and "process-ghl-import" in enrich
    # No object store configured: transcripts only, and no S3 credentials asked for.
    assert all(("RECORDINGS_ENABLED=false" in line) == (line.split()[4] == "process-ghl-import")
               and "AWS_" not in line for line in deploys)
    invoker = "ghl-bridge-invoker@demo-project.iam.gserviceaccount.com"
    for job in jobs:  # an OIDC token of the invoker for the function's URL; no secret in any job
        uri = next(arg for arg in job.split() if arg.startswith("--uri=")).split("=", 1)[1]
        assert "--http-method=POST" in job and "--location=europe-west1" in job and "Authorization" not in job
        assert f"--oidc-service-account-email={invoker}" in job and f"--oidc-token-audience={uri}" in job
    # The batch functions are private: the invoker may call them, a public binding is removed.
    for name in ("sync-prospects-to-ghl", "process-ghl-import"):
        assert (f"+ gcloud functions add-invoker-policy-binding {name} --project=demo-project --region=europe-west1 "
                f"--member=serviceAccount:{invoker}") in out
        assert f"+ gcloud run services get-iam-policy {name}" in out
    assert "add-invoker-policy-binding ghl-call-webhook" not in out
    assert (f"+ gcloud iam service-accounts add-iam-policy-binding {invoker} --project=demo-project "
            '"--member=serviceAccount:<project-number>-compute@developer.gserviceaccount.com" '
            "--role=roles/iam.serviceAccountUser") in out
    # The queues: created (or updated) with their settings, and the runtime account may enqueue.
    queues = _commands(out, "+ gcloud tasks queues create ")
    assert [line.split()[5] for line in queues] == ["ghl-bridge-sync", "ghl-bridge-enrich", "ghl-bridge-import",
                                                    "ghl-bridge-analyze"]
    for line in queues:
        # analyze: fewer at once (Anthropic's rate limits are the organisation's, shared by every location)
        dispatches = 8 if line.split()[5] == "ghl-bridge-analyze" else 100
        for flag in ("--location=europe-west1", f"--max-concurrent-dispatches={dispatches}",
                     "--max-dispatches-per-second=20", "--max-attempts=20", "--min-backoff=5s", "--max-backoff=60s"):
            assert flag in line, (flag, line)
    assert len(_commands(out, "+ gcloud tasks queues add-iam-policy-binding ")) == 4
    assert "--role=roles/cloudtasks.enqueuer" in out
    # The fan-out's settings reach the batch functions.
    for line in deploys[1:]:
        for setting in (f"TRUSTED_INVOKER_EMAIL={invoker}", f"CLOUD_TASKS_INVOKER_EMAIL={invoker}",
                        "FUNCTIONS_BASE_URL=https://europe-west1-demo-project.cloudfunctions.net",
                        "CLOUD_TASKS_PROJECT=demo-project", "CLOUD_TASKS_LOCATION=europe-west1"):
            assert setting in line, (setting, line)
    assert "TRUSTED_INVOKER_EMAIL" not in deploys[0]
    # psql gets the URL without its password (that one goes through PGPASSFILE); the preflight pings first.
    psql = _commands(out, "+ psql postgresql://postgres@db.abcd.supabase.co:5432/postgres -X ")
    assert len(psql) == len(list(MIGRATIONS_DIR.glob("*.sql"))) + 3 and psql[0].endswith('-c "SELECT 1"')
    assert out.index("SELECT 1") < out.index("+ gcloud functions deploy")
    assert '+ gcloud iam service-accounts describe "<project-number>-compute@developer.gserviceaccount.com"' in out
    assert "preflight" in result.stderr
    assert "dry run" in result.stderr and "build" in result.stderr
    assert _calls(tmp_path) == []  # no gcloud, supabase or psql was run
    for secret in ALL_SECRETS:
        assert secret not in out and secret not in result.stderr
    assert not list(tmp_path.glob("ghl-bridge-deploy.*"))  # the private flags folder is gone


def test_dry_run_with_secret_manager_references_secret_names(tmp_path, bin_dirs):
    result = _run(tmp_path, bin_dirs, "--dry-run", "--skip-migrations",
                  env={"SECRET_NAME_SERVICE_ROLE_KEY": "prod-srk", "SYNC_SCHEDULE": "*/15 * * * *"})
    assert result.returncode == 0, result.stderr
    webhook, sync, process = _commands(result.stdout, "+ gcloud functions deploy ")
    assert ("--set-secrets=SUPABASE_SERVICE_ROLE_KEY=prod-srk:latest,"
            "GHL_WEBHOOK_SECRET=ghl-bridge-ghl-webhook-secret:latest") in webhook
    assert "SCHEDULER_SECRET=ghl-bridge-scheduler-secret:latest" in sync
    assert "secrets versions access" not in result.stdout  # the jobs carry OIDC tokens, not the secret
    assert "ANTHROPIC_API_KEY=ghl-bridge-anthropic-api-key:latest" in process
    assert "ANTHROPIC" not in webhook + sync
    # The preflight's checks are shown too: each secret's latest version and who may read it.
    for secret in ("prod-srk", "ghl-bridge-ghl-webhook-secret", "ghl-bridge-scheduler-secret",
                   "ghl-bridge-anthropic-api-key"):
        assert f"+ gcloud secrets versions describe latest --secret={secret} --project=demo-project" in result.stdout
        assert f"+ gcloud secrets get-iam-policy {secret} --project=demo-project" in result.stdout
    assert "+ gcloud projects get-iam-policy demo-project" in result.stdout
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
    assert [c["args"][4] for c in creates] == ["sync-prospects-to-ghl", "process-ghl-import", "replay-webhook-spool",
                                               "enrich-calls", "analyze-calls"]
    for create in creates:
        assert "flags_file" not in create and "--headers=Content-Type=application/json" in create["args"]
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
    assert [c["args"][4] for c in updates] == ["sync-prospects-to-ghl", "process-ghl-import", "replay-webhook-spool",
                                               "enrich-calls", "analyze-calls"]
    assert "--remove-headers=Authorization" in updates[0]["args"]  # an earlier deploy's secret header goes
    assert not [c for c in calls if c["args"][:3] == ["scheduler", "jobs", "create"]]


def test_the_jobs_never_read_the_scheduler_secret(tmp_path, bin_dirs):
    result = _run(tmp_path, bin_dirs, "--skip-migrations", "--skip-functions")
    assert result.returncode == 0, result.stderr
    calls = _calls(tmp_path)
    assert not [c for c in calls if c["args"][:3] == ["secrets", "versions", "access"]]
    creates = [c for c in calls if c["args"][:4] == ["scheduler", "jobs", "create", "http"]]
    assert len(creates) == 5 and all("--oidc-service-account-email=ghl-bridge-invoker@demo-project.iam."
                                     "gserviceaccount.com" in c["args"] for c in creates)


def test_a_public_binding_left_on_a_batch_function_is_removed(tmp_path, bin_dirs):
    result = _run(tmp_path, bin_dirs, "--skip-migrations", "--skip-queues", "--skip-scheduler",
                  env={**ENV_SECRETS, "STUB_RUN_POLICY": "roles/run.invoker\tallUsers"})
    assert result.returncode == 0, result.stderr
    removed = [(c["args"][2], next(a for a in c["args"] if a.startswith("--member=")))
               for c in _calls(tmp_path) if c["args"][:2] == ["functions", "remove-invoker-policy-binding"]]
    assert ("sync-prospects-to-ghl", "--member=allUsers") in removed
    assert ("process-ghl-import", "--member=allUsers") in removed
    assert not [name for name, _ in removed if name == "ghl-call-webhook"]  # the webhook stays public


def test_existing_queues_are_updated_in_place(tmp_path, bin_dirs):
    result = _run(tmp_path, bin_dirs, "--skip-migrations", "--skip-functions", "--skip-scheduler",
                  env={**ENV_SECRETS, "STUB_QUEUES_EXIST": "1", "QUEUE_MAX_CONCURRENT_DISPATCHES": "300"})
    assert result.returncode == 0, result.stderr
    calls = [c["args"] for c in _calls(tmp_path) if c["args"][:2] == ["tasks", "queues"]]
    assert [c[3] for c in calls if c[2] == "update"] == ["ghl-bridge-sync", "ghl-bridge-enrich", "ghl-bridge-import",
                                                         "ghl-bridge-analyze"]
    assert not [c for c in calls if c[2] == "create"]
    assert all(("--max-concurrent-dispatches=300" in c) == (c[3] != "ghl-bridge-analyze")
               for c in calls if c[2] == "update")


def test_linked_supabase_project_uses_db_push(tmp_path, bin_dirs, monkeypatch):
    ref_file = PROJECT_ROOT / "supabase" / ".temp" / "project-ref"
    if ref_file.exists():
        pytest.skip("this checkout is linked to a real Supabase project")
    ref_file.parent.mkdir(exist_ok=True)
    ref_file.write_text("abcd")
    try:
        result = _run(tmp_path, bin_dirs, "--skip-functions", "--skip-queues", "--skip-scheduler", env={"DATABASE_URL": None})
    finally:
        ref_file.unlink()
        if not any(ref_file.parent.iterdir()):
            ref_file.parent.rmdir()
    assert result.returncode == 0, result.stderr
    # The preflight's connection check, then the push.
    assert [c["args"][:3] for c in _calls(tmp_path)] == [["migration", "list", "--linked"], ["db", "push", "--linked"]]
    # the restored no-op versions sort before a post-fold project's newest (docs/deploy.md)
    assert "--include-all" in _calls(tmp_path)[1]["args"]


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
        first = _run(tmp_path, bin_dirs, "--skip-functions", "--skip-queues", "--skip-scheduler", env=env, extra_path=psql_dir)
        assert first.returncode == 0, first.stderr
        files = sorted(MIGRATIONS_DIR.glob("*.sql"))
        assert f"applied {len(files)} migration(s)" in first.stderr
        with psycopg.connect(url) as conn:
            recorded = conn.execute("SELECT version, name FROM supabase_migrations.schema_migrations "
                                    "ORDER BY version").fetchall()
            assert conn.execute("SELECT to_regclass('public.ghl_integrations')").fetchone()[0] is not None
        assert recorded == [tuple(path.stem.split("_", 1)) for path in files]
        second = _run(tmp_path, bin_dirs, "--skip-functions", "--skip-queues", "--skip-scheduler", env=env, extra_path=psql_dir)
        assert second.returncode == 0 and "applied 0 migration(s)" in second.stderr
    finally:
        database.drop_database(server, name)


def test_recordings_give_the_s3_credentials_to_the_import_function_only(tmp_path, bin_dirs):
    store = {"RECORDINGS_S3_BUCKET": "call-recordings",
             "RECORDINGS_S3_ENDPOINT_URL": "https://abcd.supabase.co/storage/v1/s3"}
    result = _run(tmp_path, bin_dirs, "--dry-run", "--skip-migrations", env=store)
    assert result.returncode == 0, result.stderr
    webhook, sync, process = _commands(result.stdout, "+ gcloud functions deploy ")
    assert "AWS_ACCESS_KEY_ID=ghl-bridge-spool-access-key-id:latest" in process
    assert "RECORDINGS_ENABLED=true" in process and "RECORDINGS_S3_BUCKET=call-recordings" in process
    assert "AWS_ACCESS_KEY_ID" not in webhook and "AWS_ACCESS_KEY_ID" not in sync
    off = _run(tmp_path, bin_dirs, "--dry-run", "--skip-migrations", env={**store, "RECORDINGS_ENABLED": "false"})
    assert off.returncode == 0, off.stderr
    assert "AWS_ACCESS_KEY_ID" not in off.stdout and "RECORDINGS_ENABLED=false" in off.stdout
    assert "RECORDINGS_ENABLED" not in webhook + sync


# ---- preflight ------------------------------------------------------------------------------------

def test_preflight_lists_every_problem_and_deploys_nothing(tmp_path, bin_dirs):
    account = "ghl-fn@demo-project.iam.gserviceaccount.com"
    result = _run(tmp_path, bin_dirs, env={
        "FUNCTION_SERVICE_ACCOUNT": account, "STUB_MISSING_ACCOUNTS": account,
        "STUB_MISSING_SECRETS": "ghl-bridge-ghl-webhook-secret", "STUB_UNREADABLE_SECRETS": "ghl-bridge-scheduler-secret",
        "STUB_DB_DOWN": "1"})
    assert result.returncode == 2, result.stderr
    err = result.stderr
    assert "deploy.sh: preflight found 4 problem(s); nothing was deployed:" in err, err
    assert "  - the database of DATABASE_URL does not answer (psql postgresql://postgres@db.abcd.supabase.co" in err
    assert f"  - service account {account} does not exist" in err
    assert ("  - secret ghl-bridge-ghl-webhook-secret (GHL_WEBHOOK_SECRET) does not exist or has no version: "
            'printf %s "$GHL_WEBHOOK_SECRET" | gcloud secrets create ghl-bridge-ghl-webhook-secret --data-file=-') in err
    assert (f"  - secret ghl-bridge-scheduler-secret (SCHEDULER_SECRET) is not readable by {account}: gcloud secrets "
            f"add-iam-policy-binding ghl-bridge-scheduler-secret --member=serviceAccount:{account} "
            "--role=roles/secretmanager.secretAccessor") in err
    calls = [" ".join(c["args"][:3]) for c in _calls(tmp_path)]
    assert not [c for c in calls if c.startswith(("functions deploy", "scheduler", "secrets versions access"))], calls
    assert not [c for c in _calls(tmp_path) if "-f" in c["args"]]  # no migration ran
    assert not (tmp_path / "build").exists()  # stopped before even the build
    assert DB_PASSWORD not in result.stdout + err


def test_preflight_accepts_a_project_level_grant_and_the_default_runtime_account(tmp_path, bin_dirs):
    default = "123456789012-compute@developer.gserviceaccount.com"
    result = _run(tmp_path, bin_dirs, "--skip-migrations", env={
        "STUB_UNREADABLE_SECRETS": "ghl-bridge-supabase-service-role-key ghl-bridge-scheduler-secret",
        "STUB_PROJECT_POLICY": f"roles/secretmanager.secretAccessor\tserviceAccount:{default}"})
    assert result.returncode == 0, result.stderr
    calls = [c["args"] for c in _calls(tmp_path)]
    assert ["iam", "service-accounts", "describe", default] == calls[1][:4]
    assert [" ".join(c[:2]) for c in calls].index("functions deploy") > max(
        i for i, c in enumerate(calls) if c[:2] == ["secrets", "get-iam-policy"])


def test_preflight_checks_the_invoker_account_and_the_fanout_apis(tmp_path, bin_dirs):
    invoker = "ghl-bridge-invoker@demo-project.iam.gserviceaccount.com"
    result = _run(tmp_path, bin_dirs, "--skip-migrations", env={
        **ENV_SECRETS, "STUB_MISSING_ACCOUNTS": invoker, "STUB_DISABLED_APIS": "cloudtasks.googleapis.com"})
    assert result.returncode == 2
    err = result.stderr
    assert "preflight found 2 problem(s)" in err
    assert (f"  - invoker service account {invoker} does not exist: gcloud iam service-accounts create "
            "ghl-bridge-invoker --project=demo-project") in err
    assert "  - the cloudtasks.googleapis.com API is not enabled: gcloud services enable cloudtasks.googleapis.com" in err
    assert not [c for c in _calls(tmp_path) if c["args"][:2] in (["functions", "deploy"], ["tasks", "queues"])]


def test_preflight_in_env_mode_checks_the_account_but_no_secret_manager(tmp_path, bin_dirs):
    result = _run(tmp_path, bin_dirs, "--skip-migrations", env={**ENV_SECRETS, "STUB_MISSING_ACCOUNTS":
                                                                  "123456789012-compute@developer.gserviceaccount.com"})
    assert result.returncode == 2
    assert "preflight found 1 problem(s)" in result.stderr and "service account 123456789012-compute" in result.stderr
    assert not [c for c in _calls(tmp_path) if c["args"][0] == "secrets"]


# ---- no secret in any argv ------------------------------------------------------------------------

@pytest.mark.parametrize("source", ["env", "secret-manager"])
def test_no_secret_reaches_any_process_arguments(tmp_path, bin_dirs, source):
    password = "p@ss:w/o\\rd-" + uuid.uuid4().hex  # URL-special characters, and pgpass's ':' and '\\'
    encoded = password.replace("%", "%25").replace("@", "%40").replace(":", "%3A").replace("/", "%2F")
    url = f"postgresql://postgres:{encoded}@db.abcd.supabase.co:5432/postgres?sslmode=require"
    env = {**(ENV_SECRETS if source == "env" else {}), "DATABASE_URL": url}
    result = _run(tmp_path, bin_dirs, env=env)
    assert result.returncode == 0, result.stderr
    calls = _calls(tmp_path)
    secrets = (*ALL_SECRETS, password, encoded, url)
    tools = {c["tool"] for c in calls}
    assert {"gcloud", "psql"} <= tools
    for call in calls:
        assert not [arg for arg in call["args"] for secret in secrets if secret in arg], call["args"]
        assert "PGPASSWORD" not in call["env"]
    psql = [c for c in calls if c["tool"] == "psql"]
    assert psql[0]["args"][:2] == ["postgresql://postgres@db.abcd.supabase.co:5432/postgres?sslmode=require", "-X"]
    escaped = password.replace("\\", "\\\\").replace(":", "\\:")
    for call in psql:  # the password reaches psql only through its private pgpass file
        assert call["pgpass"] == f"*:*:*:*:{escaped}\n" and call["pgpass_mode"] == "0o600"
    for secret in secrets:
        assert secret not in result.stdout + result.stderr
    assert not list(tmp_path.glob("ghl-bridge-deploy.*"))  # the private folder, pgpass included, is gone


# ---- the redeploy label ---------------------------------------------------------------------------

def _checkout_copy(root: Path) -> Path:
    """What deploy.sh and the build step read, copied, so that the test can change the lock."""
    for name in ("deploy.sh", "pyproject.toml", "requirements.lock", "requirements-dev.lock"):
        shutil.copy(PROJECT_ROOT / name, root / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("ghl_bridge", "functions", "shared", "supabase/migrations"):
        shutil.copytree(PROJECT_ROOT / name, root / name, ignore=ignore)
    return root / "deploy.sh"


def _labels(tmp_path, bin_dirs, deploy_sh: Path) -> dict[str, str]:
    stubs, tools = bin_dirs
    env = {"PATH": f"{stubs}:{tools}", "HOME": str(tmp_path), "TMPDIR": str(tmp_path), "PYTHON": sys.executable,
           "STUB_LOG": str(tmp_path / "calls.jsonl"), "GCP_PROJECT": "demo-project", "GCP_REGION": "europe-west1",
           "SUPABASE_URL": "https://abcd.supabase.co", **ENV_SECRETS}
    result = subprocess.run(["bash", str(deploy_sh), "--dry-run", "--skip-migrations", "--skip-scheduler"],
                            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    return {line.split()[4]: line.split("--update-labels=ghl_bridge_config=")[1].split()[0]
            for line in _commands(result.stdout, "+ gcloud functions deploy ")}


def test_the_redeploy_label_changes_with_a_pin_and_only_then(tmp_path, bin_dirs):
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    deploy_sh = _checkout_copy(checkout)
    first = _labels(tmp_path, bin_dirs, deploy_sh)
    assert set(first) == set(FUNCTIONS) and len(set(first.values())) == 3
    assert _labels(tmp_path, bin_dirs, deploy_sh) == first  # nothing changed: same labels

    # A dev tool's pin is not in any artifact: same labels.
    dev_lock = checkout / "requirements-dev.lock"
    pytest_pin = next(line for line in dev_lock.read_text().splitlines() if line.startswith("pytest=="))
    dev_lock.write_text(dev_lock.read_text().replace(pytest_pin, "pytest==8.0.0 \\"))
    assert _labels(tmp_path, bin_dirs, deploy_sh) == first

    # A new release of a run-time dependency (version and hashes): every function that installs it changes.
    runtime_lock = checkout / "requirements.lock"
    text = runtime_lock.read_text()
    start = text.index("\nhttpx==") + 1
    end = text.index("\n    # via", start)
    runtime_lock.write_text(text[:start] + "httpx==0.28.0 \\\n    --hash=sha256:" + "0" * 64 + text[end:])
    changed = _labels(tmp_path, bin_dirs, deploy_sh)
    assert set(changed) == set(first) and all(changed[name] != first[name] for name in first)
    built = (tmp_path / "checkout" / "build" / "ghl-call-webhook" / "requirements.txt").read_text()
    assert "httpx==0.28.0" in built


def test_a_database_url_without_password_leaves_psqls_own_password_sources_alone(tmp_path, bin_dirs):
    url = "postgresql://postgres@db.abcd.supabase.co:5432/postgres?sslmode=require&options=-c%20x%3Dy"
    result = _run(tmp_path, bin_dirs, "--skip-functions", "--skip-queues", "--skip-scheduler", env={"DATABASE_URL": url})
    assert result.returncode == 0, result.stderr
    psql = [c for c in _calls(tmp_path) if c["tool"] == "psql"]
    assert psql and all(c["args"][0] == url and "PGPASSFILE" not in c["env"] for c in psql)  # ~/.pgpass still works


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


def test_call_analysis_off_asks_for_no_anthropic_key_and_schedules_no_job(tmp_path, bin_dirs):
    env = {k: v for k, v in ENV_SECRETS.items() if k != "ANTHROPIC_API_KEY"}
    missing = _run(tmp_path, bin_dirs, "--dry-run", "--skip-migrations", env=env)
    assert missing.returncode == 2 and "ANTHROPIC_API_KEY" in missing.stderr
    off = _run(tmp_path, bin_dirs, "--dry-run", "--skip-migrations", env={**env, "CALL_ANALYSIS": "false"})
    assert off.returncode == 0, off.stderr
    assert "ANTHROPIC" not in off.stdout and "analyze-calls" not in off.stdout
    model = _run(tmp_path, bin_dirs, "--dry-run", "--skip-migrations",
                 env={**ENV_SECRETS, "ANTHROPIC_MODEL": "claude-haiku-4-5", "ANALYZE_SCHEDULE": "*/10 * * * *"})
    assert "ANTHROPIC_MODEL=claude-haiku-4-5" in model.stdout and '"--schedule=*/10 * * * *"' in model.stdout
