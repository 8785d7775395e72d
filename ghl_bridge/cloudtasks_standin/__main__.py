"""`python -m ghl_bridge.cloudtasks_standin`: serve the Cloud Tasks stand-in over HTTP (uvicorn, one process).

The OIDC token it sends for tasks that ask for one comes from the environment (CLOUDTASKS_STANDIN_OIDC_TOKEN),
never from the command line (argv is visible to every user of the machine)."""

from __future__ import annotations

import argparse
import os


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ghl_bridge.cloudtasks_standin", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=54343)
    parser.add_argument("--dedup-window-seconds", type=float, default=4 * 3600,
                        help="how long an ended task's name stays taken")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)

    import uvicorn

    from ghl_bridge.cloudtasks_standin.app import create_app

    app = create_app(oidc_token=os.environ.get("CLOUDTASKS_STANDIN_OIDC_TOKEN") or None,
                     dedup_window_seconds=args.dedup_window_seconds)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False,
                backlog=2048, timeout_keep_alive=30)


if __name__ == "__main__":
    main()
