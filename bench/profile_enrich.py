#!/usr/bin/env python
"""Where call enrichment's CPU goes per GHL request: py-spy samples the worker process (`ghl-bridge enrich --json`)
while it fetches fresh locations' transcripts and recordings (2 GHL requests per call) from the GHL sandbox of a
local stack of its own and stores the recordings in moto S3 (a script, not a test; see bench/profile_sync.py).

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/profile_enrich.py \
        [--locations 5] [--per-location 55] [--recording-bytes 65536] [--top 30] [--code REV] [--out FILE]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from profile_sync import profile  # noqa: E402

if __name__ == "__main__":
    sys.exit(profile("enrich", 55, __doc__.split("\n\n")[0]))
