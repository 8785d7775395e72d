"""`python -m ghl_bridge.anthropic_standin`: serve the Anthropic stand-in over HTTP (uvicorn, one process, asyncio).

API keys from ANTHROPIC_STANDIN_API_KEYS (comma-separated), never from the command line."""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ghl_bridge.anthropic_standin", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=54342)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every API answer")
    parser.add_argument("--batch-delay", type=float, default=0.0, help="seconds before a batch can end")
    parser.add_argument("--requests-per-minute", type=int, default=None)
    parser.add_argument("--input-tokens-per-minute", type=int, default=None)
    parser.add_argument("--output-tokens-per-minute", type=int, default=None)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)

    import uvicorn

    from ghl_bridge.anthropic_standin.app import create_app

    if not os.environ.get("ANTHROPIC_STANDIN_API_KEYS", "").strip():
        print("anthropic stand-in: ANTHROPIC_STANDIN_API_KEYS is empty: every API request will answer 401",
              file=sys.stderr)
    limits = {name: value for name, value in (("requests_per_minute", args.requests_per_minute),
                                              ("input_tokens_per_minute", args.input_tokens_per_minute),
                                              ("output_tokens_per_minute", args.output_tokens_per_minute))
              if value is not None}
    app = create_app(latency_ms=args.latency_ms, batch_delay_seconds=args.batch_delay, limits=limits)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False,
                backlog=1024, timeout_keep_alive=30)


if __name__ == "__main__":
    main()
