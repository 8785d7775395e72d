"""A GHL API sandbox for tests, benchmarks and the local stack (a development tool, never deployed).

    python -m ghl_bridge.sandbox --host 127.0.0.1 --port 54340 [--latency-ms 0] [--burst-limit 100]
        [--burst-window-ms 10000] [--daily-limit 200000]

GHL's endpoints the project uses, with state (contacts under the location's duplicate rule,
custom fields, call messages with cursors, recordings, transcripts), GHL's per-location rate
limits and headers, latency and fault injection, and every request and response validated against
GHL's own OpenAPI files. Configure it through /_sandbox/ (see `ghl_bridge.sandbox.admin.SandboxAdmin`).
"""
