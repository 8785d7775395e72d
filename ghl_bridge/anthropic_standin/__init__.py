"""A local stand-in for Anthropic's API (Messages and Message Batches), for tests, benchmarks and the local stack.

    ANTHROPIC_STANDIN_API_KEYS=<key>[,<key>...] python -m ghl_bridge.anthropic_standin --port 54342
        [--host 127.0.0.1] [--latency-ms 0] [--batch-delay 0] [--requests-per-minute 4000]
        [--input-tokens-per-minute 2000000] [--output-tokens-per-minute 400000]

The official `anthropic` SDK talks to it unchanged: anthropic.Anthropic(base_url=<its url>, api_key=<a key>), or
ANTHROPIC_BASE_URL / ANTHROPIC_API_KEY in the environment (the stack sets both for the functions). Keys come only
from the environment, never from argv, and are never logged.

    app.py      the endpoints, request pipeline, rate limits, batches, fault injection (its docstring)
    checks.py   what a Messages request must satisfy (headers aside), structured outputs' schema subset, tokens
    model.py    the deterministic "model": the prompt contract and the keyword rules of the analysis
    admin.py    AnthropicStandinAdmin, the client of /_admin/ (reset, limits, latency, faults, requests, batches)

It is a development tool in ghl_bridge/, never deployed.
"""
