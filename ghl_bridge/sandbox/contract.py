"""GHL's own OpenAPI files as the sandbox's contract: every request and response is validated.

The files live in contracts/ghl-openapi (copied unchanged from GHL's public API docs, CC0). They fail strict document
validation, so they are loaded without it (as their README says); request and response validation
work. A few documented facts contradict the files; those are patched in memory, each one named in
KNOWN_DOC_BUGS (GHL-FACTS.md has the evidence), so the sandbox can answer as GHL really does and
still count every other deviation as a contract violation.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from openapi_core import OpenAPI
from openapi_core.configurations import Config
from openapi_core.testing import MockRequest, MockResponse

from ghl_bridge.paths import PROJECT_ROOT

# GHL's production base URL: the files' only server, so requests are validated as if sent there.
GHL_HOST_URL = "https://services.leadconnectorhq.com"

# Which file describes which path family.
SPEC_FILES = {"contacts": "apps/contacts.json", "conversations": "apps/conversations.json",
              "locations": "apps/locations.json"}

KNOWN_DOC_BUGS = (
    "conversations: ExportMessagesResponseDto.nextCursor is null on the last page (its own description "
    "says so) but is typed as a non-nullable string",
    "conversations: the transcription endpoint returns a list of sentences, documented as one sentence object",
    "conversations: the recording endpoint answers 422 when a message has no recording (undocumented status)",
)


def spec_dir() -> Path:
    """GHL_OPENAPI_DIR, else the copy kept in the repository (contracts/ghl-openapi, CC0, see its README)."""
    configured = os.environ.get("GHL_OPENAPI_DIR")
    candidates = [Path(configured)] if configured else []
    candidates += [PROJECT_ROOT / "contracts" / "ghl-openapi"]
    for candidate in candidates:
        if (candidate / SPEC_FILES["contacts"]).is_file():
            return candidate
    raise FileNotFoundError("GHL's OpenAPI files were not found: set GHL_OPENAPI_DIR to the ghl-openapi folder "
                            f"(looked in {', '.join(str(c) for c in candidates)})")


def _patch_known_doc_bugs(family: str, spec: dict) -> dict:
    spec = copy.deepcopy(spec)
    if family == "conversations":
        schemas = spec["components"]["schemas"]
        schemas["ExportMessagesResponseDto"]["properties"]["nextCursor"]["nullable"] = True
        paths = spec["paths"]
        transcription = paths["/conversations/locations/{locationId}/messages/{messageId}/transcription"]["get"]
        content = transcription["responses"]["200"]["content"]["application/json"]
        content["schema"] = {"type": "array", "items": content["schema"]}
        recording = paths["/conversations/messages/{messageId}/locations/{locationId}/recording"]["get"]
        recording["responses"].setdefault("422", {
            "description": "No recording for this message",
            "content": {"application/json": {"schema": {
                "$ref": "../common/common-schemas.json#/components/schemas/UnprocessableDTO"}}}})
    return spec


@lru_cache(maxsize=None)
def openapi_for(family: str) -> OpenAPI:
    path = spec_dir() / SPEC_FILES[family]
    spec = _patch_known_doc_bugs(family, json.loads(path.read_text()))
    return OpenAPI.from_dict(spec, base_uri=path.resolve().as_uri(), config=Config(spec_validator_cls=None))


def family_of(path: str) -> str | None:
    first = path.strip("/").split("/", 1)[0]
    return first if first in SPEC_FILES else None


@dataclass
class CheckedRequest:
    """What the validator needs of a request (kept so the response can be validated against it)."""

    family: str
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    content_type: str

    def to_openapi(self) -> MockRequest:
        return MockRequest(GHL_HOST_URL, self.method, self.path, args=self.query, headers=self.headers,
                           data=self.body, content_type=self.content_type or "application/json")


def _describe(error: BaseException) -> list[str]:
    """Readable messages of an openapi-core error, including the schema errors it wraps."""
    messages = [str(error)]
    cause = error.__cause__
    schema_errors = getattr(cause, "schema_errors", None) or getattr(error, "schema_errors", None) or ()
    for schema_error in schema_errors:
        location = "/".join(str(part) for part in getattr(schema_error, "absolute_path", ()))
        text = getattr(schema_error, "message", str(schema_error))
        messages.append(f"{location}: {text}" if location else text)
    if cause is not None and not schema_errors:
        messages.append(str(cause))
    return messages


def request_errors(request: CheckedRequest) -> list[str]:
    """[] when the request matches GHL's spec; else readable reasons."""
    try:
        openapi_for(request.family).validate_request(request.to_openapi())
    except Exception as exc:  # openapi-core raises a tree of its own errors; all of them mean "invalid"
        return _describe(exc)
    return []


def response_errors(request: CheckedRequest, status: int, body: bytes, content_type: str,
                    headers: dict[str, str] | None = None) -> list[str]:
    response = MockResponse(body, status_code=status, headers=headers or {}, content_type=content_type)
    try:
        openapi_for(request.family).validate_response(request.to_openapi(), response)
    except Exception as exc:
        return _describe(exc)
    return []
