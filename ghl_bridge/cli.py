"""`ghl-bridge`: the local stack, the test suite, and the operator commands.

    ghl-bridge stack up [--detach] [--json]   start Postgres, PostgREST, the gateway and every function
    ghl-bridge stack down | status
    ghl-bridge test [pytest args]             the whole test suite (starts its own stack)
    ghl-bridge build <function>|--all [--out DIR]   each function's self-contained deploy folder
    ghl-bridge lock [--upgrade|--check]       refresh (or check) requirements.lock and requirements-dev.lock
    ghl-bridge sync [--location ID] [--dry-run] [--json]
    ghl-bridge import pull --location ID [--kinds contacts,calls] [--since ISO] [--json]
    ghl-bridge import process [BATCH] [--json]
    ghl-bridge import status [BATCH] [--json]
    ghl-bridge replay [--json]                 replay the webhook spool into the database
    ghl-bridge doctor [--location ID] [--json] [--no-ghl]   every location's checks; exit 1 on a FAIL
    ghl-bridge webhook test --location ID [--url URL]      the webhook round trip with a made-up call
    ghl-bridge enrich [--location ID] [--limit N] [--json]   fetch calls' transcripts and recordings
    ghl-bridge location add ID [--name N] [--internal | --client UUID] [--token-env VAR] [--json]
    ghl-bridge location add --from-csv FILE    many locations (columns id, token, name, type, client)
    ghl-bridge location list | enable ID | disable ID | rotate-token ID | map ID [--field f=ID ...]
      (a token comes from stdin or the variable --token-env names, never from the command line)
    ghl-bridge analyze [--location ID] [--limit N] [--json] [--again --since ISO]   analyse calls with Claude
      (operator commands: SUPABASE_URL/SUPABASE_SERVICE_ROLE_KEY, else the running local stack)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading

from ghl_bridge.paths import PROJECT_ROOT


def _stack():
    from ghl_bridge.stack.stack import Stack, StackConfig

    return Stack(StackConfig.for_cli())


def cmd_stack_up(args: argparse.Namespace) -> int:
    stack = _stack()
    info = stack.up()
    if args.json:
        print(json.dumps({k: info[k] for k in info if not k.startswith(("embedded_", "created_", "postgrest_"))},
                         indent=2), flush=True)
    else:
        _print_stack(info)
    if args.detach:
        return 0
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print("Stack running; Ctrl-C stops it.", file=sys.stderr, flush=True)
    try:
        while not stop.wait(1.0):
            dead = [name for name, service in stack.services.items() if not service.is_alive()]
            if dead:
                print(f"stopped unexpectedly: {', '.join(dead)}; logs in {stack.log_dir}", file=sys.stderr)
                return 1
    finally:
        stack.down()
    return 0


def _print_stack(info: dict) -> None:
    print(f"SUPABASE_URL               {info['supabase_url']}")
    print(f"SUPABASE_SERVICE_ROLE_KEY  {info['service_role_key']}")
    print(f"SUPABASE_ANON_KEY          {info['anon_key']}")
    print(f"DATABASE_URL               {info['database_url']}")
    print(f"GHL_API_BASE_URL           {info['ghl_api_base_url']}")
    print(f"GHL_WEBHOOK_SECRET         {info['ghl_webhook_secret']}")
    print(f"SCHEDULER_SECRET           {info['scheduler_secret']}")
    print(f"ANTHROPIC_BASE_URL         {info['anthropic_url']}")
    if info.get("anthropic_api_key"):
        print(f"ANTHROPIC_API_KEY          {info['anthropic_api_key']} (the stack's Anthropic stand-in)")
    if info.get("s3_endpoint_url"):
        print(f"SPOOL_S3_ENDPOINT_URL      {info['s3_endpoint_url']} (moto S3, bucket ghl-webhook-spool)")
    if info.get("cloud_tasks_url"):
        print(f"CLOUD_TASKS_API_URL        {info['cloud_tasks_url']} (Cloud Tasks stand-in, queues ghl-bridge-*)")
    for name, url in info["functions"].items():
        print(f"function {name:<26} {url}")
    sys.stdout.flush()


def cmd_stack_down(args: argparse.Namespace) -> int:
    stopped = _stack().down()
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    return 0


def cmd_stack_status(args: argparse.Namespace) -> int:
    status = _stack().status()
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        services = status["services"]
        if not services:
            print("no stack is running")
        for name, s in services.items():
            print(f"{name:<36} {'running' if s['running'] else 'STOPPED':<8} port {s['port']}  pid {s['pid']}")
        if services and status.get("anthropic_url"):
            print(f"{'ANTHROPIC_BASE_URL':<36} {status['anthropic_url']}")
    return 0 if all(s["running"] for s in status["services"].values()) else 1


def cmd_test(args: argparse.Namespace) -> int:
    os.chdir(PROJECT_ROOT)
    os.execv(sys.executable, [sys.executable, "-m", "pytest", *args.pytest_args])
    return 0  # not reached


def cmd_build(args: argparse.Namespace) -> int:
    from ghl_bridge import build

    return build.run(args)


def cmd_lock(args: argparse.Namespace) -> int:
    from ghl_bridge import lock

    return lock.run(args)


def cmd_replay(args: argparse.Namespace) -> int:
    """Replay the webhook spool (SPOOL_S3_* and AWS_* from the environment, else the local stack's moto S3)."""
    from ghl_bridge import operations
    from shared.adapters.object_spool import spool_from_settings
    from shared.services.replay_spool import replay_from_settings

    settings, source = operations.connection_settings()
    if not settings.spool_s3_bucket and not os.environ.get("SUPABASE_URL"):
        info = operations._local_stack_info() or {}
        if info.get("s3_endpoint_url"):
            settings = settings.model_copy(update={"spool_s3_endpoint_url": info["s3_endpoint_url"],
                                                   "spool_s3_bucket": "ghl-webhook-spool"})
            for name, value in (("AWS_ACCESS_KEY_ID", "local"), ("AWS_SECRET_ACCESS_KEY", "local")):
                os.environ.setdefault(name, value)  # moto accepts any credentials
    spool = spool_from_settings(settings)
    if spool is None:
        raise operations.OperatorError("no spool configured: set SPOOL_S3_BUCKET (and SPOOL_S3_ENDPOINT_URL, "
                                       "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) or start the local stack")
    report = replay_from_settings(settings, operations._database(settings), spool).to_dict()
    report["source"] = source
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"replayed {report['replayed']} ({', '.join(f'{k} {v}' for k, v in report['outcomes'].items()) or '-'}),"
              f" rejected {report['rejected']}, kept {report['kept']} of {report['listed']} spooled request(s)"
              f" against {source} in {report['seconds']} s"
              + (f"; stopped: {report['stopped_by']}" if report["stopped_by"] else "")
              + (f"; unreadable objects kept: {', '.join(report['unreadable'])}" if report["unreadable"] else ""))
    return 1 if report["stopped_by"] or report["unreadable"] else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ghl-bridge", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    stack = sub.add_parser("stack", help="the local stack").add_subparsers(dest="stack_command", required=True)
    up = stack.add_parser("up", help="start the local stack (foreground unless --detach)")
    up.add_argument("--detach", action="store_true", help="return once everything answers")
    up.add_argument("--json", action="store_true", help="print URLs and keys as JSON")
    up.set_defaults(func=cmd_stack_up)
    stack.add_parser("down", help="stop everything the stack started").set_defaults(func=cmd_stack_down)
    status = stack.add_parser("status", help="what runs")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_stack_status)

    test = sub.add_parser("test", help="run the test suite (pytest; extra arguments pass through)")
    test.add_argument("pytest_args", nargs=argparse.REMAINDER)
    test.set_defaults(func=cmd_test)

    from ghl_bridge.build import add_arguments as add_build_arguments

    build = sub.add_parser("build", help="build deployable artifact folders (main.py + shared/ + requirements.txt)")
    add_build_arguments(build)
    build.set_defaults(func=cmd_build)

    from ghl_bridge.lock import add_arguments as add_lock_arguments

    locks = sub.add_parser("lock", help="refresh requirements.lock and requirements-dev.lock from pyproject.toml (uv)")
    add_lock_arguments(locks)
    locks.set_defaults(func=cmd_lock)

    from ghl_bridge import operations

    operations.add_parsers(sub)
    replay = sub.add_parser("replay", help="replay the webhook spool (requests kept while the database was down)")
    replay.add_argument("--json", action="store_true", help="print the result as JSON")
    replay.set_defaults(func=operations._guarded(cmd_replay))

    from ghl_bridge import doctor

    doctor.add_parsers(sub)

    from ghl_bridge import locations

    locations.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from shared.logs import configure_logging

    # Before any command runs: every log line of this process (the services', the GHL client's retries) goes to
    # stderr, so stdout carries only results (exactly one JSON document with --json). Warnings only, unless
    # LOG_LEVEL says otherwise.
    configure_logging(os.environ.get("LOG_LEVEL", "WARNING"), to_stderr=True)
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["test"]:  # everything after `test` is pytest's, options first included (`test -q -k x`)
        return cmd_test(argparse.Namespace(pytest_args=argv[1:]))
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except RuntimeError as exc:  # the stack's and the build's own errors (operator commands report theirs)
        from ghl_bridge.operations import _report_failure

        _report_failure(args, "error", str(exc), line=False)
        print(f"ghl-bridge: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
