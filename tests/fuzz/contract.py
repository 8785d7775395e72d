"""docs/openapi.yaml as a checker of real requests and answers (openapi-core), for the contract and fuzz tests."""

from __future__ import annotations

import functools
from pathlib import Path
from urllib.parse import urlsplit

import httpx

SPEC = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
PATHS = {"ghl-call-webhook": "/functions/v1/ghl-call-webhook",
         "sync-prospects-to-ghl": "/functions/v1/sync-prospects-to-ghl",
         "process-ghl-import": "/functions/v1/process-ghl-import"}


@functools.lru_cache(maxsize=1)
def openapi():
    from openapi_core import OpenAPI

    return OpenAPI.from_file_path(str(SPEC))


def _request(url: str, method: str, body: bytes | None, headers: dict):
    from openapi_core.testing import MockRequest

    parts = urlsplit(url)
    return MockRequest(f"{parts.scheme}://{parts.netloc}", method, parts.path, headers=headers, data=body or b"",
                       content_type=headers.get("Content-Type", "application/json"))


def _response(status: int, body: bytes, headers):
    from openapi_core.testing import MockResponse

    return MockResponse(body, status_code=status, headers=dict(headers),
                        content_type=headers.get("content-type", "application/json").split(";")[0])


def check_exchange(url: str, method: str, body: bytes | None, headers: dict, status: int, answer: bytes,
                   answer_headers, *, request_valid: bool) -> None:
    """The answer matches the spec for this operation and status; the request too when it is meant to."""
    request = _request(url, method, body, headers)
    if request_valid:
        openapi().validate_request(request)
    openapi().validate_response(request, _response(status, answer, answer_headers))


def call(url: str, *, method: str = "POST", body: bytes | None = None, headers: dict | None = None,
         request_valid: bool = True, timeout: float = 120) -> httpx.Response:
    """Send a real request through the stack and check the exchange against docs/openapi.yaml."""
    headers = {"Content-Type": "application/json", **(headers or {})}
    response = httpx.request(method, url, content=body, headers=headers, timeout=timeout)
    check_exchange(url, method, body, headers, response.status_code, response.content, response.headers,
                   request_valid=request_valid)
    return response


def check_framework_answer(path: str, body: bytes, headers: dict, answer, *, request_valid: bool = True) -> None:
    """The same check for an answer of the function served in-process (functions_framework test client)."""
    check_exchange(f"http://127.0.0.1:54321{path}", "POST", body, headers, answer.status_code, answer.get_data(),
                   answer.headers, request_valid=request_valid)
