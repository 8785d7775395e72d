"""Operator commands for setting up and watching a deployment:

    ghl-bridge doctor [--location ID] [--json] [--no-ghl]
        every location's checks (shared/services/doctor.py) as one table per location; exit 0 when nothing
        FAILs, 1 otherwise (2: configuration missing), so it can run in CI or cron
    ghl-bridge webhook test --location ID [--url URL] [--keep]
        posts the two sample hits of one made-up call to the webhook, reads the row back, prints it, deletes it

Both connect like the other operator commands (ghl_bridge/operations.py): SUPABASE_URL and
SUPABASE_SERVICE_ROLE_KEY from the environment, else the running local stack.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from typing import Any

from ghl_bridge import operations
from ghl_bridge.paths import PROJECT_ROOT

STATUS_STYLE = {"OK": "green", "WARN": "yellow", "FAIL": "bold red"}
WEBHOOK_TEST_PREFIX = "ghl-bridge-webhook-test-"
SAMPLE_HITS = ("call-completed.json", "disposition.json")


def _spool(settings):
    """The configured spool (SPOOL_S3_*), else the local stack's moto S3 when working against the local stack."""
    from shared.adapters.object_spool import spool_from_settings

    if not settings.spool_s3_bucket and not os.environ.get("SUPABASE_URL"):
        info = operations._local_stack_info() or {}
        if info.get("s3_endpoint_url"):
            settings = settings.model_copy(update={"spool_s3_endpoint_url": info["s3_endpoint_url"],
                                                   "spool_s3_bucket": "ghl-webhook-spool"})
            for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
                os.environ.setdefault(name, "local")  # moto accepts any credentials
    return spool_from_settings(settings)


# ---- doctor ---------------------------------------------------------------------------------------------------------

def cmd_doctor(args: argparse.Namespace) -> int:
    from shared.adapters.doctor_repository import DoctorRepository
    from shared.services import doctor

    settings, source = operations.connection_settings()
    repo = DoctorRepository(operations._database(settings))
    report = operations._with_spinner(
        "checking " + (f"location {args.location}" if args.location else "every location"),
        lambda: doctor.run_doctor(repo, location_id=args.location, check_ghl=not args.no_ghl,
                                  ghl_factory=doctor.doctor_ghl_factory(settings),
                                  ghl_reserve=settings.ghl_daily_budget_reserve, spool=_spool(settings),
                                  analysis_prices=doctor.analysis_prices(settings)))
    result = {**report.to_dict(), "source": source}
    if args.json:
        operations._print_json(result)
    else:
        _print_report(result)
    return 1 if report.status == "FAIL" else 0


def _print_report(result: dict[str, Any]) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console()
    console = Console(width=console.width if console.is_terminal else 160)

    def table(title: str, status: str, groups: list[dict]) -> None:
        grid = Table(title=Text.assemble(title, "  ", (status, STATUS_STYLE[status])), title_justify="left",
                     box=box.SIMPLE_HEAD, show_lines=False)
        grid.add_column("group", no_wrap=True)
        grid.add_column("check")
        grid.add_column("status", no_wrap=True)
        grid.add_column("detail", overflow="fold", ratio=3)
        grid.add_column("what to do", overflow="fold", ratio=2)
        for group in groups:
            for check in group["checks"]:
                grid.add_row(group["name"], check["name"], Text(check["status"], STATUS_STYLE[check["status"]]),
                             check["detail"], check["fix"] or "")
        console.print(grid)

    for location in result["locations"]:
        what = ", ".join(filter(None, [location.get("name"), location.get("integration_type"),
                                       None if location["is_active"] else "inactive"]))
        table(f"{location['location_id']}" + (f" ({what})" if what else ""), location["status"], location["groups"])
    if not result["locations"]:
        console.print("no GHL integration is configured (ghl_integrations is empty)")
    general_status = max((g["status"] for g in result["general"]), key=["OK", "WARN", "FAIL"].index, default="OK")
    table("general", general_status, result["general"])
    counts = {s: sum(c["status"] == s for loc in result["locations"] for g in loc["groups"] for c in g["checks"])
              + sum(c["status"] == s for g in result["general"] for c in g["checks"]) for s in ("FAIL", "WARN")}
    console.print(Text.assemble(
        "overall: ", (result["status"], STATUS_STYLE[result["status"]]),
        f" ({counts['FAIL']} FAIL, {counts['WARN']} WARN) against {result['source']}: "
        f"{result['db_round_trips']} database round trip(s), "
        + (f"{result['ghl_requests']} GHL request(s)" if result["ghl_checked"] else "GHL not asked (--no-ghl)")
        + f", {result['seconds']} s"))


# ---- webhook test ---------------------------------------------------------------------------------------------------

def _sample_hits(call_id: str, location_id: str) -> list[dict[str, Any]]:
    """The two sample hits (tests/fixtures/webhooks) of one made-up call."""
    hits = []
    for name in SAMPLE_HITS:
        body = json.loads((PROJECT_ROOT / "tests" / "fixtures" / "webhooks" / name).read_text())
        body.update(callId=call_id, locationId=location_id)
        body.pop("contactId", None)  # a made-up call: never linked to a real contact by its GHL id
        hits.append(body)
    return hits


def _webhook_target(url: str | None) -> tuple[str, str]:
    """(webhook URL, secret): --url / GHL_WEBHOOK_SECRET, else the running local stack's."""
    secret = os.environ.get("GHL_WEBHOOK_SECRET")
    if url and secret:
        return url, secret
    info = operations._local_stack_info()
    if info is None:
        missing = " and ".join(n for n, v in (("--url", url), ("GHL_WEBHOOK_SECRET", secret)) if not v)
        raise operations.OperatorError(f"give {missing} (a deployed webhook), or start the local stack: "
                                       "ghl-bridge stack up")
    return url or info["functions"]["ghl-call-webhook"], secret or info["ghl_webhook_secret"]


ROW_COLUMNS = ("external_call_id", "ghl_location_id", "direction", "from_number", "to_number", "call_status",
               "connected", "duration_seconds", "started_at", "disposition", "disposition_source",
               "disposition_label", "notes")


def cmd_webhook_test(args: argparse.Namespace) -> int:
    import httpx

    from shared.adapters.supabase_db import map_database_error

    settings, source = operations.connection_settings()
    url, secret = _webhook_target(args.url)
    call_id = WEBHOOK_TEST_PREFIX + uuid.uuid4().hex[:12]
    database = operations._database(settings)
    answers = []
    with httpx.Client(timeout=30.0) as http:
        for body in _sample_hits(call_id, args.location):
            try:
                response = http.post(url, json=body, headers={"X-Webhook-Secret": secret})
            except httpx.HTTPError as exc:
                raise operations.OperatorError(f"could not reach {url}: {type(exc).__name__}") from exc
            try:
                answer = response.json()
            except ValueError:
                answer = {"body": response.text[:300]}
            answers.append({"status": response.status_code, **answer})
    row, table, deleted = None, None, False
    try:
        for table in ("sales_calls", "calls"):
            found = database.table(table).select("*").eq("external_call_id", call_id).execute().data
            if found:
                row = found[0]
                break
        if row is not None and not args.keep:
            database.table(table).delete().eq("external_call_id", call_id).execute()
            deleted = True
    except Exception as exc:  # noqa: BLE001 - mapped like every database error
        raise map_database_error(exc) from exc
    ok = all(a["status"] == 200 for a in answers) and row is not None and row.get("call_status") is not None \
        and row.get("disposition") is not None
    result = {"ok": ok, "source": source, "url": url, "call_id": call_id, "answers": answers, "table": table,
              "row": {k: row.get(k) for k in ROW_COLUMNS} if row else None, "deleted": deleted,
              "note": "the event log (ghl_webhook_events, append-only) keeps this call's two deliveries"}
    if args.json:
        operations._print_json(result)
    else:
        for name, answer in zip(SAMPLE_HITS, answers):
            body = {k: v for k, v in answer.items() if k != "status"}
            print(f"POST {name:<20} -> {answer['status']} {json.dumps(body)}")
        if row is None:
            print(f"no row for {call_id} in sales_calls or calls" + _hint(answers))
        else:
            operations._print_table(f"stored in {table}", ["column", "value"],
                                    [{"column": k, "value": row.get(k)} for k in ROW_COLUMNS])
            print(f"{'deleted the test row' if deleted else 'kept the test row (--keep)'}; {result['note']}")
        print("round trip OK" if ok else "round trip FAILED", file=sys.stderr if not ok else sys.stdout)
    return 0 if ok else 1


def _hint(answers: list[dict]) -> str:
    statuses = {a["status"] for a in answers}
    if 401 in statuses:
        return ": the webhook refused the secret (GHL_WEBHOOK_SECRET must be the function's)"
    if 422 in statuses:
        return ": no active integration for this location (ghl_integrations)"
    return ""


# ---- parser ---------------------------------------------------------------------------------------------------------

def add_parsers(sub) -> None:
    doctor = sub.add_parser("doctor", help="check every location's set-up and health (exit 1 when a check FAILs)")
    doctor.add_argument("--location", help="only this GHL location id (default: every integration)")
    doctor.add_argument("--json", action="store_true", help="print the report as JSON")
    doctor.add_argument("--no-ghl", action="store_true",
                        help="send no GHL request (skips the token, budget and custom field id checks)")
    doctor.set_defaults(func=operations._guarded(cmd_doctor))

    webhook = sub.add_parser("webhook", help="the call webhook").add_subparsers(dest="webhook_command", required=True)
    test = webhook.add_parser("test", help="post the two sample hits of a made-up call, read the row back, delete it")
    test.add_argument("--location", required=True, help="a GHL location id with an active integration")
    test.add_argument("--url", help="the webhook's URL (default: the local stack's ghl-call-webhook)")
    test.add_argument("--keep", action="store_true", help="keep the test row (default: deleted afterwards)")
    test.add_argument("--json", action="store_true", help="print the result as JSON")
    test.set_defaults(func=operations._guarded(cmd_webhook_test))
