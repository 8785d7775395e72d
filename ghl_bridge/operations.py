"""Operator commands: run the functions' services by hand, against a hosted project or the local stack.

    ghl-bridge sync [--location ID] [--dry-run] [--json]
    ghl-bridge import pull --location ID [--kinds contacts,calls] [--since ISO] [--json]
    ghl-bridge import process [BATCH] [--json]
    ghl-bridge import status [BATCH] [--json]
    ghl-bridge enrich [--location ID] [--limit N] [--json]
    ghl-bridge analyze [--location ID] [--limit N] [--json] [--again --since ISO]

They call the same services the deployed functions call (shared/services), in this process, with the
service-role key: SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY from the environment or, when both are
unset, the values of the local stack `ghl-bridge stack up` runs. Progress goes to stderr (a bar on a
terminal), results to stdout: a table, or JSON with --json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

# Each call to a service gets this much time before the CLI reports progress and calls again: the
# services resume where they stopped (cursors and claims live in the database).
STEP_SECONDS = 2.0
MAX_IMPORT_STEPS = 100_000


class OperatorError(RuntimeError):
    """Configuration the commands cannot work without (exit code 2)."""


# ---- where to connect -----------------------------------------------------------------------------

def _local_stack_info() -> dict[str, Any] | None:
    from ghl_bridge.stack.stack import Stack, StackConfig

    status = Stack(StackConfig.for_cli()).status()
    services = status.get("services", {})
    if status.get("supabase_url") and services and all(s["running"] for s in services.values()):
        return status
    return None


def _use_local_anthropic(info: dict[str, Any]) -> None:
    """On the local stack, the Anthropic SDK (which reads ANTHROPIC_BASE_URL and ANTHROPIC_API_KEY) talks to the
    stack's stand-in, as the functions do; unless ANTHROPIC_BASE_URL names another Anthropic."""
    if not os.environ.get("ANTHROPIC_BASE_URL") and info.get("anthropic_api_key") and info.get("anthropic_url"):
        os.environ["ANTHROPIC_BASE_URL"] = info["anthropic_url"]
        os.environ["ANTHROPIC_API_KEY"] = info["anthropic_api_key"]


def connection_settings():
    """Settings for the services: the environment's project, else the running local stack's."""
    from shared.config import Settings
    from shared.logs import configure_logging, register_secret

    url, key = os.environ.get("SUPABASE_URL"), os.environ.get("SUPABASE_SERVICE_ROLE_KEY")
    overrides: dict[str, Any] = {}
    if url and key:
        source = "environment"
    elif url or key:
        missing = "SUPABASE_SERVICE_ROLE_KEY" if url else "SUPABASE_URL"
        raise OperatorError(f"{missing} is not set (SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY go together)")
    else:
        info = _local_stack_info()
        if info is None:
            raise OperatorError("set SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY (a hosted project), "
                                "or start the local stack: ghl-bridge stack up")
        source = f"local stack ({info['state_dir']})"
        overrides = {"supabase_url": info["supabase_url"], "supabase_service_role_key": info["service_role_key"]}
        if not os.environ.get("GHL_API_BASE_URL") and info.get("ghl_api_base_url"):
            overrides["ghl_api_base_url"] = info["ghl_api_base_url"]
        _use_local_anthropic(info)
    settings = Settings(**overrides)
    # the services' JSON logs: warnings only, on stderr (stdout holds the command's result: one JSON document)
    configure_logging(os.environ.get("LOG_LEVEL", "WARNING"), to_stderr=True)
    for secret in settings.secret_values():
        register_secret(secret)
    if os.environ.get("ANTHROPIC_API_KEY"):
        register_secret(os.environ["ANTHROPIC_API_KEY"])
    return settings, source


def _database(settings):
    from shared.adapters.supabase_db import create_service_client

    return create_service_client(settings.supabase_url, settings.supabase_service_role_key.get_secret_value(),
                                 timeout=settings.database_timeout_seconds)


# ---- output ---------------------------------------------------------------------------------------

def _stderr_console():
    from rich.console import Console

    return Console(stderr=True)


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


HEADERS = {"total_records": "total", "staged_records": "staged", "processed_records": "processed",
           "error_count": "errors", "created_at": "created", "completed_at": "completed",
           "failure_reason": "failure"}


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return "; ".join(map(str, value)) if any(" " in str(item) for item in value) else ",".join(map(str, value))
    text = str(value)
    # ISO timestamps from PostgREST, to the second: 2026-11-27T00:11:46.836+00:00 -> 2026-11-27 00:11:46Z
    match = re.match(r"^(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)(?:\.\d+)?(?:\+00:00|Z)$", text)
    return f"{match.group(1)} {match.group(2)}Z" if match else text


def _print_table(title: str, columns: list[str], rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    from rich import box

    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    for column in columns:
        # One line per row (ids are copied into the next command); only free text wraps.
        wraps = column in ("error", "failure_reason", "warnings")
        table.add_column(HEADERS.get(column, column), no_wrap=not wraps, overflow="fold" if wraps else "ellipsis")
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in columns))
    if not rows:
        table.caption = "(none)"
    console = Console()
    # Piped output has no width of its own: wide enough for a row of ids and counts.
    Console(width=console.width if console.is_terminal else 200).print(table)


def _with_spinner(description: str, work: Callable[[], Any]) -> Any:
    """Run work() while showing an elapsed-time bar on stderr (a terminal only)."""
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    console = _stderr_console()
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                  console=console, transient=True, disable=not console.is_terminal) as progress:
        progress.add_task(description, total=None)
        return _run_showing(progress, work)


def _run_showing(progress, work: Callable[[], Any]) -> Any:
    """work() in a thread while the progress display keeps refreshing here; its result, or its error re-raised."""
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = work()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            result["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.1)
        progress.refresh()
    if "error" in result:
        raise result["error"]
    return result["value"]


# ---- sync -----------------------------------------------------------------------------------------

SYNC_COLUMNS = ["location_id", "due", "pushed", "created", "updated", "failed", "skipped", "status", "seconds", "error"]


def cmd_sync(args: argparse.Namespace) -> int:
    from shared.services.sync_prospects import run_sync

    settings, source = connection_settings()
    database = _database(settings)
    what = f"location {args.location}" if args.location else "every active internal location"
    started = time.monotonic()
    summaries = _with_spinner(
        f"{'dry run: planning' if args.dry_run else 'pushing prospects to GHL for'} {what}",
        lambda: run_sync(database, settings, location_id=args.location, dry_run=args.dry_run,
                         deadline=time.monotonic() + settings.sync_deadline_seconds))
    result = {"dry_run": args.dry_run, "source": source, "seconds": round(time.monotonic() - started, 3),
              "locations": [summary.to_dict() for summary in summaries]}
    if args.json:
        _print_json(result)
    else:
        title = f"sync{' (dry run)' if args.dry_run else ''} against {source}"
        _print_table(title, SYNC_COLUMNS, result["locations"])
        if args.dry_run:
            for location in result["locations"]:
                planned = location.get("prospects") or []
                if planned:
                    _print_table(f"would push for {location['location_id']}",
                                 sorted({k for p in planned for k in p}), planned)
    failed = [s for s in result["locations"] if s.get("status") == "failed"]
    return 1 if failed else 0


# ---- import ---------------------------------------------------------------------------------------

BATCH_COLUMNS = ["id", "location_id", "status", "kinds", "total_records", "staged_records", "processed_records",
                 "error_count", "completed_at", "failure_reason", "warnings"]  # --json has every field
OPEN = ("pending", "processing")


def _import_ports(settings):
    from shared.adapters.import_repository import ImportRepository
    from shared.services import import_batches

    return ImportRepository(_database(settings)), import_batches.ghl_client_factory(settings)


def _drive_batch(first_step: Callable[[float], Any], next_step: Callable[[str, float], Any],
                 description: str) -> list[dict[str, Any]]:
    """Call the service in steps of STEP_SECONDS until the batch is done, a bar showing processed/total.

    Returns every step's BatchRun.to_dict()."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = _stderr_console()
    runs: list[dict[str, Any]] = []
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task(description, total=None)
        run = first_step(time.monotonic() + STEP_SECONDS).to_dict()
        runs.append(run)
        for _ in range(MAX_IMPORT_STEPS):
            progress.update(task, total=run.get("total_records") or None, completed=run.get("processed_records") or 0,
                            description=f"{description}: {run['status']}, {run.get('staged_records') or 0} staged")
            if run["status"] not in OPEN:
                break
            before = (run.get("staged_records"), run.get("processed_records"), run.get("error_count"))
            run = next_step(run["id"], time.monotonic() + STEP_SECONDS).to_dict()
            runs.append(run)
            after = (run.get("staged_records"), run.get("processed_records"), run.get("error_count"))
            if after == before and run["status"] in OPEN:
                break  # a whole step without progress (GHL paused, budget spent, rows claimed elsewhere)
    return runs


def _batch_result(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The batch as it stands after the last step, with the steps' work added up."""
    last = dict(runs[-1])
    totals = {key: sum(r["run"].get(key, 0) for r in runs)
              for key in ("pages_pulled", "records_staged", "chunks", "imported", "skipped", "errors")}
    totals["warnings"] = [w for r in runs for w in r["run"].get("warnings", [])]
    totals["steps"] = len(runs)
    last["run"] = totals
    return last


def _print_batches(title: str, batches: list[dict[str, Any]]) -> None:
    _print_table(title, BATCH_COLUMNS, batches)
    for batch in batches:
        run = batch.get("run")
        if run:
            print(f"{batch['id']}: this run pulled {run['pages_pulled']} page(s), staged {run['records_staged']}, "
                  f"imported {run['imported']}, skipped {run['skipped']}, errors {run['errors']}"
                  + (f"; {'; '.join(run['warnings'])}" if run["warnings"] else ""))


def cmd_import_pull(args: argparse.Namespace) -> int:
    from shared.domain.import_records import parse_import_request
    from shared.services import import_batches

    body: dict[str, Any] = {"action": "pull", "location_id": args.location}
    if args.kinds:
        body["kinds"] = [k.strip() for k in args.kinds.split(",") if k.strip()]
    if args.since:
        body["since"] = args.since
    request = parse_import_request(body)  # the function's own validation: same messages
    settings, source = connection_settings()
    repo, ghl = _import_ports(settings)
    runs = _drive_batch(
        lambda deadline: import_batches.start_import(repo, ghl, settings, request, deadline=deadline),
        lambda batch_id, deadline: import_batches.advance_batch(repo, ghl, settings, batch_id, deadline=deadline),
        f"importing {'+'.join(request.kinds)} of {request.location_id}")
    batch = _batch_result(runs)
    if args.json:
        _print_json({"source": source, "batch": batch})
    else:
        _print_batches(f"import batch against {source}", [batch])
    return 1 if batch["status"] == "failed" else 0


def cmd_import_process(args: argparse.Namespace) -> int:
    from shared.domain.import_records import parse_import_request
    from shared.services import import_batches

    request = parse_import_request({"action": "process", "batch_id": args.batch})
    settings, source = connection_settings()
    repo, ghl = _import_ports(settings)
    advance = lambda batch_id, deadline: import_batches.advance_batch(  # noqa: E731
        repo, ghl, settings, batch_id, deadline=deadline)
    batch_ids = [request.batch_id] if request.batch_id else repo.open_batch_ids()
    batches = [_batch_result(_drive_batch(lambda deadline, b=batch_id: advance(b, deadline), advance,
                                          f"processing batch {batch_id}"))
               for batch_id in batch_ids]
    if args.json:
        _print_json({"source": source, "batches": batches})
    else:
        _print_batches(f"processed against {source}" if batches else f"no open batch ({source})", batches)
    return 1 if any(b["status"] == "failed" for b in batches) else 0


def cmd_import_status(args: argparse.Namespace) -> int:
    from shared import errors
    from shared.adapters.supabase_db import map_database_error
    from shared.domain.import_records import parse_import_request

    request = parse_import_request({"action": "process", "batch_id": args.batch})  # validates the UUID
    settings, source = connection_settings()
    if request.batch_id:
        repo, _ = _import_ports(settings)
        batch = repo.summary(request.batch_id)
        if not batch:
            raise errors.BadRequest(f"import batch {request.batch_id} does not exist")
        batches = [batch]
    else:
        # One select for the listing (not a summary rpc per batch); staged counts are in `status BATCH`.
        columns = ",".join([c for c in BATCH_COLUMNS if c != "staged_records"] + ["created_at"])
        try:
            batches = (_database(settings).table("ghl_import_batches").select(columns)
                       .order("created_at", desc=True).limit(args.limit).execute().data)
        except Exception as exc:  # noqa: BLE001 - mapped like every database error
            raise map_database_error(exc) from exc
    if args.json:
        _print_json({"source": source, "batches": batches})
    else:
        _print_batches(f"import batches ({source})", batches)
    return 0


# ---- enrich ---------------------------------------------------------------------------------------

ENRICH_COLUMNS = ["location_id", "claimed", "done", "transcripts", "recordings", "not_ready", "released",
                  "requests", "status", "seconds", "error"]


def _recordings_bucket(settings):
    """The recordings' bucket from the settings; on the local stack (no S3 endpoint configured), its moto S3."""
    from shared.adapters.object_store import recordings_bucket_from_settings

    if settings.recordings_enabled and not (settings.recordings_s3_endpoint_url or settings.spool_s3_endpoint_url) \
            and not os.environ.get("SUPABASE_URL"):
        info = _local_stack_info() or {}
        if info.get("s3_endpoint_url"):
            settings = settings.model_copy(update={"recordings_s3_endpoint_url": info["s3_endpoint_url"]})
            for name, value in (("AWS_ACCESS_KEY_ID", "local"), ("AWS_SECRET_ACCESS_KEY", "local")):
                os.environ.setdefault(name, value)  # moto accepts any credentials
    return recordings_bucket_from_settings(settings)


def cmd_enrich(args: argparse.Namespace) -> int:
    """Fetch due calls' transcripts and recordings now (the enrich action's service), a bar counting calls."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from shared.adapters.enrich_repository import EnrichRepository
    from shared.services.enrich_calls import run_enrich

    if args.limit is not None and args.limit < 1:
        raise OperatorError("--limit must be at least 1")
    settings, source = connection_settings()
    database = _database(settings)
    recordings = _recordings_bucket(settings)
    due = int(EnrichRepository(database).summary(args.location).get("due_now") or 0)
    total = min(due, args.limit) if args.limit else due
    what = f"location {args.location}" if args.location else "every active location"
    console = _stderr_console()
    started = time.monotonic()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task(f"enriching calls of {what}", total=total or None)
        summaries = _run_showing(progress, lambda: run_enrich(
            database, settings, recordings=recordings, location_id=args.location, limit=args.limit,
            deadline=time.monotonic() + settings.enrich_deadline_seconds,
            progress=lambda n: progress.advance(task, n)))
    output = {"source": source, "recordings": recordings is not None, "seconds": round(time.monotonic() - started, 3),
              "locations": [summary.to_dict() for summary in summaries]}
    if args.json:
        _print_json(output)
    else:
        _print_table(f"enrich against {source}" + ("" if recordings is not None else " (recordings off)"),
                     ENRICH_COLUMNS, output["locations"])
    return 1 if any(s["status"] == "failed" for s in output["locations"]) else 0


# ---- analyze --------------------------------------------------------------------------------------

ANALYZE_COLUMNS = ["location_id", "claimed", "done", "failed", "retry_later", "released", "batches_submitted",
                   "batches_collected", "input_tokens", "output_tokens", "status", "seconds", "error"]


def cmd_analyze(args: argparse.Namespace) -> int:
    """Analyse due calls with Claude now (the analyze action's service), a bar counting calls; with --json one
    document: the run's summaries plus each location's backlog, failures, tokens, estimated spend (24 h) and
    AI-vs-regex disagreements."""
    from datetime import datetime

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from shared.adapters.analysis_repository import AnalysisRepository
    from shared.domain.call_analysis import PROMPT_VERSION, estimated_cost_usd
    from shared.services.analyze_calls import run_analyze
    from shared.services.doctor import analysis_prices

    if args.limit is not None and args.limit < 1:
        raise OperatorError("--limit must be at least 1")
    if bool(args.again) != bool(args.since):
        raise OperatorError("--again and --since go together: --again --since 2026-11-01T00:00:00Z analyses again "
                            "the calls started since then that this prompt version has not analysed")
    since = None
    if args.since:
        try:
            since = datetime.fromisoformat(args.since.replace("Z", "+00:00"))
        except ValueError:
            raise OperatorError(f"--since must be an ISO 8601 date-time, not {args.since!r}") from None
        if since.tzinfo is None:
            raise OperatorError("--since needs a UTC offset (e.g. 2026-11-01T00:00:00Z)")
    settings, source = connection_settings()
    database = _database(settings)
    repo = AnalysisRepository(database)
    requeued = repo.requeue(args.location, since.isoformat(), PROMPT_VERSION) if since else None
    locations = [row["location_id"] for row in repo.list_integrations(args.location)]
    due = sum(int(repo.location_state(location).get("due") or 0) for location in locations)
    total = min(due, args.limit * max(1, len(locations))) if args.limit else due
    what = f"location {args.location}" if args.location else "every location with analysis on"
    console = _stderr_console()
    started = time.monotonic()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task(f"analysing calls of {what}", total=total or None)
        summaries = _run_showing(progress, lambda: run_analyze(
            database, settings, location_id=args.location, limit=args.limit,
            deadline=time.monotonic() + settings.analysis_deadline_seconds,
            progress=lambda n: progress.advance(task, n)))
    prices = analysis_prices(settings)
    facts = repo.facts([s.location_id for s in summaries])
    for location_facts in facts.values():
        location_facts["estimated_spend_usd_24h"] = estimated_cost_usd(location_facts.get("tokens_24h") or {},
                                                                       **prices)
    output = {"source": source, "model": settings.anthropic_model, "prompt_version": PROMPT_VERSION,
              "prices": prices, "requeued": requeued, "seconds": round(time.monotonic() - started, 3),
              "locations": [summary.to_dict() for summary in summaries], "last_24h": facts}
    if args.json:
        _print_json(output)
    else:
        title = f"analyze against {source} ({settings.anthropic_model}, {PROMPT_VERSION})"
        if requeued is not None:
            title += f": {requeued} call(s) queued again"
        _print_table(title, ANALYZE_COLUMNS, output["locations"])
        for location_id, location_facts in facts.items():
            tokens = location_facts.get("tokens_24h") or {}
            votes = location_facts.get("dispositions_24h") or {}
            print(f"{location_id}: last 24 h {location_facts.get('done_24h')} analysed, "
                  f"{location_facts.get('failed_24h')} failed, {sum(tokens.values())} tokens, about "
                  f"${location_facts['estimated_spend_usd_24h']:.2f}; backlog {location_facts.get('pending')} "
                  f"({location_facts.get('in_batches')} in batches); AI vs regex disagreed "
                  f"{votes.get('disagreed')}/{votes.get('compared')}")
    return 1 if any(s["status"] == "failed" for s in output["locations"]) else 0


# ---- parser -------------------------------------------------------------------------------------

def add_parsers(sub) -> None:
    sync = sub.add_parser("sync", help="push due prospects to GHL now (the sync-prospects-to-ghl service)")
    sync.add_argument("--location", help="only this GHL location id (default: every active internal one)")
    sync.add_argument("--dry-run", action="store_true", help="count and plan; claim, write and push nothing")
    sync.add_argument("--json", action="store_true", help="print the result as JSON")
    sync.set_defaults(func=_guarded(cmd_sync))

    imports = sub.add_parser("import", help="GHL import batches (the process-ghl-import service)")
    actions = imports.add_subparsers(dest="import_command", required=True)
    pull = actions.add_parser("pull", help="create a batch for a location, pull its records and import them")
    pull.add_argument("--location", required=True, help="the GHL location id")
    pull.add_argument("--kinds", help="comma-separated: contacts,calls (default both)")
    pull.add_argument("--since", help="only records changed since this ISO 8601 date-time")
    pull.add_argument("--json", action="store_true")
    pull.set_defaults(func=_guarded(cmd_import_pull))
    process = actions.add_parser("process", help="advance one batch, or every open batch, until done")
    process.add_argument("batch", nargs="?", help="a batch id (default: every open batch)")
    process.add_argument("--json", action="store_true")
    process.set_defaults(func=_guarded(cmd_import_process))
    status = actions.add_parser("status", help="where one batch, or the latest batches, stand")
    status.add_argument("batch", nargs="?", help="a batch id (default: the latest batches)")
    status.add_argument("--limit", type=int, default=20, help="how many of the latest batches (default 20)")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=_guarded(cmd_import_status))

    enrich = sub.add_parser("enrich", help="fetch due calls' transcripts and recordings from GHL now")
    enrich.add_argument("--location", help="only this GHL location id (default: every active one)")
    enrich.add_argument("--limit", type=int, help="at most this many calls per location")
    enrich.add_argument("--json", action="store_true", help="print the result as JSON")
    enrich.set_defaults(func=_guarded(cmd_enrich))

    analyze = sub.add_parser("analyze", help="analyse due calls with Claude now (ai_summary, disposition)")
    analyze.add_argument("--location", help="only this GHL location id (default: every one with analysis on)")
    analyze.add_argument("--limit", type=int, help="at most this many calls per location")
    analyze.add_argument("--json", action="store_true", help="print the result as one JSON document")
    analyze.add_argument("--again", action="store_true",
                         help="first queue again the calls started since --since that this prompt version has not "
                              "analysed (on purpose: each is one more request)")
    analyze.add_argument("--since", help="with --again: ISO 8601 date-time with offset")
    analyze.set_defaults(func=_guarded(cmd_analyze))


def _guarded(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A command whose configuration problems exit 2 and whose refused or failed work exits 1, with one line."""

    def guarded(args: argparse.Namespace) -> int:
        from shared import errors

        try:
            return command(args)
        except OperatorError as exc:
            _report_failure(args, "configuration_error", str(exc))
            return 2
        except errors.BridgeError as exc:
            _report_failure(args, exc.code, exc.message)
            return 1
        except Exception as exc:
            # A bug: the traceback goes to stderr, and a --json caller still gets one JSON document.
            if getattr(args, "json", False):
                _report_failure(args, "internal_error", f"{type(exc).__name__}: {exc}", line=False)
            raise

    return guarded


def _report_failure(args: argparse.Namespace, code: str, message: str, *, line: bool = True) -> None:
    """A command that stops: one line on stderr; with --json, also `{"ok": false, "error": {...}}` on stdout (the
    only document it prints), so a script's json.loads(stdout) works whatever happened."""
    from shared.logs import redact

    message = redact(message)
    if line:
        print(f"ghl-bridge: {code}: {message}" if code != "configuration_error" else f"ghl-bridge: {message}",
              file=sys.stderr)
    if getattr(args, "json", False):
        _print_json({"ok": False, "error": {"code": code, "message": message}})
