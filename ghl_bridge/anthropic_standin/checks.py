"""What the stand-in checks in a Messages request (the params of POST /v1/messages and of each batch request).

A problem is a `Problem(status, error_type, message)`, answered in Anthropic's error shape. Checked, in order:
  * the body is a JSON object and names no parameter the Messages API does not have ("output_format", the
    deprecated beta parameter, is one it does not have: use output_config.format);
  * `model` is a string naming a known model (KNOWN_MODELS), else 404 not_found_error "model: <name>";
  * `max_tokens` is a positive integer, at most MAX_OUTPUT_TOKENS;
  * `messages` is a non-empty list of {"role": "user"|"assistant", "content": non-empty string or list of
    content blocks (objects with a "type"; text blocks with a non-empty "text")}; `system` a string or a list
    of text blocks; temperature/top_p within 0..1; `stream` is not true (the stand-in does not stream);
  * `output_config.format`, when given, is {"type": "json_schema", "schema": {...}} whose schema is valid JSON
    Schema (Draft 2020-12 meta-schema) AND within the subset structured outputs supports (the limits the API
    documents, which the SDK's own `anthropic.transform_schema` encodes): every object has
    "additionalProperties": false; no numeric bounds (minimum, maximum, exclusiveMinimum, exclusiveMaximum,
    multipleOf), no string lengths (minLength, maxLength), no array bounds except minItems 0 or 1 (maxItems,
    uniqueItems), no minProperties/maxProperties/patternProperties/not/if/then/else/dependentSchemas; string
    formats only date-time, time, date, duration, email, hostname, uri, ipv4, ipv6, uuid. A pydantic model's
    schema passed through `anthropic.transform_schema` passes (constraints move into descriptions).
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from typing import Any

KNOWN_MODELS = frozenset({
    "claude-sonnet-4-5-20250929", "claude-sonnet-4-5", "claude-haiku-4-5-20251001", "claude-haiku-4-5",
    "claude-sonnet-4-6", "claude-opus-4-5-20251101", "claude-opus-4-5", "claude-opus-4-6", "claude-opus-4-7",
})
MAX_OUTPUT_TOKENS = 64_000
MESSAGE_PARAMS = frozenset({
    "model", "messages", "max_tokens", "system", "temperature", "top_p", "top_k", "stop_sequences", "stream",
    "metadata", "tools", "tool_choice", "output_config", "thinking", "service_tier", "container",
    "context_management", "mcp_servers", "inference_geo", "speed", "diagnostics",
})
SUPPORTED_FORMATS = frozenset({"date-time", "time", "date", "duration", "email", "hostname", "uri", "ipv4", "ipv6",
                               "uuid"})
UNSUPPORTED_KEYWORDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minLength",
                        "maxLength", "maxItems", "uniqueItems", "minProperties", "maxProperties", "patternProperties",
                        "not", "if", "then", "else", "dependentSchemas", "dependentRequired", "contains",
                        "minContains", "maxContains", "unevaluatedProperties", "unevaluatedItems", "prefixItems")


@dataclass(frozen=True)
class Problem:
    status: int
    error_type: str
    message: str


def invalid(message: str) -> Problem:
    return Problem(400, "invalid_request_error", message)


def check_message_params(params: Any) -> Problem | None:
    if not isinstance(params, dict):
        return invalid("The request body must be a JSON object")
    extra = sorted(set(params) - MESSAGE_PARAMS)
    if extra:
        return invalid(f"{extra[0]}: Extra inputs are not permitted")
    model = params.get("model")
    if model is None:
        return invalid("model: Field required")
    if not isinstance(model, str):
        return invalid("model: Input should be a valid string")
    if model not in KNOWN_MODELS:
        return Problem(404, "not_found_error", f"model: {model}")
    max_tokens = params.get("max_tokens")
    if max_tokens is None:
        return invalid("max_tokens: Field required")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
        return invalid("max_tokens: Input should be a valid integer")
    if max_tokens < 1:
        return invalid("max_tokens: Input should be greater than or equal to 1")
    if max_tokens > MAX_OUTPUT_TOKENS:
        return invalid(f"max_tokens: {max_tokens} > {MAX_OUTPUT_TOKENS}, which is the maximum allowed number of "
                       f"output tokens for {model}")
    problem = _check_messages(params.get("messages")) or _check_system(params.get("system"))
    if problem:
        return problem
    for name in ("temperature", "top_p"):
        value = params.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1):
            return invalid(f"{name}: Input should be a number between 0 and 1")
    if params.get("stream"):
        return invalid("stream: the local Anthropic stand-in does not stream; send stream=false")
    output_config = params.get("output_config")
    if output_config is not None:
        if not isinstance(output_config, dict):
            return invalid("output_config: Input should be an object")
        if output_config.get("format") is not None:
            return check_output_format(output_config["format"])
    return None


def _check_messages(messages: Any) -> Problem | None:
    if messages is None:
        return invalid("messages: Field required")
    if not isinstance(messages, list) or not messages:
        return invalid("messages: at least one message is required")
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            return invalid(f"messages.{index}: Input should be an object")
        if message.get("role") not in {"user", "assistant"}:
            return invalid(f"messages.{index}.role: Input should be 'user' or 'assistant'")
        content = message.get("content")
        if isinstance(content, str):
            if not content:
                return invalid(f"messages.{index}: text content blocks must be non-empty")
            continue
        if not isinstance(content, list) or not content:
            return invalid(f"messages.{index}.content: Input should be a string or a non-empty list of blocks")
        for number, block in enumerate(content):
            where = f"messages.{index}.content.{number}"
            if not isinstance(block, dict) or not isinstance(block.get("type"), str):
                return invalid(f"{where}: a content block must be an object with a type")
            if block["type"] == "text" and (not isinstance(block.get("text"), str) or not block["text"]):
                return invalid(f"{where}: text content blocks must be non-empty")
    return None


def _check_system(system: Any) -> Problem | None:
    if system is None or isinstance(system, str):
        return None
    if not isinstance(system, list):
        return invalid("system: Input should be a string or a list of text blocks")
    for index, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(block.get("text"), str):
            return invalid(f"system.{index}: Input should be a text block")
    return None


def check_output_format(output_format: Any) -> Problem | None:
    if not isinstance(output_format, dict) or output_format.get("type") != "json_schema":
        return invalid("output_config.format.type: Input should be 'json_schema'")
    extra = sorted(set(output_format) - {"type", "schema"})
    if extra:
        return invalid(f"output_config.format.{extra[0]}: Extra inputs are not permitted")
    schema = output_format.get("schema")
    if not isinstance(schema, dict):
        return invalid("output_config.format.schema: Field required (a JSON schema object)")
    return _schema_problem(json.dumps(schema, sort_keys=True))


@functools.lru_cache(maxsize=64)
def _schema_problem(canonical_schema: str) -> Problem | None:
    """Checked once per distinct schema (the meta-schema check costs ~13 ms; a pipeline sends one schema)."""
    schema = json.loads(canonical_schema)
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.path) or "(root)"
        return invalid(f"output_config.format.schema: not a valid JSON schema at {where}: {exc.message}")
    unsupported = _unsupported(schema, "#")
    if unsupported:
        return invalid(f"output_config.format.schema: {unsupported}")
    return None


def _unsupported(schema: Any, where: str) -> str | None:
    """The first use of a feature outside structured outputs' JSON Schema subset (module docstring)."""
    if isinstance(schema, bool):
        return None
    if not isinstance(schema, dict):
        return None
    for keyword in UNSUPPORTED_KEYWORDS:
        if keyword in schema:
            return f"{where}: '{keyword}' is not supported by structured outputs"
    types = schema.get("type")
    types = set(types) if isinstance(types, list) else {types}
    if "object" in types or "properties" in schema:
        if schema.get("additionalProperties") is not False:
            return f"{where}: objects must set additionalProperties to false"
    if schema.get("format") is not None and schema["format"] not in SUPPORTED_FORMATS:
        return f"{where}: string format '{schema['format']}' is not supported"
    if "minItems" in schema and schema["minItems"] not in (0, 1):
        return f"{where}: minItems other than 0 or 1 is not supported"
    children: list[tuple[str, Any]] = []
    for key in ("properties", "$defs", "definitions"):
        for name, sub in (schema.get(key) or {}).items():
            children.append((f"{where}/{key}/{name}", sub))
    for key in ("anyOf", "oneOf", "allOf"):
        for index, sub in enumerate(schema.get(key) or []):
            children.append((f"{where}/{key}/{index}", sub))
    if isinstance(schema.get("items"), dict):
        children.append((f"{where}/items", schema["items"]))
    for path, sub in children:
        problem = _unsupported(sub, path)
        if problem:
            return problem
    return None


# ---- token counts (deterministic; the real tokenizer is not public) ----------------------------------------------------

def text_tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


def input_tokens(params: dict) -> int:
    """ceil(characters / 4) over the system text, every text of the messages and the compact JSON of the schema."""
    parts: list[str] = []
    system = params.get("system")
    if isinstance(system, str):
        parts.append(system)
    elif isinstance(system, list):
        parts.extend(block.get("text", "") for block in system if isinstance(block, dict))
    for message in params.get("messages") or []:
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            for block in content:
                if isinstance(block, dict):
                    parts.append(block["text"] if isinstance(block.get("text"), str) else
                                 json.dumps(block, separators=(",", ":"), sort_keys=True))
    output_format = (params.get("output_config") or {}).get("format")
    if output_format:
        parts.append(json.dumps(output_format.get("schema"), separators=(",", ":"), sort_keys=True))
    return max(1, text_tokens("".join(parts)))


def user_text(params: dict) -> str:
    """The text of the user messages (where the prompt contract's tags are)."""
    texts = []
    for message in params.get("messages") or []:
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts.extend(block.get("text", "") for block in content if isinstance(block, dict)
                         and block.get("type") == "text")
    return "\n".join(texts)
