#!/usr/bin/env bash
# deploy.sh: deploy ghl-bridge to Google Cloud Functions (2nd gen) against a hosted Supabase project.
#
#   0. preflight, before anything is deployed: every Secret Manager secret it will reference exists, has an
#      enabled version and is readable by the functions' service account; that service account exists; the
#      migrations connect. Every problem found is listed, then exit 2.
#   1. builds each function's artifact folder (python -m ghl_bridge.build --all): main.py, shared/, and a
#      requirements.txt of the exact pins (with hashes) from requirements.lock of what the function imports
#   2. applies the migrations: `supabase db push` (supabase CLI + linked project), else psql on DATABASE_URL
#   3. deploys ghl-call-webhook (public), sync-prospects-to-ghl and process-ghl-import (private: only the invoker
#      account may call them) (HTTP, python311, entry point `handle`); grants the invoker role
#   4. creates or updates the Cloud Tasks queues of the fan-out (one per job: sync, enrich, import)
#   5. creates or updates the Cloud Scheduler jobs (OIDC tokens of the invoker account) that call
#      sync-prospects-to-ghl and process-ghl-import; sync, import and enrich dispatch one task per location
#
# Usage: ./deploy.sh [--dry-run] [--force] [--skip-migrations] [--skip-functions] [--skip-queues] [--skip-scheduler]
#   --dry-run          print every command it would run (`+ ...`, secrets as ***), the preflight's too, and
#                      run none; only the local build step (step 1) still runs, so the printed commands
#                      describe real folders
#   --force            redeploy functions whose code and configuration are unchanged
#   --skip-...         leave that step out
#
# Idempotent: an unchanged function is not redeployed (its configuration hash is kept in the label
# ghl_bridge_config), an existing scheduler job is updated in place, an applied migration is not re-applied.
# Secrets are never taken from this script's arguments and never printed: they come from Secret Manager
# (SECRETS_SOURCE=secret-manager) or from the environment (SECRETS_SOURCE=env), and reach gcloud through
# a private --flags-file (mode 600, removed on exit), not its command line. The database password reaches psql
# through a private .pgpass file (PGPASSFILE), never its arguments: no secret is in any process's argv.
#
# Variables (docs/deploy.md has the full table):
#   GCP_PROJECT                 required  Google Cloud project id
#   GCP_REGION                  required  region of the functions (and, by default, of the scheduler jobs)
#   SUPABASE_URL                required  https://<ref>.supabase.co
#   SECRETS_SOURCE              secret-manager (default) | env
#   SECRET_NAME_SERVICE_ROLE_KEY  ghl-bridge-supabase-service-role-key  Secret Manager names (secret-manager)
#   SECRET_NAME_WEBHOOK_SECRET    ghl-bridge-ghl-webhook-secret
#   SECRET_NAME_SCHEDULER_SECRET  ghl-bridge-scheduler-secret
#   SECRET_NAME_SPOOL_ACCESS_KEY_ID ghl-bridge-spool-access-key-id   (only with SPOOL_S3_BUCKET)
#   SECRET_NAME_SPOOL_SECRET_ACCESS_KEY ghl-bridge-spool-secret-access-key
#   SECRET_NAME_ANTHROPIC_API_KEY ghl-bridge-anthropic-api-key      (only with CALL_ANALYSIS=true)
#   SUPABASE_SERVICE_ROLE_KEY, GHL_WEBHOOK_SECRET, SCHEDULER_SECRET   the values themselves (env)
#   ANTHROPIC_API_KEY           the Anthropic API key (env, only with CALL_ANALYSIS=true)
#   AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY   the spool's S3 credentials (env, only with SPOOL_S3_BUCKET)
#   DATABASE_URL                migrations through psql when the supabase CLI has no linked project
#   SYNC_SCHEDULE               */5 * * * *     IMPORT_SCHEDULE   * * * * *     REPLAY_SCHEDULE  */5 * * * *
#   ENRICH_SCHEDULE             */5 * * * *     (transcripts and recordings of calls, docs/enrichment.md)
#   CALL_ANALYSIS               true: process-ghl-import reads ANTHROPIC_API_KEY and the job analyze-calls runs
#                               on ANALYZE_SCHEDULE (*/5 * * * *) (docs/analysis.md); false: neither
#   RECORDINGS_ENABLED          true: recordings go to object storage (bucket RECORDINGS_S3_BUCKET, default
#                               call-recordings; the spool's S3 store and credentials unless RECORDINGS_S3_* say
#                               otherwise); forced to false when no S3 store is configured at all
#   SCHEDULER_LOCATION          $GCP_REGION     SCHEDULER_TIME_ZONE  Etc/UTC
#   FUNCTION_MEMORY             512Mi           FUNCTION_SERVICE_ACCOUNT  (the runtime's default)
#   WEBHOOK_CONCURRENCY         16              WEBHOOK_CPU  1      WEBHOOK_MIN_INSTANCES  0   (ghl-call-webhook)
#   INVOKER_SERVICE_ACCOUNT     ghl-bridge-invoker@$GCP_PROJECT.iam.gserviceaccount.com  (the scheduler's and the
#                               queues' OIDC identity; holds the invoker role on the two batch functions)
#   TASKS_LOCATION  $GCP_REGION  TASKS_QUEUE_PREFIX  ghl-bridge-   BATCH_MAX_INSTANCES  100
#   QUEUE_MAX_CONCURRENT_DISPATCHES 100  QUEUE_MAX_DISPATCHES_PER_SECOND 20  QUEUE_MAX_ATTEMPTS 20
#   QUEUE_MIN_BACKOFF 5s  QUEUE_MAX_BACKOFF 60s   (every fan-out queue)
#   BUILD_DIR                   build           PYTHON  python3 (3.11+, standard library only)
#   Passed to the functions when set: GHL_API_BASE_URL PHONE_DEFAULT_REGION LOG_LEVEL GHL_WEBHOOK_RSA_PUBLIC_KEY
#   GHL_WEBHOOK_ED25519_PUBLIC_KEY SPOOL_S3_ENDPOINT_URL SPOOL_S3_BUCKET SPOOL_S3_REGION SPOOL_S3_PREFIX
#   SYNC_CUSTOM_FIELD_VALUE_KEY IMPORT_CREATE_UNMATCHED_PROSPECTS RECORDINGS_S3_BUCKET RECORDINGS_S3_ENDPOINT_URL
#   RECORDINGS_S3_REGION ENRICH_HORIZON_HOURS ANTHROPIC_MODEL ANTHROPIC_BASE_URL ANALYSIS_BATCH_THRESHOLD
#   ANALYSIS_MAX_IN_FLIGHT (and RECORDINGS_ENABLED, to process-ghl-import only)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MIGRATIONS_DIR="$ROOT/supabase/migrations"

SECRETS_SOURCE="${SECRETS_SOURCE:-secret-manager}"
SECRET_NAME_SERVICE_ROLE_KEY="${SECRET_NAME_SERVICE_ROLE_KEY:-ghl-bridge-supabase-service-role-key}"
SECRET_NAME_WEBHOOK_SECRET="${SECRET_NAME_WEBHOOK_SECRET:-ghl-bridge-ghl-webhook-secret}"
SECRET_NAME_SCHEDULER_SECRET="${SECRET_NAME_SCHEDULER_SECRET:-ghl-bridge-scheduler-secret}"
SECRET_NAME_SPOOL_ACCESS_KEY_ID="${SECRET_NAME_SPOOL_ACCESS_KEY_ID:-ghl-bridge-spool-access-key-id}"
SECRET_NAME_SPOOL_SECRET_ACCESS_KEY="${SECRET_NAME_SPOOL_SECRET_ACCESS_KEY:-ghl-bridge-spool-secret-access-key}"
SECRET_NAME_ANTHROPIC_API_KEY="${SECRET_NAME_ANTHROPIC_API_KEY:-ghl-bridge-anthropic-api-key}"
# With SPOOL_S3_BUCKET set, the functions that write or replay the spool get its S3 credentials too.
SPOOL_SECRETS="AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY"
SYNC_SCHEDULE="${SYNC_SCHEDULE:-*/5 * * * *}"
IMPORT_SCHEDULE="${IMPORT_SCHEDULE:-* * * * *}"
REPLAY_SCHEDULE="${REPLAY_SCHEDULE:-*/5 * * * *}"  # the webhook spool's replay (an action of process-ghl-import)
ENRICH_SCHEDULE="${ENRICH_SCHEDULE:-*/5 * * * *}"  # call transcripts and recordings (an action of process-ghl-import)
# Call analysis with Claude (an action of process-ghl-import): its key, its job. false: no key asked for, no job.
CALL_ANALYSIS="${CALL_ANALYSIS:-true}"
ANALYZE_SCHEDULE="${ANALYZE_SCHEDULE:-*/5 * * * *}"
# Recordings need an object store: without any S3 setting, the enrich action fetches transcripts only.
if [[ -z ${SPOOL_S3_BUCKET:-}${RECORDINGS_S3_BUCKET:-}${RECORDINGS_S3_ENDPOINT_URL:-} ]]; then RECORDINGS_ENABLED=false; fi
RECORDINGS_ENABLED="${RECORDINGS_ENABLED:-true}"
SCHEDULER_TIME_ZONE="${SCHEDULER_TIME_ZONE:-Etc/UTC}"
FUNCTION_MEMORY="${FUNCTION_MEMORY:-512Mi}"
FUNCTION_SERVICE_ACCOUNT="${FUNCTION_SERVICE_ACCOUNT:-}"
# ghl-call-webhook: requests one instance serves at once (its gunicorn THREADS are set to the same number), its
# vCPUs (a concurrency above 1 needs at least 1), instances kept warm (each one is billed all day: docs/deploy.md)
WEBHOOK_CONCURRENCY="${WEBHOOK_CONCURRENCY:-16}"
WEBHOOK_CPU="${WEBHOOK_CPU:-1}"
WEBHOOK_MIN_INSTANCES="${WEBHOOK_MIN_INSTANCES:-0}"
BUILD_DIR="${BUILD_DIR:-build}"
PYTHON="${PYTHON:-python3}"
# Fan-out on Cloud Tasks (docs/deploy.md "Fan-out"): one queue per job of shared/services/fanout.py's JOBS.
INVOKER_SERVICE_ACCOUNT="${INVOKER_SERVICE_ACCOUNT:-}"  # default ghl-bridge-invoker@<project>.iam.gserviceaccount.com
TASKS_LOCATION="${TASKS_LOCATION:-}"                    # default $GCP_REGION
TASKS_QUEUE_PREFIX="${TASKS_QUEUE_PREFIX:-ghl-bridge-}"
FANOUT_JOBS="sync enrich import"
QUEUE_MAX_CONCURRENT_DISPATCHES="${QUEUE_MAX_CONCURRENT_DISPATCHES:-100}"  # locations worked at once per job
# Anthropic's rate limits are the organisation's, not a location's: fewer analyze tasks at once (each paces itself
# by the shared anthropic-ratelimit-* headers; more only split the same budget).
QUEUE_ANALYZE_MAX_CONCURRENT_DISPATCHES="${QUEUE_ANALYZE_MAX_CONCURRENT_DISPATCHES:-8}"
QUEUE_MAX_DISPATCHES_PER_SECOND="${QUEUE_MAX_DISPATCHES_PER_SECOND:-20}"
QUEUE_MAX_ATTEMPTS="${QUEUE_MAX_ATTEMPTS:-20}"  # a task answered 409 location_busy waits for the other runner
QUEUE_MIN_BACKOFF="${QUEUE_MIN_BACKOFF:-5s}"
QUEUE_MAX_BACKOFF="${QUEUE_MAX_BACKOFF:-60s}"
BATCH_MAX_INSTANCES="${BATCH_MAX_INSTANCES:-100}"  # sync-prospects-to-ghl / process-ghl-import (one task each)
PASSTHROUGH_VARS=(GHL_API_BASE_URL PHONE_DEFAULT_REGION LOG_LEVEL GHL_WEBHOOK_RSA_PUBLIC_KEY
  GHL_WEBHOOK_ED25519_PUBLIC_KEY SPOOL_S3_ENDPOINT_URL SPOOL_S3_BUCKET SPOOL_S3_REGION SPOOL_S3_PREFIX
  SYNC_CUSTOM_FIELD_VALUE_KEY IMPORT_CREATE_UNMATCHED_PROSPECTS RECORDINGS_S3_BUCKET RECORDINGS_S3_ENDPOINT_URL
  RECORDINGS_S3_REGION ENRICH_HORIZON_HOURS ANTHROPIC_MODEL ANTHROPIC_BASE_URL ANALYSIS_BATCH_THRESHOLD
  ANALYSIS_MAX_IN_FLIGHT)

# name | timeout | secrets it reads (env var names)
FUNCTIONS=(
  "ghl-call-webhook|60s|SUPABASE_SERVICE_ROLE_KEY GHL_WEBHOOK_SECRET"
  "sync-prospects-to-ghl|540s|SUPABASE_SERVICE_ROLE_KEY SCHEDULER_SECRET"
  "process-ghl-import|540s|SUPABASE_SERVICE_ROLE_KEY SCHEDULER_SECRET"
)
# job name | function | schedule | body
# (sync, import and enrich dispatch: one Cloud Task per location with due work; the replay runs in one process)
JOBS=(
  'sync-prospects-to-ghl|sync-prospects-to-ghl|'"$SYNC_SCHEDULE"'|{"dispatch":true}'
  'process-ghl-import|process-ghl-import|'"$IMPORT_SCHEDULE"'|{"action":"process","dispatch":true}'
  'replay-webhook-spool|process-ghl-import|'"$REPLAY_SCHEDULE"'|{"action":"replay_spool"}'
  'enrich-calls|process-ghl-import|'"$ENRICH_SCHEDULE"'|{"action":"enrich","dispatch":true}'
)
[[ $CALL_ANALYSIS == false ]] || FANOUT_JOBS+=" analyze"
[[ $CALL_ANALYSIS == false ]] || JOBS+=('analyze-calls|process-ghl-import|'"$ANALYZE_SCHEDULE"'|{"action":"analyze","dispatch":true}')

DRY_RUN=0 FORCE=0 SKIP_MIGRATIONS=0 SKIP_FUNCTIONS=0 SKIP_QUEUES=0 SKIP_SCHEDULER=0
SECRET_VALUES=()  # every secret value known to this run: masked as *** in anything printed
PRIVATE_DIR=""

say() { printf '%s\n' "$*" >&2; }
die() { say "deploy.sh: $*"; exit 1; }

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

parse_args() {
  local arg
  for arg in "$@"; do
    case "$arg" in
      --dry-run) DRY_RUN=1 ;;
      --force) FORCE=1 ;;
      --skip-migrations) SKIP_MIGRATIONS=1 ;;
      --skip-functions) SKIP_FUNCTIONS=1 ;;
      --skip-queues) SKIP_QUEUES=1 ;;
      --skip-scheduler) SKIP_SCHEDULER=1 ;;
      -h|--help) usage; exit 0 ;;
      *) say "deploy.sh: unknown argument '$arg' (secrets are never arguments: set them in the environment)"
         usage >&2; exit 2 ;;
    esac
  done
}

# ---- printing and running ------------------------------------------------------------------------

mask() {  # mask TEXT: TEXT with every known secret value replaced by ***
  local text=$1 secret
  for secret in "${SECRET_VALUES[@]+"${SECRET_VALUES[@]}"}"; do
    [[ -n $secret ]] && text=${text//"$secret"/***}
  done
  printf '%s' "$text"
}

quote() {  # quote ARG: as a shell would need it, after masking
  local arg
  arg=$(mask "$1")
  if [[ $arg =~ ^[A-Za-z0-9_./:=,@%+*-]+$ ]]; then printf '%s' "$arg"
  elif [[ ! $arg =~ [\"\$\`\\] ]]; then printf '"%s"' "$arg"
  else printf "'%s'" "${arg//\'/\'\\\'\'}"; fi
}

show() {  # show CMD...: print `+ CMD` (masked), one line
  local line="+" arg
  for arg in "$@"; do line+=" $(quote "$arg")"; done
  printf '%s\n' "$line"
}

run() {  # run CMD...: print it, and run it unless --dry-run
  show "$@"
  (( DRY_RUN )) || "$@"
}

# run_private FLAGS_FILE SHOWN -- CMD...: CMD gets --flags-file=FLAGS_FILE (flags holding secrets);
# the printout shows SHOWN (those flags with secrets masked) in its place.
run_private() {
  local file=$1 shown=$2
  shift 3
  local line
  line="$(show "$@") $(quote "$shown")"
  printf '%s\n' "$line"
  (( DRY_RUN )) || "$@" --flags-file="$file"
}

json_string() {  # json_string VALUE: a JSON string literal
  local s=$1
  s=${s//\\/\\\\}; s=${s//\"/\\\"}; s=${s//$'\n'/\\n}; s=${s//$'\r'/\\r}; s=${s//$'\t'/\\t}
  printf '"%s"' "$s"
}

make_private_dir() {  # this run's private folder (mode 700) for flags files holding secrets; removed on exit
  PRIVATE_DIR=$(umask 077; mktemp -d "${TMPDIR:-/tmp}/ghl-bridge-deploy.XXXXXX")
  trap 'rm -rf "$PRIVATE_DIR"' EXIT
}

# ---- checks ---------------------------------------------------------------------------------------

check_requirements() {
  local missing_vars=() missing_tools=() problems=() name
  (( SKIP_FUNCTIONS && SKIP_QUEUES && SKIP_SCHEDULER )) || {
    for name in GCP_PROJECT GCP_REGION; do [[ -n ${!name:-} ]] || missing_vars+=("$name"); done
    command -v gcloud >/dev/null || missing_tools+=("gcloud (Google Cloud SDK: https://cloud.google.com/sdk/docs/install)")
  }
  (( SKIP_FUNCTIONS )) || [[ -n ${SUPABASE_URL:-} ]] || missing_vars+=(SUPABASE_URL)
  case "$SECRETS_SOURCE" in
    secret-manager) ;;
    env)
      for name in $(needed_secrets); do [[ -n ${!name:-} ]] || missing_vars+=("$name"); done ;;
    *) problems+=("SECRETS_SOURCE must be secret-manager or env, not '$SECRETS_SOURCE'") ;;
  esac
  if (( ! SKIP_MIGRATIONS )); then
    MIGRATION_TOOL=$(migration_tool)
    case "$MIGRATION_TOOL" in
      supabase) ;;
      psql) command -v psql >/dev/null || missing_tools+=("psql (PostgreSQL client; apt-get install postgresql-client)") ;;
      none) problems+=("migrations need the supabase CLI with a linked project (supabase link --project-ref <ref>) or DATABASE_URL (psql); or pass --skip-migrations") ;;
    esac
  fi
  command -v "$PYTHON" >/dev/null || missing_tools+=("$PYTHON (Python 3.11+, for the build step; set PYTHON to another interpreter)")
  if [[ ! $WEBHOOK_CONCURRENCY =~ ^[1-9][0-9]*$ || ! $WEBHOOK_MIN_INSTANCES =~ ^[0-9]+$ || ! $WEBHOOK_CPU =~ ^[0-9]+(\.[0-9]+)?$ ]]; then
    problems+=("WEBHOOK_CONCURRENCY (1-1000), WEBHOOK_CPU (vCPUs) and WEBHOOK_MIN_INSTANCES (0 or more) must be numbers")
  elif (( WEBHOOK_CONCURRENCY > 1000 || (WEBHOOK_CONCURRENCY > 1 && ${WEBHOOK_CPU%%.*} < 1) )); then
    problems+=("WEBHOOK_CONCURRENCY must be 1-1000, and above 1 it needs WEBHOOK_CPU of at least 1")
  fi
  (( ${#missing_vars[@]} )) && problems+=("missing variable(s): ${missing_vars[*]} (see docs/deploy.md)")
  (( ${#missing_tools[@]} )) && problems+=("missing tool(s): $(IFS=,; printf '%s' "${missing_tools[*]}" | sed 's/,/, /g')")
  if (( ${#problems[@]} )); then
    for name in "${problems[@]}"; do say "deploy.sh: $name"; done
    exit 2
  fi
  return 0
}

needed_secrets() {  # the secret env vars the selected steps need
  local names=()
  (( SKIP_FUNCTIONS )) || names+=(SUPABASE_SERVICE_ROLE_KEY GHL_WEBHOOK_SECRET SCHEDULER_SECRET)
  if (( ! SKIP_FUNCTIONS )) && [[ -n ${SPOOL_S3_BUCKET:-} || $RECORDINGS_ENABLED != false ]]; then
    names+=($SPOOL_SECRETS)
  fi
  (( SKIP_FUNCTIONS )) || [[ $CALL_ANALYSIS == false ]] || names+=(ANTHROPIC_API_KEY)
  printf '%s\n' "${names[@]+"${names[@]}"}" | sort -u
}

migration_tool() {  # supabase | psql | none
  if command -v supabase >/dev/null && [[ -f $ROOT/supabase/.temp/project-ref ]]; then echo supabase
  elif [[ -n ${DATABASE_URL:-} ]]; then echo psql
  else echo none; fi
}

load_env_secrets() {  # known secret values, so every printout can mask them
  local name
  for name in SUPABASE_SERVICE_ROLE_KEY GHL_WEBHOOK_SECRET SCHEDULER_SECRET DATABASE_URL SUPABASE_DB_PASSWORD $SPOOL_SECRETS \
      ANTHROPIC_API_KEY; do
    [[ -n ${!name:-} ]] && SECRET_VALUES+=("${!name}")
  done
  return 0
}

# ---- 0. preflight ---------------------------------------------------------------------------------
# Reads metadata only: `secrets versions describe` and `secrets get-iam-policy` need roles/secretmanager.viewer
# (no secret value), where `versions access` would need the value-reading secretAccessor role for the deployer
# and would still not show whether the functions' service account can read the secret.

PREFLIGHT_PROBLEMS=()
problem() { PREFLIGHT_PROBLEMS+=("$*"); }

# Roles that let a service account read a secret's value (on the secret or on the whole project).
SECRET_READER_ROLES="roles/secretmanager.secretAccessor roles/secretmanager.admin roles/owner"

RUNTIME_ACCOUNT=""
find_runtime_account() {  # RUNTIME_ACCOUNT: FUNCTION_SERVICE_ACCOUNT, else the runtime's default account
  if [[ -n $FUNCTION_SERVICE_ACCOUNT ]]; then RUNTIME_ACCOUNT=$FUNCTION_SERVICE_ACCOUNT; return; fi
  local describe=(gcloud projects describe "$GCP_PROJECT" --format='value(projectNumber)') number=""
  show "${describe[@]}"
  if (( DRY_RUN )); then number="<project-number>"
  else number=$("${describe[@]}" 2>/dev/null) || number=""; fi
  if [[ -z $number ]]; then
    problem "cannot read project $GCP_PROJECT (gcloud projects describe): check GCP_PROJECT and gcloud auth login"
    return
  fi
  RUNTIME_ACCOUNT="$number-compute@developer.gserviceaccount.com"  # Cloud Functions (2nd gen) default
}

readers() {  # readers CMD...: "role member" lines of an IAM policy that CMD prints
  "$@" --flatten='bindings[].members' --format='value(bindings.role,bindings.members)' 2>/dev/null
}

preflight_account() {  # the service account the functions (the scheduler's targets) run as exists
  local account=$1
  local describe=(gcloud iam service-accounts describe "$account" --project="$GCP_PROJECT" --format='value(email)')
  show "${describe[@]}"
  (( DRY_RUN )) || "${describe[@]}" >/dev/null 2>&1 || problem "service account $account does not exist (or \
is not visible to you): create it (gcloud iam service-accounts create) or set FUNCTION_SERVICE_ACCOUNT"
}

# The scheduler's and the queues' identity exists, and the APIs the fan-out uses are enabled. The roles are
# granted by the deploy itself (step 3: invoker role on each batch function, actAs for the runtime account; step
# 4: enqueuer on each queue), idempotently.
preflight_invoker() {
  local describe=(gcloud iam service-accounts describe "$INVOKER_SERVICE_ACCOUNT" --project="$GCP_PROJECT" --format='value(email)')
  show "${describe[@]}"
  (( DRY_RUN )) || "${describe[@]}" >/dev/null 2>&1 || problem "invoker service account $INVOKER_SERVICE_ACCOUNT \
does not exist: gcloud iam service-accounts create ${INVOKER_SERVICE_ACCOUNT%%@*} --project=$GCP_PROJECT \
--display-name='ghl-bridge scheduler and tasks' (or set INVOKER_SERVICE_ACCOUNT)"
  local services=(gcloud services list --enabled --project="$GCP_PROJECT" --format='value(config.name)')
  show "${services[@]}"
  (( DRY_RUN )) && return 0
  local enabled api
  enabled=$("${services[@]}" 2>/dev/null || true)
  for api in cloudtasks.googleapis.com cloudscheduler.googleapis.com; do
    grep -qxF "$api" <<<"$enabled" || problem "the $api API is not enabled: gcloud services enable $api --project=$GCP_PROJECT"
  done
}

preflight_secrets() {  # preflight_secrets ACCOUNT: each referenced secret exists, is enabled, and ACCOUNT reads it
  local account=$1 env_name secret project_policy=""
  local project_iam=(gcloud projects get-iam-policy "$GCP_PROJECT")
  show "${project_iam[@]}" --flatten='bindings[].members' --format='value(bindings.role,bindings.members)'
  (( DRY_RUN )) || project_policy=$(readers "${project_iam[@]}" || true)
  for env_name in $(needed_secrets); do
    secret=$(secret_ref "$env_name")
    local version=(gcloud secrets versions describe latest --secret="$secret" --project="$GCP_PROJECT" --format='value(state)')
    local policy=(gcloud secrets get-iam-policy "$secret" --project="$GCP_PROJECT")
    show "${version[@]}"
    show "${policy[@]}" --flatten='bindings[].members' --format='value(bindings.role,bindings.members)'
    (( DRY_RUN )) && continue
    local state
    state=$("${version[@]}" 2>/dev/null) || state=""
    if [[ -z $state ]]; then
      problem "secret $secret ($env_name) does not exist or has no version: printf %s \"\$$env_name\" |" \
        "gcloud secrets create $secret --data-file=- --project=$GCP_PROJECT (or: versions add $secret --data-file=-)"
      continue
    elif [[ $state != ENABLED ]]; then
      problem "secret $secret ($env_name): its latest version is $state: gcloud secrets versions add $secret --data-file=-"
      continue
    fi
    [[ -n $account ]] || continue
    local role granted=0 lines
    lines=$(readers "${policy[@]}" || true)$'\n'$project_policy
    for role in $SECRET_READER_ROLES; do
      grep -qxF "$role"$'\t'"serviceAccount:$account" <<<"$lines" && granted=1
    done
    (( granted )) || problem "secret $secret ($env_name) is not readable by $account: gcloud secrets \
add-iam-policy-binding $secret --member=serviceAccount:$account --role=roles/secretmanager.secretAccessor --project=$GCP_PROJECT"
  done
}

# Splits DATABASE_URL (read from the environment) into the URL without its password, printed, and a private
# .pgpass file holding the password (PGPASSFILE; "password" in the query string counts too), plus a private
# copy of the password alone so that printouts can mask it.
SPLIT_DATABASE_URL='
import os, sys, urllib.parse as up
url = up.urlsplit(os.environ["DATABASE_URL"])
if url.scheme not in ("postgres", "postgresql"):
    sys.exit("DATABASE_URL is not a postgresql:// URL")
userinfo, at, hosts = url.netloc.rpartition("@")
user, colon, password = userinfo.partition(":")
password = up.unquote(password) if colon else None
query = []  # the other parameters exactly as written
for item in filter(None, url.query.split("&")):
    key, _, value = item.partition("=")
    if up.unquote(key) == "password":
        password = up.unquote(value)
    else:
        query.append(item)
if password is not None:  # else psql keeps its usual sources (~/.pgpass, PGPASSWORD, ...)
    for path, text in ((os.environ["PGPASSFILE"], "*:*:*:*:" + password.replace("\\", "\\\\").replace(":", "\\:") + "\n"),
                       (os.environ["PGPASSFILE"] + ".value", password)):
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as file:
            file.write(text)
print(url.scheme + "://" + (user + "@" if at else "") + hosts + url.path + ("?" + "&".join(query) if query else ""))
'
DATABASE_URL_SAFE="" PSQL=()
prepare_psql() {  # PSQL: psql on DATABASE_URL without its password (that one goes through PGPASSFILE)
  local pgpass="$PRIVATE_DIR/pgpass" password=""
  DATABASE_URL_SAFE=$(PGPASSFILE=$pgpass "$PYTHON" -c "$SPLIT_DATABASE_URL") || return 1
  if [[ -f $pgpass ]]; then
    export PGPASSFILE=$pgpass
    IFS= read -r -d '' password <"$pgpass.value" || true
    [[ -n $password ]] && SECRET_VALUES+=("$password")
    rm -f "$pgpass.value"
  fi
  PSQL=(psql "$DATABASE_URL_SAFE" -X -q -A -t -v ON_ERROR_STOP=1)
}

preflight_database() {  # the migrations connect
  if [[ $MIGRATION_TOOL == supabase ]]; then
    # Lists the linked project's applied migrations: it connects (the CLI reads SUPABASE_DB_PASSWORD).
    local list=(supabase migration list --linked --workdir "$ROOT")
    show "${list[@]}"
    (( DRY_RUN )) || "${list[@]}" >/dev/null 2>&1 || problem "the linked Supabase database does not answer \
(supabase migration list --linked): check SUPABASE_DB_PASSWORD and \`supabase link\`"
  else
    prepare_psql || { problem "DATABASE_URL must be a postgresql://user:password@host:port/database URL"; return; }
    local ping=("${PSQL[@]}" -c "SELECT 1")
    show "${ping[@]}"
    (( DRY_RUN )) || PGCONNECT_TIMEOUT=10 "${ping[@]}" >/dev/null 2>&1 || problem "the database of DATABASE_URL \
does not answer (psql $DATABASE_URL_SAFE -c 'SELECT 1'): check its host, user, password and network access"
  fi
}

preflight() {
  say "== preflight"
  (( SKIP_MIGRATIONS )) || preflight_database
  if ! (( SKIP_FUNCTIONS && SKIP_QUEUES && SKIP_SCHEDULER )); then
    find_runtime_account
    [[ -n $RUNTIME_ACCOUNT ]] && preflight_account "$RUNTIME_ACCOUNT"
    [[ $SECRETS_SOURCE == secret-manager ]] && preflight_secrets "$RUNTIME_ACCOUNT"
    preflight_invoker
  fi
  if (( ${#PREFLIGHT_PROBLEMS[@]} )); then
    say "deploy.sh: preflight found ${#PREFLIGHT_PROBLEMS[@]} problem(s); nothing was deployed:"
    local item
    for item in "${PREFLIGHT_PROBLEMS[@]}"; do say "  - $(mask "$item")"; done
    exit 2
  fi
  (( DRY_RUN )) && say "# dry run: the checks above are not run"
  return 0
}

# ---- 1. build -------------------------------------------------------------------------------------

build_artifacts() {
  say "== build (local; runs in --dry-run too)"
  show "$PYTHON" -m ghl_bridge.build --all --out "$BUILD_DIR"
  (cd "$ROOT" && "$PYTHON" -m ghl_bridge.build --all --out "$BUILD_DIR") >&2
}

# ---- 2. migrations --------------------------------------------------------------------------------

apply_migrations() {
  say "== migrations ($MIGRATION_TOOL)"
  if [[ $MIGRATION_TOOL == supabase ]]; then
    # SUPABASE_DB_PASSWORD, when set, is read by the supabase CLI itself. --include-all: a project made after
    # the migration fold has not recorded the two versions restored as no-ops (20261126001200, 20261126004000),
    # which sort before its newest; without it the push refuses them. Every other new file sorts after every
    # landed one (tests/integration/test_migrations_append_only.py), so nothing else is applied out of order.
    run supabase db push --linked --include-all --yes --workdir "$ROOT"
    return
  fi
  local psql=("${PSQL[@]}")  # the URL without its password: psql reads that from PGPASSFILE (prepare_psql)
  local applied="" file base version name
  local history_sql="CREATE SCHEMA IF NOT EXISTS supabase_migrations; CREATE TABLE IF NOT EXISTS supabase_migrations.schema_migrations (version text PRIMARY KEY, statements text[], name text)"
  local history=("${psql[@]}" -c "SET client_min_messages TO warning" -c "$history_sql"
    -c "SELECT version FROM supabase_migrations.schema_migrations")
  show "${history[@]}"
  if (( DRY_RUN )); then
    say "# dry run: the history is not read; each file below runs only if its version is not recorded yet"
  else
    applied=$("${history[@]}")
  fi
  local count=0
  for file in "$MIGRATIONS_DIR"/*.sql; do
    base=$(basename "$file" .sql)
    version=${base%%_*} name=${base#*_}
    [[ $version =~ ^[0-9]+$ && $name =~ ^[a-z0-9_]+$ ]] || die "migration file name not <timestamp>_<name>.sql: $file"
    grep -qx "$version" <<<"$applied" && continue
    # The file and its history row in one transaction: a failed migration leaves no trace.
    run "${psql[@]}" -1 -f "$file" \
      -c "INSERT INTO supabase_migrations.schema_migrations (version, name) VALUES ('$version', '$name')"
    count=$((count + 1))
  done
  if (( count )); then
    run "${psql[@]}" -c "NOTIFY pgrst, 'reload schema'"
  fi
  (( DRY_RUN )) || say "applied $count migration(s)"
}

# ---- 3. functions ---------------------------------------------------------------------------------

secret_ref() {  # secret_ref ENV_NAME: its Secret Manager secret name
  case "$1" in
    SUPABASE_SERVICE_ROLE_KEY) printf '%s' "$SECRET_NAME_SERVICE_ROLE_KEY" ;;
    GHL_WEBHOOK_SECRET) printf '%s' "$SECRET_NAME_WEBHOOK_SECRET" ;;
    SCHEDULER_SECRET) printf '%s' "$SECRET_NAME_SCHEDULER_SECRET" ;;
    AWS_ACCESS_KEY_ID) printf '%s' "$SECRET_NAME_SPOOL_ACCESS_KEY_ID" ;;
    AWS_SECRET_ACCESS_KEY) printf '%s' "$SECRET_NAME_SPOOL_SECRET_ACCESS_KEY" ;;
    ANTHROPIC_API_KEY) printf '%s' "$SECRET_NAME_ANTHROPIC_API_KEY" ;;
  esac
}

# function_env SECRETS: "NAME=VALUE" lines of the function's environment (secret values only with SECRETS_SOURCE=env)
function_env() {
  local name
  printf 'SUPABASE_URL=%s\n' "$SUPABASE_URL"
  for name in "${PASSTHROUGH_VARS[@]}"; do
    [[ -n ${!name:-} ]] && printf '%s=%s\n' "$name" "${!name}"
  done
  if [[ $SECRETS_SOURCE == env ]]; then
    for name in $1; do printf '%s=%s\n' "$name" "${!name}"; done
  fi
  return 0
}

artifact_digest() {  # artifact_digest DIR: sha256 over the artifact's files and their paths
  (cd "$1" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) | sha256sum | cut -c1-64
}

deploy_function() {
  local spec=$1 name timeout secrets
  IFS='|' read -r name timeout secrets <<<"$spec"
  if [[ -n ${SPOOL_S3_BUCKET:-} && $name != sync-prospects-to-ghl ]]; then secrets+=" $SPOOL_SECRETS"
  elif [[ $RECORDINGS_ENABLED != false && $name == process-ghl-import ]]; then secrets+=" $SPOOL_SECRETS"; fi
  [[ $CALL_ANALYSIS != false && $name == process-ghl-import ]] && secrets+=" ANTHROPIC_API_KEY"
  local source="$BUILD_DIR/$name"
  [[ $source == /* ]] || source="$ROOT/$source"
  local args=(gcloud functions deploy "$name" --project="$GCP_PROJECT" --region="$GCP_REGION" --gen2
    --runtime=python311 --source="$source" --entry-point=handle --trigger-http
    --timeout="$timeout" --memory="$FUNCTION_MEMORY" --quiet)
  if [[ $name == ghl-call-webhook ]]; then
    args+=(--allow-unauthenticated)  # GHL cannot send Google identity tokens: the webhook checks its own secret
  else
    # Only the invoker account (Cloud Scheduler, the queues' tasks) gets past Google's front end.
    args+=(--no-allow-unauthenticated --max-instances="$BATCH_MAX_INSTANCES")
  fi
  [[ -n $FUNCTION_SERVICE_ACCOUNT ]] && args+=(--run-service-account="$FUNCTION_SERVICE_ACCOUNT")
  [[ $name == ghl-call-webhook ]] && args+=(--concurrency="$WEBHOOK_CONCURRENCY" --cpu="$WEBHOOK_CPU"
    --min-instances="$WEBHOOK_MIN_INSTANCES")
  if [[ $SECRETS_SOURCE == secret-manager ]]; then
    local refs=() secret
    for secret in $secrets; do refs+=("$secret=$(secret_ref "$secret"):latest"); done
    args+=(--set-secrets="$(IFS=,; printf '%s' "${refs[*]}")")
  fi

  # The environment goes through a private flags file: values may hold secrets, commas or newlines.
  local env_lines flags_file shown json="" key value
  env_lines=$(function_env "$secrets")
  [[ $name == process-ghl-import ]] && env_lines+=$'\n'"RECORDINGS_ENABLED=$RECORDINGS_ENABLED"
  if [[ $name != ghl-call-webhook ]]; then  # the fan-out's settings, and the caller Google has verified
    env_lines+=$'\n'"TRUSTED_INVOKER_EMAIL=$INVOKER_SERVICE_ACCOUNT"$'\n'"FUNCTIONS_BASE_URL=$FUNCTIONS_BASE_URL"
    env_lines+=$'\n'"CLOUD_TASKS_PROJECT=$GCP_PROJECT"$'\n'"CLOUD_TASKS_LOCATION=$TASKS_LOCATION"
    env_lines+=$'\n'"CLOUD_TASKS_QUEUE_PREFIX=$TASKS_QUEUE_PREFIX"$'\n'"CLOUD_TASKS_INVOKER_EMAIL=$INVOKER_SERVICE_ACCOUNT"
  fi
  # Python serves concurrent requests with threads: as many as the instance may be sent (Cloud Functions' advice).
  [[ $name == ghl-call-webhook ]] && env_lines+=$'\n'"THREADS=$WEBHOOK_CONCURRENCY"
  flags_file="$PRIVATE_DIR/$name.flags.json"
  shown="--set-env-vars=$(paste -sd, <<<"$env_lines")"
  while IFS= read -r line; do
    key=${line%%=*} value=${line#*=}
    json+="${json:+, }$(json_string "$key"): $(json_string "$value")"
  done <<<"$env_lines"
  (umask 077; printf '{"--set-env-vars": {%s}}\n' "$json" >"$flags_file")

  # Unchanged code and configuration (this hash) = nothing to deploy.
  local config
  # (not the --source path: the same code built into another folder is the same deployment)
  config=$( { artifact_digest "$source"; printf '%s\n' "${args[@]/#--source=*/--source}"; printf '%s\n' "$env_lines"; } \
            | sha256sum | cut -c1-40)
  args+=(--update-labels="ghl_bridge_config=$config")
  local describe=(gcloud functions describe "$name" --project="$GCP_PROJECT" --region="$GCP_REGION" --gen2
    --format='value(labels.ghl_bridge_config)')
  if (( ! DRY_RUN && ! FORCE )); then
    show "${describe[@]}"
    if [[ $("${describe[@]}" 2>/dev/null || true) == "$config" ]]; then
      say "$name: unchanged (label ghl_bridge_config=$config); not redeployed (--force redeploys)"
      return 0
    fi
  elif (( DRY_RUN && ! FORCE )); then
    show "${describe[@]}"
    say "# dry run: deploys below unless the label above already equals $config"
  fi
  run_private "$flags_file" "$shown" -- "${args[@]}"
}

deploy_functions() {
  say "== functions (secrets from $SECRETS_SOURCE)"
  local spec
  for spec in "${FUNCTIONS[@]}"; do
    local name=${spec%%|*}
    [[ -f $ROOT/functions/${name//-/_}/main.py ]] || die "functions/${name//-/_}/main.py is missing: cannot deploy $name"
    deploy_function "$spec"
    [[ $name == ghl-call-webhook ]] || grant_invoker "$name"
  done
  # The functions create tasks that carry the invoker's OIDC token: their runtime account acts as the invoker.
  run gcloud iam service-accounts add-iam-policy-binding "$INVOKER_SERVICE_ACCOUNT" --project="$GCP_PROJECT" \
    --member="serviceAccount:$RUNTIME_ACCOUNT" --role=roles/iam.serviceAccountUser --quiet
}

# grant_invoker NAME: the invoker account may call the private function (gen2: roles/run.invoker on its Cloud Run
# service), and nobody else: a public binding left from an earlier deploy (allUsers) is removed.
grant_invoker() {
  local name=$1
  run gcloud functions add-invoker-policy-binding "$name" --project="$GCP_PROJECT" --region="$GCP_REGION" \
    --member="serviceAccount:$INVOKER_SERVICE_ACCOUNT"
  local policy=(gcloud run services get-iam-policy "$name" --project="$GCP_PROJECT" --region="$GCP_REGION"
    --flatten='bindings[].members' --format='value(bindings.role,bindings.members)')
  show "${policy[@]}"
  if (( DRY_RUN )); then
    say "# dry run: 'remove-invoker-policy-binding $name --member=allUsers' runs if the policy above has it"
  elif "${policy[@]}" 2>/dev/null | grep -qE $'^roles/run.invoker\t(allUsers|allAuthenticatedUsers)$'; then
    local member
    for member in allUsers allAuthenticatedUsers; do
      run gcloud functions remove-invoker-policy-binding "$name" --project="$GCP_PROJECT" --region="$GCP_REGION" \
        --member="$member" 2>/dev/null || true
    done
  fi
}

# ---- 4. queues ------------------------------------------------------------------------------------

deploy_queues() {
  say "== queues (Cloud Tasks, $TASKS_LOCATION)"
  local job queue max_dispatches
  for job in $FANOUT_JOBS; do
    queue="$TASKS_QUEUE_PREFIX$job"
    max_dispatches=$QUEUE_MAX_CONCURRENT_DISPATCHES
    [[ $job == analyze ]] && max_dispatches=$QUEUE_ANALYZE_MAX_CONCURRENT_DISPATCHES
    local describe=(gcloud tasks queues describe "$queue" --project="$GCP_PROJECT" --location="$TASKS_LOCATION" --format='value(name)')
    local verb=create
    show "${describe[@]}"
    if (( DRY_RUN )); then
      say "# dry run: 'create' below becomes 'update' when the queue exists"
    elif "${describe[@]}" >/dev/null 2>&1; then
      verb=update
    fi
    run gcloud tasks queues "$verb" "$queue" --project="$GCP_PROJECT" --location="$TASKS_LOCATION" \
      --max-concurrent-dispatches="$max_dispatches" \
      --max-dispatches-per-second="$QUEUE_MAX_DISPATCHES_PER_SECOND" --max-attempts="$QUEUE_MAX_ATTEMPTS" \
      --min-backoff="$QUEUE_MIN_BACKOFF" --max-backoff="$QUEUE_MAX_BACKOFF" --quiet
    # The functions' runtime account creates the queue's tasks.
    run gcloud tasks queues add-iam-policy-binding "$queue" --project="$GCP_PROJECT" --location="$TASKS_LOCATION" \
      --member="serviceAccount:$RUNTIME_ACCOUNT" --role=roles/cloudtasks.enqueuer --quiet
  done
}

# ---- 5. scheduler jobs ----------------------------------------------------------------------------

deploy_job() {
  local spec=$1 job function schedule body
  IFS='|' read -r job function schedule body <<<"$spec"
  local location=${SCHEDULER_LOCATION:-$GCP_REGION}
  local uri="$FUNCTIONS_BASE_URL/$function"
  # An OIDC token of the invoker account for the function's URL: Google's front end checks it (the functions are
  # private), so no secret travels in the jobs.
  local common=("$job" --project="$GCP_PROJECT" --location="$location" --schedule="$schedule"
    --time-zone="$SCHEDULER_TIME_ZONE" --uri="$uri" --http-method=POST --message-body="$body"
    --oidc-service-account-email="$INVOKER_SERVICE_ACCOUNT" --oidc-token-audience="$uri"
    --attempt-deadline=540s --quiet)
  local describe=(gcloud scheduler jobs describe "$job" --project="$GCP_PROJECT" --location="$location" --format='value(name)')
  show "${describe[@]}"
  if (( DRY_RUN )); then
    say "# dry run: 'create http' below becomes 'update http' (--update-headers, --remove-headers=Authorization) when the job exists"
    run gcloud scheduler jobs create http "${common[@]}" --headers=Content-Type=application/json
  elif "${describe[@]}" >/dev/null 2>&1; then
    # (an earlier deploy's job sent the scheduler secret in Authorization: the OIDC token replaces it)
    run gcloud scheduler jobs update http "${common[@]}" --update-headers=Content-Type=application/json \
      --remove-headers=Authorization
  else
    run gcloud scheduler jobs create http "${common[@]}" --headers=Content-Type=application/json
  fi
}

deploy_jobs() {
  say "== scheduler jobs (OIDC: $INVOKER_SERVICE_ACCOUNT)"
  local spec
  for spec in "${JOBS[@]}"; do deploy_job "$spec"; done
}

resolve_defaults() {  # defaults that depend on the project and region (checked by check_requirements)
  INVOKER_SERVICE_ACCOUNT=${INVOKER_SERVICE_ACCOUNT:-ghl-bridge-invoker@${GCP_PROJECT:-}.iam.gserviceaccount.com}
  TASKS_LOCATION=${TASKS_LOCATION:-${GCP_REGION:-}}
  FUNCTIONS_BASE_URL="https://${GCP_REGION:-}-${GCP_PROJECT:-}.cloudfunctions.net"
}

main() {
  parse_args "$@"
  load_env_secrets
  check_requirements
  resolve_defaults
  make_private_dir
  (( DRY_RUN )) && say "deploy.sh: dry run: printing commands, running none (except the local build step)"
  preflight
  build_artifacts
  (( SKIP_MIGRATIONS )) || apply_migrations
  (( SKIP_FUNCTIONS )) || deploy_functions
  (( SKIP_QUEUES )) || deploy_queues
  (( SKIP_SCHEDULER )) || deploy_jobs
  say "deploy.sh: done$( (( DRY_RUN )) && printf ' (dry run: nothing was changed)')"
}

main "$@"
