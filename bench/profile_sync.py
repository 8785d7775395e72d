#!/usr/bin/env python
"""Where the prospect sync's CPU goes per GHL request: py-spy samples the worker process (`ghl-bridge sync --json`,
one process for all locations) while it pushes fresh locations' prospects to the GHL sandbox of a local stack of
its own, then prints the top functions and packages by own samples, as CPU milliseconds per GHL request
(a script, not a test; py-spy is in the dev extra and needs ptrace, e.g. root).

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/profile_sync.py \
        [--locations 5] [--per-location 110] [--top 30] [--code REV] [--out FILE]

Only the worker's samples count (the sandbox is another process). py-spy leaves idle threads out, so a sample is
a moment a thread ran Python or native code. --code REV profiles the code of a git revision instead of this tree.
bench/profile_enrich.py does the same for call enrichment.
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_cpu_per_request import export_code, measure_cpu_per_request, start_stack  # noqa: E402

RATE = 500  # samples per second
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


def package_of(frame: str) -> str:
    """The package a py-spy frame ('function (path:line)') belongs to: the project's module, or the library."""
    match = _FRAME.match(frame)
    path = match.group("file") if match else frame
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    for marker in ("/shared/", "/ghl_bridge/"):
        if marker in path:
            return marker.strip("/") + "/" + path.split(marker, 1)[1]
    if "/lib/python" in path:
        rest = path.split("/lib/python", 1)[1].split("/", 1)[-1]
        return "stdlib:" + rest.split("/", 1)[0].removesuffix(".py")
    return path or "?"


def summarize(collapsed: Path, count: int) -> tuple[int, list, list, list]:
    """(samples, top own frames, top inclusive frames, own samples per package) from py-spy's raw output."""
    own, inclusive, packages, total = collections.Counter(), collections.Counter(), collections.Counter(), 0
    for line in collapsed.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        frames = [frame for frame in stack.split(";") if not frame.startswith(("process ", "thread "))]
        if not frames:
            continue
        n = int(samples)
        total += n
        own[frames[-1]] += n
        packages[package_of(frames[-1])] += n
        for frame in set(frames):
            inclusive[frame] += n
    return total, own.most_common(count), inclusive.most_common(count), packages.most_common(count)


def profile(job: str, per_location_default: int, description: str) -> int:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--locations", type=int, default=5)
    parser.add_argument("--per-location", type=int, default=per_location_default)
    parser.add_argument("--recording-bytes", type=int, default=65536)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--code", help="profile the code of this git revision (default: this tree)")
    parser.add_argument("--out", type=Path, help="keep py-spy's collapsed stacks here")
    args = parser.parse_args()
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    temp = Path(tempfile.mkdtemp(prefix=f"profile-{job}-"))
    code_root = export_code(args.code, temp / "code") if args.code else None
    out = args.out or temp / "profile.txt"
    stack, info = start_stack(temp / "stack")
    try:
        prefix = [py_spy, "record", "--gil", "--rate", str(RATE), "--format", "raw", "--output", str(out), "--nonblocking",
                  "--"]
        figures = measure_cpu_per_request(info, job, locations=args.locations, per_location=args.per_location,
                                          code_root=code_root, recording_bytes=args.recording_bytes, prefix=prefix)
    finally:
        stack.down()
    requests = figures["requests"]
    total, own, inclusive, packages = summarize(out, args.top)

    def ms(samples: int) -> str:
        return f"{1000 * samples / RATE / requests:6.3f} ms/req"

    print(f"{job}: {figures['locations']} locations x {figures['per_location']}, {requests} GHL requests, "
          f"code {figures['shared']}; wall {figures['wall']:.2f} s (under py-spy); run CPU {figures['run_cpu']:.2f} s "
          f"= {figures['run_ms_per_request']:.2f} ms/request; {total} samples at {RATE}/s = {ms(total)} of non-idle "
          f"thread time")
    print("\n-- own samples per package --")
    for package, samples in packages:
        print(f"{samples:7d} {ms(samples)}  {package}")
    print("\n-- top functions by own samples --")
    for frame, samples in own:
        print(f"{samples:7d} {ms(samples)}  {frame}")
    print("\n-- top functions by inclusive samples --")
    for frame, samples in inclusive:
        print(f"{samples:7d} {ms(samples)}  {frame}")
    if not args.out:
        shutil.rmtree(temp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(profile("sync", 110, __doc__.split("\n\n")[0]))
