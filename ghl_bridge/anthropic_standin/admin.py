"""A small client for the Anthropic stand-in's /_admin/ API (for tests, benchmarks and people).

    admin = AnthropicStandinAdmin("http://127.0.0.1:54342")
    admin.reset()                                          # defaults: limits, no latency/faults/batches/log
    admin.set_limits(requests_per_minute=50, input_tokens_per_minute=40_000)
    admin.set_latency(800)                                 # ms on every API answer
    admin.inject("429", count=2, retry_after=3)            # the next 2 POST /v1/messages answer 429, retry-after 3
    admin.inject("529") / inject("invalid") / inject("schema_violation") / inject("refusal")
    admin.requests()                                       # what the API received (never a key)
    admin.set_batch_delay(30); admin.end_batch(batch_id)
    admin.set_batch_outcome("call-123", "expired")         # once, in the next batch that ends with that custom_id

What each fault and outcome does: ghl_bridge/anthropic_standin/app.py's docstring.
"""

from __future__ import annotations

import httpx

FAULT_KINDS = ("429", "529", "invalid", "schema_violation", "refusal")
BATCH_OUTCOMES = ("expired", "errored", "canceled", "invalid", "schema_violation", "refusal")


class AnthropicStandinError(RuntimeError):
    pass


class AnthropicStandinAdmin:
    def __init__(self, url: str, *, timeout: float = 30.0):
        self.base_url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url + "/_admin", timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "AnthropicStandinAdmin":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _call(self, method: str, path: str, json: dict | None = None) -> dict:
        response = self._http.request(method, path, json=json)
        if response.status_code >= 400:
            raise AnthropicStandinError(f"stand-in {method} {path} answered {response.status_code}: "
                                        f"{response.text[:500]}")
        return response.json()

    def health(self) -> dict:
        return self._call("GET", "/health")

    def settings(self) -> dict:
        """Limits, latency, batch delay, queued faults and batch outcomes now in force."""
        return self._call("GET", "/settings")

    def reset(self) -> dict:
        """Default limits, no latency, no faults, batch delay 0; forget batches, outcomes, windows and the log."""
        return self._call("POST", "/reset")

    def set_limits(self, requests_per_minute: int | None = None, input_tokens_per_minute: int | None = None,
                   output_tokens_per_minute: int | None = None) -> dict:
        """Per key, on a sliding 60 s window; a limit not named keeps its value."""
        return self._call("PUT", "/limits", {"requests_per_minute": requests_per_minute,
                                             "input_tokens_per_minute": input_tokens_per_minute,
                                             "output_tokens_per_minute": output_tokens_per_minute})

    def set_latency(self, ms: float) -> dict:
        return self._call("PUT", "/latency", {"ms": ms})

    def inject(self, kind: str, count: int = 1, retry_after: float | None = None) -> dict:
        """Queue `count` faults of `kind` for the next POST /v1/messages answers (in the order injected)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"kind must be one of {FAULT_KINDS}")
        return self._call("POST", "/faults", {"kind": kind, "count": count, "retry_after": retry_after})

    def clear_faults(self) -> dict:
        return self._call("DELETE", "/faults")

    def requests(self) -> list[dict]:
        """Every API request received, oldest first: time, method, path, model, status, request_id, auth (which
        header carried the key, never the key), input/output tokens, stop_reason, fault, batch_id, custom_ids,
        transcript_sha256 and transcript_head (first 40 characters), and for a batch `transcripts` per custom_id."""
        return self._call("GET", "/requests")["requests"]

    def set_batch_delay(self, seconds: float) -> dict:
        """Seconds after creation before a batch ends (at the next access); 0 = at the first GET."""
        return self._call("PUT", "/batch_delay", {"seconds": seconds})

    def end_batch(self, batch_id: str) -> dict:
        """End the batch now (its results are made); returns the batch object."""
        return self._call("POST", f"/batches/{batch_id}/end")

    def set_batch_outcome(self, custom_id: str, outcome: str) -> dict:
        """The result of `custom_id` in the next batch that ends with it: expired, errored, canceled (or a
        succeeded result whose answer is invalid, schema_violation or refusal)."""
        if outcome not in BATCH_OUTCOMES:
            raise ValueError(f"outcome must be one of {BATCH_OUTCOMES}")
        return self._call("PUT", f"/batch_outcomes/{custom_id}", {"outcome": outcome})
