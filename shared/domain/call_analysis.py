"""A call's analysis by Claude: the prompt, the answer's schema and its validation (pure; no I/O but reading the
prompt file once).

- The prompt is ONE versioned file, shared/prompts/call_analysis_<version>.md (the system prompt). PROMPT_VERSION
  names it and is stored on every analysed call: changing it is the only way a call is analysed again, and then
  only on purpose (`ghl-bridge analyze --again --since ...`).
- The transcript is untrusted text: it goes in the user message as delimited data (`<transcript>` ... ), with the
  call's start time and the location's time zone; the model gets no tool.
- The answer is constrained to ANSWER_SCHEMA (structured outputs: `output_config.format` json_schema) and then
  validated by CallAnalysis, which checks what the schema language of structured outputs cannot say (3-5 key
  points, interest 0-10, a date-time with an offset).
"""

from __future__ import annotations

import copy
import json
import re
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shared.domain import strict_json
from shared.domain.calls import CANONICAL_DISPOSITIONS

PROMPT_VERSION = "call_analysis_v1"
PROMPT_FILE = Path(__file__).resolve().parent.parent / "prompts" / f"{PROMPT_VERSION}.md"

Disposition = Literal[CANONICAL_DISPOSITIONS]  # type: ignore[valid-type]


class CallAnalysis(BaseModel):
    """What is stored in `ai_summary`: the replaced system's keys, one vocabulary each, plus summary and callback."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    disposition: Disposition = Field(description="one of the nine canonical dispositions")
    summary: str = Field(min_length=1, max_length=2000, description="two or three sentences")
    key_points: list[str] = Field(min_length=3, max_length=5, description="three to five short bullets")
    sentiment: Literal["positive", "neutral", "negative"] = Field(description="the contact's overall sentiment")
    interest_level: int = Field(ge=0, le=10, description="the contact's interest, 0 (none) to 10 (ready to buy)")
    action_items: list[str] = Field(description="what the company should do next")
    objections: list[str] = Field(description="the contact's objections")
    buying_signals: list[str] = Field(description="what suggests the contact may buy")
    engagement_assessment: str = Field(min_length=1, max_length=1000)
    conversation_quality: str = Field(min_length=1, max_length=1000)
    callback_at: datetime | None = Field(
        description="when the contact asked to be called back (ISO 8601 with offset), else null")

    @field_validator("key_points", "action_items", "objections", "buying_signals")
    @classmethod
    def _no_blank_items(cls, items: list[str]) -> list[str]:
        if any(not item.strip() for item in items):
            raise ValueError("items must not be blank")
        return items

    @field_validator("callback_at")
    @classmethod
    def _with_offset(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("callback_at needs a UTC offset")
        return value

    def to_summary(self) -> dict[str, Any]:
        """The jsonb stored in ai_summary (callback_at as ISO 8601 text)."""
        return self.model_dump(mode="json")


# Keywords structured outputs does not take (numeric and length bounds, minItems above 1): CallAnalysis checks them.
_UNSUPPORTED = {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minLength", "maxLength",
                "maxItems", "title", "default"}


def _constrainable(node: Any) -> Any:
    if isinstance(node, dict):
        out = {k: _constrainable(v) for k, v in node.items() if k not in _UNSUPPORTED}
        if isinstance(out.get("minItems"), int) and out["minItems"] > 1:
            out["minItems"] = 1
        if out.get("type") == "object":
            out["additionalProperties"] = False
            out["required"] = list(out.get("properties", {}))
        return out
    if isinstance(node, list):
        return [_constrainable(item) for item in node]
    return node


def answer_schema() -> dict[str, Any]:
    """The JSON schema sent as output_config.format.schema: CallAnalysis's, cut to what structured outputs supports
    (every object closed and every property required)."""
    return copy.deepcopy(_answer_schema())


@lru_cache(maxsize=1)
def _answer_schema() -> dict[str, Any]:
    return _constrainable(CallAnalysis.model_json_schema())


@lru_cache(maxsize=1)
def system_prompt() -> str:
    return PROMPT_FILE.read_text(encoding="utf-8").strip()


_CLOSING_TAG = re.compile(r"</\s*transcript\s*>", re.IGNORECASE)


def location_zone(time_zone: str | None) -> ZoneInfo:
    """The location's zone; UTC when unset or unknown (the stored value is checked by the doctor)."""
    try:
        return ZoneInfo(time_zone) if time_zone else ZoneInfo("UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def user_message(transcript: str, started_at: datetime | str | None, time_zone: str | None) -> str:
    """The user message: the call as delimited data. A closing tag inside the transcript is defused so the text
    cannot end its own block."""
    zone = location_zone(time_zone)
    if isinstance(started_at, str):
        started_at = datetime.fromisoformat(started_at.replace("Z", "+00:00"))
    if started_at is None:
        started_at = datetime.now(timezone.utc)
    if started_at.tzinfo is None:
        started_at = started_at.replace(tzinfo=timezone.utc)
    local = started_at.astimezone(zone).replace(microsecond=0)
    text = _CLOSING_TAG.sub("</ transcript>", transcript.strip())
    return (f"<call_started_at>{local.isoformat()}</call_started_at>\n"
            f"<time_zone>{zone.key}</time_zone>\n"
            f"<transcript>\n{text}\n</transcript>")


def request_params(transcript: str, started_at: datetime | str | None, time_zone: str | None, *, model: str,
                   max_tokens: int) -> dict[str, Any]:
    """The Messages API parameters of one call's analysis (live request or a batch entry's params). No tools."""
    return {
        "model": model,
        "max_tokens": max_tokens,
        "system": system_prompt(),
        "messages": [{"role": "user", "content": user_message(transcript, started_at, time_zone)}],
        "output_config": {"format": {"type": "json_schema", "schema": answer_schema()}},
    }


class InvalidAnswer(ValueError):
    """The model's answer is not a valid analysis (the reason is short and safe to store)."""


def parse_answer(text: str | None, stop_reason: str | None) -> CallAnalysis:
    """The validated analysis from the answer's text, or InvalidAnswer saying why not."""
    if stop_reason == "refusal":
        raise InvalidAnswer("the model refused to analyse the call")
    if stop_reason == "max_tokens":
        raise InvalidAnswer("the answer was cut off at max_tokens")
    if not text or not text.strip():
        raise InvalidAnswer(f"the answer had no text (stop_reason {stop_reason})")
    try:
        # the project's rule for upstream JSON: NaN/Infinity -> null, NUL and lone surrogates dropped (jsonb refuses
        # them, and a result the database refuses would be re-analysed on every run)
        data = strict_json.loads_storable(text)
    except json.JSONDecodeError as exc:
        raise InvalidAnswer(f"the answer is not JSON ({exc.msg} at {exc.pos})") from None
    except (ValueError, RecursionError) as exc:
        raise InvalidAnswer(f"the answer is not JSON ({type(exc).__name__})") from None
    try:
        return CallAnalysis.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'answer'}: {e['msg']}" for e in exc.errors()[:5])
        raise InvalidAnswer(f"the answer does not fit the schema ({problems})"[:500]) from None


def request_chars(params: dict[str, Any]) -> int:
    """The characters a request's input tokens come from: system prompt, messages and the answer's schema."""
    chars = len(params["system"]) + sum(len(m["content"]) for m in params["messages"])
    return chars + len(json.dumps(params.get("output_config") or {}, separators=(",", ":")))



def custom_id(table: str, call_id: str) -> str:
    """A batch entry's custom_id: the call (`sales_calls-<uuid>`; Anthropic allows [a-zA-Z0-9_-]{1,64})."""
    return f"{table}-{call_id}"


def parse_custom_id(value: str) -> tuple[str, str] | None:
    table, _, call_id = value.partition("-")
    if table not in ("sales_calls", "calls") or not call_id:
        return None
    return table, call_id


def estimated_cost_usd(tokens: dict[str, Any], *, price_input_per_mtok: float, price_output_per_mtok: float,
                       batch_factor: float) -> float:
    """USD for {live_input, live_output, batch_input, batch_output} tokens at the given list prices (batches at
    batch_factor of them). An estimate: Anthropic's invoice is the authority."""
    live = (tokens.get("live_input", 0) * price_input_per_mtok + tokens.get("live_output", 0) * price_output_per_mtok)
    batch = (tokens.get("batch_input", 0) * price_input_per_mtok
             + tokens.get("batch_output", 0) * price_output_per_mtok) * batch_factor
    return round((live + batch) / 1_000_000, 4)
