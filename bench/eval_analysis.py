"""Evaluation: the AI path's dispositions and callback times against 40 labelled transcripts, next to the regex
inference the project used before (shared/domain/calls.infer_disposition) on the same transcripts.

    .venv/bin/python bench/eval_analysis.py                       # against the Anthropic stand-in (started here)
    ANTHROPIC_API_KEY=... .venv/bin/python bench/eval_analysis.py --real [--model claude-sonnet-4-5-20250929]

The transcripts: tests/fixtures/analysis/labelled_transcripts.json (id, call_started_at, time_zone, transcript,
expected_disposition, expected_callback_at, notes). Each goes through the production path: the prompt file and
request (shared/domain/call_analysis.request_params), the adapter (shared/adapters/anthropic_client: pacing,
retries), the validation (parse_answer). Printed: disposition accuracy of the AI path and of the regex, callback
times within 15 minutes of the label (over the transcripts whose label has one; a callback given where the label has
none counts as wrong), the items each got wrong, tokens and the list-price cost of the run.

The stand-in's "model" is keyword rules (ghl_bridge/anthropic_standin/model.py): its figures say the pipeline works
end to end and where keyword rules fall short; only --real says how Claude does. The regex is given status
"completed" (a connected call) for every transcript: it sees the words only, as the AI does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.adapters.anthropic_client import AnthropicClient  # noqa: E402
from shared.domain.call_analysis import (  # noqa: E402
    PROMPT_VERSION, InvalidAnswer, estimated_cost_usd, parse_answer, request_params,
)
from shared.domain.calls import infer_disposition  # noqa: E402

FIXTURE = ROOT / "tests" / "fixtures" / "analysis" / "labelled_transcripts.json"
CALLBACK_TOLERANCE_SECONDS = 15 * 60


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_standin() -> tuple[subprocess.Popen, str, str]:
    key = "sk-ant-eval-" + secrets.token_hex(16)
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "ghl_bridge.anthropic_standin", "--port", str(port)],
                               env={**os.environ, "ANTHROPIC_STANDIN_API_KEYS": key}, cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    import httpx

    for _ in range(100):
        try:
            httpx.get(url + "/_admin/health", timeout=1)
            return process, url, key
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("the stand-in did not start")


async def analyse_all(items, client: AnthropicClient, model: str, max_tokens: int) -> list[dict]:
    async def one(item):
        params = request_params(item["transcript"], item["call_started_at"], item["time_zone"], model=model,
                                max_tokens=max_tokens)
        tokens = [0, 0]
        problems = []
        for _ in range(2):  # as the worker: one more request after an invalid answer
            answer = await client.create_message(params)
            tokens[0] += answer.input_tokens
            tokens[1] += answer.output_tokens
            try:
                return {"analysis": parse_answer(answer.text, answer.stop_reason), "tokens": tokens}
            except InvalidAnswer as exc:
                problems.append(str(exc))
        return {"analysis": None, "tokens": tokens, "problem": problems[-1]}

    return list(await asyncio.gather(*(one(item) for item in items)))


def callback_ok(expected: str | None, got) -> bool:
    if expected is None:
        return got is None
    if got is None:
        return False
    return abs((datetime.fromisoformat(expected) - got).total_seconds()) <= CALLBACK_TOLERANCE_SECONDS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real", action="store_true", help="the real Anthropic API (needs ANTHROPIC_API_KEY)")
    parser.add_argument("--model", default=os.environ.get("ANTHROPIC_MODEL", "claude-sonnet-4-5-20250929"))
    parser.add_argument("--max-tokens", type=int, default=2048)
    args = parser.parse_args()
    items = json.loads(FIXTURE.read_text())
    standin = None
    if args.real:
        key = os.environ.get("ANTHROPIC_API_KEY")
        if not key:
            raise SystemExit("--real needs ANTHROPIC_API_KEY in the environment")
        base_url, where = os.environ.get("ANTHROPIC_BASE_URL"), "the real Anthropic API"
    else:
        standin, base_url, key = start_standin()
        where = "the Anthropic stand-in (keyword rules, not a model)"
    try:
        async def run():
            async with AnthropicClient(api_key=key, base_url=base_url, timeout=120, max_in_flight=8) as client:
                began = time.perf_counter()
                results = await analyse_all(items, client, args.model, args.max_tokens)
                return results, time.perf_counter() - began, client.stats.requests
        results, seconds, requests = asyncio.run(run())
    finally:
        if standin is not None:
            standin.terminate()
            standin.wait(10)

    ai_right = regex_right = callbacks_right = callbacks_total = 0
    wrong: list[str] = []
    input_tokens = output_tokens = 0
    for item, result in zip(items, results):
        analysis = result["analysis"]
        input_tokens += result["tokens"][0]
        output_tokens += result["tokens"][1]
        expected = item["expected_disposition"]
        ai = analysis.disposition if analysis else None
        regex = infer_disposition("completed", None, item["transcript"])
        ai_right += ai == expected
        regex_right += regex == expected
        if item["expected_callback_at"] is not None or (analysis and analysis.callback_at is not None):
            callbacks_total += 1
            ok = callback_ok(item["expected_callback_at"], analysis.callback_at if analysis else None)
            callbacks_right += ok
        else:
            ok = True
        if ai != expected or regex != expected or not ok:
            got_callback = analysis.callback_at.isoformat() if analysis and analysis.callback_at else None
            wrong.append(f"  {item['id']:<8} label {expected!r:<22} ai {ai!r:<22} regex {regex!r:<22}"
                         + ("" if ok else f" callback label {item['expected_callback_at']} ai {got_callback}")
                         + (f" ({result.get('problem')})" if analysis is None else ""))
    n = len(items)
    cost = estimated_cost_usd({"live_input": input_tokens, "live_output": output_tokens}, price_input_per_mtok=3.0,
                              price_output_per_mtok=15.0, batch_factor=0.5)
    print(f"== call analysis evaluation: {n} labelled transcripts against {where} ==")
    print(f"model {args.model}, prompt {PROMPT_VERSION}; {requests} requests in {seconds:.1f} s")
    print(f"disposition accuracy  AI path: {ai_right}/{n} = {ai_right / n:.1%}    "
          f"regex inference (baseline, same run): {regex_right}/{n} = {regex_right / n:.1%}")
    print(f"callbacks within 15 min: {callbacks_right}/{callbacks_total} (transcripts with a callback in the label "
          "or the answer)")
    print(f"tokens: {input_tokens} in, {output_tokens} out; at $3/$15 per MTok: ${cost:.4f} "
          f"(${cost / n:.5f} per call)")
    if wrong:
        print("differences from the labels:")
        print("\n".join(wrong))


if __name__ == "__main__":
    main()
