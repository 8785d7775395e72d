"""`ghl-bridge location ...`: onboarding GHL locations (the service: shared/services/onboarding.py).

    ghl-bridge location add LOCATION_ID [--name NAME] [--internal | --client CLIENT_ID] [--token-env VAR] [--json]
    ghl-bridge location add --from-csv FILE [--json]      columns id, token, name, type, client (chmod 600)
    ghl-bridge location list [--json]
    ghl-bridge location enable|disable LOCATION_ID [--json]
    ghl-bridge location rotate-token LOCATION_ID [--token-env VAR] [--json]
    ghl-bridge location map LOCATION_ID [--field PROSPECT_FIELD=GHL_FIELD_ID ...] [--json]

A token is read from standard input (a prompt without echo on a terminal) or from the environment variable
--token-env names; never from the command line, where it would show in `ps` and the shell's history. It is
checked against GHL before anything is stored. Connects like the other operator commands (SUPABASE_URL and
SUPABASE_SERVICE_ROLE_KEY, else the running local stack).
"""

from __future__ import annotations

import argparse
import csv
import getpass
import os
import re
import stat
import sys
from pathlib import Path
from typing import Any

from ghl_bridge import operations

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
LIST_COLUMNS = ["location_id", "name", "integration_type", "client", "is_active", "time_zone", "last_webhook_at",
                "token_checked_at"]


def _ports(settings):
    from shared.adapters.integration_repository import IntegrationRepository
    from shared.services import import_batches

    return IntegrationRepository(operations._database(settings)), import_batches.ghl_client_factory(settings)


def _read_token(args: argparse.Namespace, location_id: str) -> str:
    """The token from the variable --token-env names, else stdin (a no-echo prompt on a terminal)."""
    from shared.logs import register_secret

    if getattr(args, "token", None):
        raise operations.OperatorError(
            "a token is never taken from the command line (it shows in `ps` and lands in the shell's history): "
            "pipe it on stdin or name a variable holding it with --token-env. Treat the token you typed as "
            "exposed: make a new one in GHL and revoke that one")
    if args.token_env:
        if not _ENV_NAME.match(args.token_env):
            raise operations.OperatorError("--token-env takes the NAME of an environment variable holding the token "
                                           "(e.g. GHL_TOKEN), not the token itself (the value given is not shown)")
        token = os.environ.get(args.token_env, "").strip()
        if not token:
            raise operations.OperatorError(f"the environment variable {args.token_env} (--token-env) is not set "
                                           "or empty")
    elif sys.stdin is not None and sys.stdin.isatty():
        token = getpass.getpass(f"GHL Private Integration token for {location_id} (not shown): ").strip()
    else:
        token = (sys.stdin.readline() if sys.stdin is not None else "").strip()
    if not token:
        raise operations.OperatorError("no token: pipe it on stdin (e.g. `ghl-bridge location add ID < token-file`) "
                                       "or name a variable holding it with --token-env")
    register_secret(token)  # masked in any log line from here on
    return token


# ---- what to set up in GHL ------------------------------------------------------------------------------------------

def _webhook_url(source: str) -> str | None:
    """Where GHL must post: GHL_WEBHOOK_URL, else the deployed function's URL (GCP_PROJECT/GCP_REGION, see
    docs/deploy.md), else the local stack's webhook."""
    if os.environ.get("GHL_WEBHOOK_URL"):
        return os.environ["GHL_WEBHOOK_URL"]
    project, region = os.environ.get("GCP_PROJECT"), os.environ.get("GCP_REGION")
    if project and region:
        return f"https://{region}-{project}.cloudfunctions.net/ghl-call-webhook"
    if source.startswith("local stack"):
        info = operations._local_stack_info() or {}
        return (info.get("functions") or {}).get("ghl-call-webhook")
    return None


def setup_steps(location_id: str, source: str) -> dict[str, Any]:
    """The GHL side of a location (docs/webhook.md): the webhook, its header, the two workflows, the test line."""
    url = _webhook_url(source)
    local = source.startswith("local stack")
    secret_source = ("the local stack's GHL_WEBHOOK_SECRET (printed by `ghl-bridge stack up`)" if local else
                     "GHL_WEBHOOK_SECRET of the deployed webhook (Secret Manager: ghl-bridge-ghl-webhook-secret)")
    test = f"ghl-bridge webhook test --location {location_id}"
    if not local:
        test = f"GHL_WEBHOOK_SECRET=... {test} --url {url or 'WEBHOOK_URL'}"
    return {
        "webhook_url": url or ("the deployed ghl-call-webhook's URL (set GHL_WEBHOOK_URL, or GCP_PROJECT and "
                               "GCP_REGION)"),
        "header": "X-Webhook-Secret", "header_value_source": secret_source,
        "workflows": [
            {"name": "Call Completed", "trigger": "Call Status (call completed)", "action": "Webhook, POST",
             "fields": ["callId ({{message.id}})", "locationId", "contactId", "callStatus", "direction", "from", "to",
                        "duration", "callStartTime", "recordingUrl"]},
            {"name": "Disposition", "trigger": "the caller picks a disposition", "action": "Webhook, POST",
             "fields": ["callId (the same call id)", "locationId", "contactId", "disposition", "notes",
                        "transcription"]},
        ],
        "test": test, "doctor": f"ghl-bridge doctor --location {location_id}",
    }


def _print_steps(steps: dict[str, Any]) -> None:
    print("\nNow in GHL (Automation > Workflows; details: docs/webhook.md, docs/onboarding.md):")
    print(f"  webhook URL   {steps['webhook_url']}")
    print(f"  header        {steps['header']}: <{steps['header_value_source']}>")
    for number, flow in enumerate(steps["workflows"], 1):
        print(f"  workflow {number}    \"{flow['name']}\": trigger {flow['trigger']}; action {flow['action']} "
              f"with the body fields {', '.join(flow['fields'])}")
    print(f"Then prove it:  {steps['test']}")
    print(f"and check:      {steps['doctor']}")


# ---- add ------------------------------------------------------------------------------------------------------------

def _print_added(result: dict[str, Any]) -> None:
    kind = result["integration_type"] + (f" (client {result['client_id']})" if result.get("client_id") else "")
    print(f"{result['location_id']}: {result['outcome']} - GHL name {result['location_name']!r}, time zone "
          f"{result['time_zone']}, {kind}, {'active' if result['is_active'] else 'inactive'}")
    if not result["fields_listed"]:
        print(f"custom fields: not proposed: {result['fields_problem']}")
        return
    if result["matched"]:
        print("custom field mapping proposed (prospect field -> GHL field):")
        for m in result["matched"]:
            print(f"  {m['prospect_field']:<14} -> {m['ghl_field_id']} ({m['ghl_field_name']})")
    stored = result["custom_field_mapping"]
    if stored != result["proposed"]:
        print("stored mapping (entries already set win): "
              + ", ".join(f"{k}={v}" for k, v in sorted(stored.items())))
    if result["unmatched_prospect_fields"]:
        print("no GHL field found for: " + ", ".join(result["unmatched_prospect_fields"])
              + f"  (map one: ghl-bridge location map {result['location_id']} --field FIELD=GHL_FIELD_ID)")
    if result["unmatched_ghl_fields"]:
        print("GHL fields nothing maps to: "
              + ", ".join(f"{f['name']} ({f['id']})" for f in result["unmatched_ghl_fields"]))


def _kind(args: argparse.Namespace) -> tuple[str | None, str | None]:
    if args.client:
        return "client", args.client
    return ("internal", None) if args.internal else (None, None)


def cmd_add(args: argparse.Namespace) -> int:
    from shared.services import onboarding

    if args.from_csv:
        if args.token:
            _read_token(args, "")  # refuses a token on the command line
        if args.location_id or args.token_env or args.name or args.client or args.internal:
            raise operations.OperatorError("--from-csv takes everything from the file: no LOCATION_ID, --name, "
                                           "--internal, --client or --token-env with it")
        return _add_from_csv(args)
    if not args.location_id:
        raise operations.OperatorError("give a LOCATION_ID (or --from-csv FILE)")
    onboarding.validate_location_id(args.location_id)
    token = _read_token(args, args.location_id)
    settings, source = operations.connection_settings()
    repo, ghl = _ports(settings)
    integration_type, client_id = _kind(args)
    result = operations._with_spinner(
        f"checking the token with GHL and adding {args.location_id}",
        lambda: onboarding.add_location(repo, ghl, location_id=args.location_id, token=token, name=args.name,
                                        integration_type=integration_type, client_id=client_id))
    result["source"] = source
    result["setup"] = setup_steps(args.location_id, source)
    if args.json:
        operations._print_json(result)
    else:
        _print_added(result)
        _print_steps(result["setup"])
    return 0


def _check_private(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise operations.OperatorError(f"cannot read {path}: {exc.strerror}") from None
    if mode & (stat.S_IRGRP | stat.S_IROTH | stat.S_IWGRP | stat.S_IWOTH):
        raise operations.OperatorError(
            f"{path} holds tokens and is readable by other users (mode {stat.filemode(mode)}): "
            f"run `chmod 600 {path}` and try again")


CSV_COLUMNS = ("id", "token", "name", "type", "client")


def _read_csv(path: Path) -> list[dict[str, str]]:
    _check_private(path)
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        headers = [h.strip().lower() for h in reader.fieldnames or []]
        missing = [c for c in ("id", "token") if c not in headers]
        if missing:
            raise operations.OperatorError(f"{path}: the header row must name the columns {', '.join(CSV_COLUMNS)} "
                                           f"(missing: {', '.join(missing)})")
        unknown = [h for h in headers if h not in CSV_COLUMNS]
        if unknown:
            raise operations.OperatorError(f"{path}: unknown column(s) {', '.join(unknown)} "
                                           f"(columns: {', '.join(CSV_COLUMNS)})")
        rows = []
        for raw in reader:
            row = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items() if k is not None}
            if any(row.values()):
                rows.append(row)
    return rows


def _add_from_csv(args: argparse.Namespace) -> int:
    import asyncio

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from shared.logs import register_secret
    from shared.services import onboarding

    if args.concurrency < 1:
        raise operations.OperatorError("--concurrency must be at least 1")
    path = Path(args.from_csv)
    rows = _read_csv(path)
    for row in rows:
        register_secret(row.get("token"))
    settings, source = operations.connection_settings()
    repo, ghl = _ports(settings)
    requests = [{"location_id": row.get("id", ""), "token": row.get("token", ""), "name": row.get("name") or None,
                 "integration_type": (row.get("type") or "").lower() or ("client" if row.get("client") else None),
                 "client_id": row.get("client") or None} for row in rows]
    console = operations._stderr_console()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task(f"adding {len(rows)} location(s) from {path.name}", total=len(rows))

        def done(index: int, result: dict[str, Any]) -> None:
            if not args.json:
                print(_csv_line(_row_result(index, result)), flush=True)  # above the bar (rich redirects stdout)
            progress.advance(task)

        added = operations._run_showing(progress, lambda: asyncio.run(onboarding.add_locations(
            repo, ghl, requests, concurrency=args.concurrency,
            on_done=done)))
    results = [_row_result(index, result) for index, result in enumerate(added)]
    failed = [r for r in results if not r["ok"]]
    output = {"ok": not failed, "source": source, "file": str(path), "rows": results,
              "added": sum(r["ok"] for r in results), "failed": len(failed)}
    if args.json:
        operations._print_json(output)
    else:
        print(f"{output['added']} of {len(results)} row(s) added or already up to date, {len(failed)} failed "
              f"(against {source}); next for each: the workflows in docs/onboarding.md, then "
              "`ghl-bridge webhook test --location ID`")
    return 1 if failed else 0


def _row_result(index: int, result: dict[str, Any]) -> dict[str, Any]:
    line = {"line": index + 2, "location_id": result.get("location_id") or "", "ok": result["ok"]}  # 1: the header
    if not result["ok"]:
        return {**line, "error": result["error"]}
    return {**line, "outcome": result["outcome"], "location_name": result["location_name"],
            "time_zone": result["time_zone"], "mapped": len(result["custom_field_mapping"]),
            "unmatched_prospect_fields": result["unmatched_prospect_fields"]}


def _csv_line(line: dict[str, Any]) -> str:
    where = f"line {line['line']} {line['location_id'] or '(no id)'}"
    if not line["ok"]:
        return f"{where}: FAILED {line['error']['code']}: {line['error']['message']}"
    return (f"{where}: {line['outcome']} ({line['location_name']!r}, {line['time_zone']}, "
            f"{line['mapped']} custom field(s) mapped"
            + (f"; no GHL field for {', '.join(line['unmatched_prospect_fields'])}"
               if line["unmatched_prospect_fields"] else "") + ")")


# ---- list, enable/disable, rotate-token, map ------------------------------------------------------------------------

def cmd_list(args: argparse.Namespace) -> int:
    from shared.services import onboarding

    settings, source = operations.connection_settings()
    repo, _ = _ports(settings)
    result = {**onboarding.list_locations(repo), "source": source}
    if args.json:
        operations._print_json(result)
    else:
        rows = [{**r, "client": r.get("client_name") or r.get("client_id"),
                 "name": r.get("name") or r.get("location_name"),
                 "is_active": "yes" if r["is_active"] else "NO"} for r in result["locations"]]
        operations._print_table(f"GHL locations ({source})", LIST_COLUMNS, rows)
    return 0


def cmd_set_active(args: argparse.Namespace) -> int:
    from shared.services import onboarding

    settings, source = operations.connection_settings()
    repo, _ = _ports(settings)
    result = {**onboarding.set_active(repo, location_id=args.location_id, active=args.active), "source": source}
    if args.json:
        operations._print_json(result)
    else:
        state = "active" if result["is_active"] else "inactive (webhooks answered 422, sync and import skip it)"
        print(f"{args.location_id}: {state}")
    return 0


def cmd_rotate_token(args: argparse.Namespace) -> int:
    from shared.services import onboarding

    onboarding.validate_location_id(args.location_id)
    settings, source = operations.connection_settings()
    repo, ghl = _ports(settings)
    token = _read_token(args, args.location_id)
    result = operations._with_spinner(
        f"checking the new token of {args.location_id} with GHL",
        lambda: onboarding.rotate_token(repo, ghl, location_id=args.location_id, token=token))
    result["source"] = source
    if args.json:
        operations._print_json(result)
    else:
        print(f"{args.location_id}: GHL accepted the new token ({result['location_name']!r}, {result['time_zone']}); "
              "it replaced the old one. Revoke the old one in GHL (Settings > Private Integrations).")
    return 0


def _parse_fields(values: list[str]) -> dict[str, str | None]:
    entries: dict[str, str | None] = {}
    for value in values:
        key, sep, field_id = value.partition("=")
        if not sep or not key.strip():
            raise operations.OperatorError(f"--field {value!r}: write PROSPECT_FIELD=GHL_FIELD_ID "
                                           "(PROSPECT_FIELD= removes the entry)")
        entries[key.strip()] = field_id.strip() or None
    return entries


def cmd_map(args: argparse.Namespace) -> int:
    from shared.services import onboarding

    entries = _parse_fields(args.field or [])
    settings, source = operations.connection_settings()
    repo, ghl = _ports(settings)
    result = operations._with_spinner(
        f"reading the custom fields of {args.location_id} from GHL",
        lambda: onboarding.map_fields(repo, ghl, location_id=args.location_id, entries=entries))
    result["source"] = source
    if args.json:
        operations._print_json(result)
    else:
        if result["changed"]:
            print(f"{args.location_id}: changed {', '.join(result['changed'])}")
        operations._print_table(f"custom field mapping of {args.location_id}",
                                ["prospect_field", "ghl_field_id", "ghl_field_name"], result["mapped"])
        spare = [f for f in result["unmatched_ghl_fields"]]
        if spare:
            print("the location's other custom fields: " + ", ".join(f"{f['name']} ({f['id']})" for f in spare))
    return 0


# ---- parser ---------------------------------------------------------------------------------------------------------

def add_parsers(sub) -> None:
    guarded = operations._guarded
    location = sub.add_parser("location", help="onboard and manage GHL locations (token checked with GHL first)")
    actions = location.add_subparsers(dest="location_command", required=True)

    add = actions.add_parser("add", allow_abbrev=False,
                             help="check a location's token with GHL, propose its custom field mapping, store it "
                                  "(again: nothing changes)",
                             description="The token is read from stdin or from --token-env, never from argv.")
    add.add_argument("location_id", nargs="?", metavar="LOCATION_ID", help="the GHL location (sub-account) id")
    add.add_argument("--name", help="the portal's name for it (default: GHL's name)")
    kind = add.add_mutually_exclusive_group()
    kind.add_argument("--internal", action="store_true", help="an internal sales location (the default when new)")
    kind.add_argument("--client", metavar="CLIENT_ID", help="a client's location: the portal client's id (UUID)")
    add.add_argument("--token-env", metavar="VAR", help="read the token from this environment variable "
                                                        "(default: stdin)")
    add.add_argument("--token", help=argparse.SUPPRESS)  # refused with an explanation, never used
    add.add_argument("--from-csv", metavar="FILE", help="add every row of FILE (columns id, token, name, type, "
                                                        "client; mode 600)")
    add.add_argument("--concurrency", type=int, default=8, help=argparse.SUPPRESS)  # --from-csv: rows at once
    add.add_argument("--json", action="store_true", help="print the result as JSON")
    add.set_defaults(func=guarded(cmd_add))

    listing = actions.add_parser("list", help="every location: type, client, active, last webhook, token checked")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=guarded(cmd_list))

    for name, active in (("enable", True), ("disable", False)):
        toggle = actions.add_parser(name, help=f"{name} a location (an inactive one: webhooks 422, no sync/import)")
        toggle.add_argument("location_id", metavar="LOCATION_ID")
        toggle.add_argument("--json", action="store_true")
        toggle.set_defaults(func=guarded(cmd_set_active), active=active)

    rotate = actions.add_parser("rotate-token", allow_abbrev=False,
                                help="replace a location's token once GHL accepts the new one")
    rotate.add_argument("location_id", metavar="LOCATION_ID")
    rotate.add_argument("--token-env", metavar="VAR", help="read the new token from this variable (default: stdin)")
    rotate.add_argument("--token", help=argparse.SUPPRESS)  # refused with an explanation, never used
    rotate.add_argument("--json", action="store_true")
    rotate.set_defaults(func=guarded(cmd_rotate_token))

    mapping = actions.add_parser("map", help="show or change a location's custom_field_mapping (checked with GHL)")
    mapping.add_argument("location_id", metavar="LOCATION_ID")
    mapping.add_argument("--field", action="append", metavar="PROSPECT_FIELD=GHL_FIELD_ID",
                         help="set one entry (the id or fieldKey of one of the location's custom fields); "
                              "PROSPECT_FIELD= removes it; repeatable")
    mapping.add_argument("--json", action="store_true")
    mapping.set_defaults(func=guarded(cmd_map))
