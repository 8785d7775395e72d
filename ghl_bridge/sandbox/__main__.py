"""`python -m ghl_bridge.sandbox`: serve the GHL sandbox over HTTP (uvicorn, one process, asyncio)."""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ghl_bridge.sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=54340)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every GHL answer")
    parser.add_argument("--burst-limit", type=int, default=100, help="requests per burst window and location")
    parser.add_argument("--burst-window-ms", type=int, default=10_000)
    parser.add_argument("--daily-limit", type=int, default=200_000, help="requests per day and location")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)

    import uvicorn

    from ghl_bridge.sandbox.app import create_app

    app = create_app(burst_limit=args.burst_limit, burst_window_ms=args.burst_window_ms,
                     daily_limit=args.daily_limit, latency_ms=args.latency_ms)
    # The contract is loaded before the first request, so a missing spec fails at start-up.
    from ghl_bridge.sandbox import contract

    for family in contract.SPEC_FILES:
        contract.openapi_for(family)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False,
                backlog=1024, timeout_keep_alive=30)


if __name__ == "__main__":
    main()
