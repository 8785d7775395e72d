"""Cloud Tasks v2 over its REST API: tasks (create, with name dedup) and queues (create/get/patch).

The same code in production and on the local stack: only `api_url` differs (https://cloudtasks.googleapis.com,
or the stand-in ghl_bridge/cloudtasks_standin). Tasks are HTTP targets: POST to a function with a JSON body and,
in production, an OIDC token of the invoker service account for the function's URL (the audience).

Why a thin adapter on httpx and not google-cloud-tasks (measured on this machine, Python 3.11, min of 3 runs,
bench numbers in docs/deploy.md "Fan-out"): `import google.cloud.tasks_v2` takes about 550 ms and google-auth's
compute_engine credentials about 270 ms more, on the cold start of the instance that dispatches; httpx is
already imported by the database client, so this module adds a few milliseconds. The API used is four calls.

Access token (production): the runtime service account's, from the metadata server (the documented endpoint
that google-auth's compute_engine credentials read too), cached until a minute before it expires. Locally the
stand-in needs no token (`token_source=None`).
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from shared import errors
from shared.logs import get_logger, register_secret

log = get_logger("adapters.cloud_tasks")

GOOGLE_TASKS_API = "https://cloudtasks.googleapis.com"
METADATA_TOKEN_URL = "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token"
ATTEMPTS = 3  # per request, on 429/5xx/network (0.2 s, 0.4 s between)
TRANSIENT_STATUSES = (429, 500, 502, 503, 504)


class MetadataServerToken:
    """The runtime service account's access token (cloud-platform scope), refreshed a minute before it expires."""

    def __init__(self, url: str = METADATA_TOKEN_URL, timeout: float = 5.0):
        self._url, self._timeout = url, timeout
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> str:
        with self._lock:
            if self._token is None or time.monotonic() >= self._expires_at - 60:
                try:
                    answer = httpx.get(self._url, headers={"Metadata-Flavor": "Google"}, timeout=self._timeout)
                    answer.raise_for_status()
                    data = answer.json()
                except (httpx.HTTPError, ValueError) as exc:
                    raise errors.TasksUnavailable(
                        f"no access token from the metadata server ({type(exc).__name__})") from None
                self._token = data["access_token"]
                register_secret(self._token)  # masked in every log line
                self._expires_at = time.monotonic() + float(data.get("expires_in", 300))
            return self._token


@dataclass(frozen=True)
class HttpTask:
    """One task: a POST of `body` (JSON) to `url`, named `task_id` inside its queue."""

    task_id: str
    url: str
    body: dict[str, Any]


class CloudTasks:
    def __init__(self, *, api_url: str, project: str, location: str,
                 token_source: Callable[[], str] | None = None, timeout: float = 10.0):
        self.api_url = api_url.rstrip("/")
        self.project, self.location = project, location
        self._token_source = token_source
        self._timeout = timeout

    def queue_name(self, queue: str) -> str:
        return f"projects/{self.project}/locations/{self.location}/queues/{queue}"

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self._token_source is not None:
            headers["Authorization"] = f"Bearer {self._token_source()}"
        return headers

    # ---- tasks ------------------------------------------------------------------------------------

    def create_tasks(self, queue: str, tasks: list[HttpTask], *, oidc_service_account: str | None,
                     dispatch_deadline_seconds: int, concurrency: int = 16) -> dict[str, str]:
        """Create every task (up to `concurrency` requests at once); task id -> "created" | "exists" (the name
        was taken in this queue recently: the slot's task exists, which is success). Raises TasksUnavailable
        when one could not be created (the others are created: a retried dispatch adds only the missing ones)."""
        return asyncio.run(self._create_all(queue, tasks, oidc_service_account, dispatch_deadline_seconds,
                                            concurrency))

    async def _create_all(self, queue: str, tasks: list[HttpTask], oidc_service_account: str | None,
                          dispatch_deadline_seconds: int, concurrency: int) -> dict[str, str]:
        parent = self.queue_name(queue)
        headers = self._headers() if tasks else {}
        gate = asyncio.Semaphore(max(1, concurrency))
        limits = httpx.Limits(max_connections=max(1, concurrency), max_keepalive_connections=max(1, concurrency))
        async with httpx.AsyncClient(timeout=self._timeout, limits=limits) as client:

            async def create(task: HttpTask) -> tuple[str, str | BaseException]:
                http_request: dict[str, Any] = {
                    "url": task.url, "httpMethod": "POST", "headers": {"Content-Type": "application/json"},
                    "body": base64.b64encode(json.dumps(task.body).encode()).decode()}
                if oidc_service_account:
                    http_request["oidcToken"] = {"serviceAccountEmail": oidc_service_account, "audience": task.url}
                payload = {"task": {"name": f"{parent}/tasks/{task.task_id}", "httpRequest": http_request,
                                    "dispatchDeadline": f"{dispatch_deadline_seconds}s"}}
                async with gate:
                    try:
                        answer = await self._send(client, "POST", f"/v2/{parent}/tasks", headers, payload)
                    except errors.BridgeError as exc:
                        return task.task_id, exc
                if answer.status_code == 409:
                    return task.task_id, "exists"
                if answer.is_success:
                    return task.task_id, "created"
                return task.task_id, errors.TasksUnavailable(
                    f"Cloud Tasks refused task {task.task_id} on {queue}: {_status_text(answer)}")

            outcomes = await asyncio.gather(*(create(task) for task in tasks))
        failures = [(task_id, outcome) for task_id, outcome in outcomes if isinstance(outcome, BaseException)]
        if failures:
            task_id, first = failures[0]
            raise errors.TasksUnavailable(f"{len(failures)} of {len(tasks)} task(s) not created on {queue}; "
                                          f"first: {getattr(first, 'message', first)}")
        return dict(outcomes)  # type: ignore[arg-type]

    async def _send(self, client: httpx.AsyncClient, method: str, path: str, headers: dict[str, str],
                    payload: dict | None) -> httpx.Response:
        """One API request, tried again on 429/5xx/network errors (not on 4xx: those are answers)."""
        last = ""
        for attempt in range(ATTEMPTS):
            try:
                answer = await client.request(method, self.api_url + path, headers=headers, json=payload)
                if answer.status_code not in TRANSIENT_STATUSES:
                    return answer
                last = _status_text(answer)
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            if attempt < ATTEMPTS - 1:
                await asyncio.sleep(0.2 * 2 ** attempt)
        raise errors.TasksUnavailable(f"Cloud Tasks did not answer {method} {path.split('/tasks')[0]}: {last}")

    # ---- queues (the local stack and tests; deploy.sh uses gcloud) --------------------------------------

    def ensure_queue(self, queue: str, *, max_concurrent_dispatches: int, max_dispatches_per_second: float,
                     max_attempts: int, min_backoff_seconds: float, max_backoff_seconds: float) -> dict[str, Any]:
        """Create the queue, or update its settings when it exists (what deploy.sh does with gcloud)."""
        body = {"name": self.queue_name(queue),
                "rateLimits": {"maxConcurrentDispatches": max_concurrent_dispatches,
                               "maxDispatchesPerSecond": max_dispatches_per_second},
                "retryConfig": {"maxAttempts": max_attempts, "minBackoff": f"{min_backoff_seconds}s",
                                "maxBackoff": f"{max_backoff_seconds}s"}}
        parent = f"projects/{self.project}/locations/{self.location}"
        with httpx.Client(timeout=self._timeout) as client:
            answer = client.post(f"{self.api_url}/v2/{parent}/queues", headers=self._headers(), json=body)
            if answer.status_code == 409:
                mask = "rateLimits.maxConcurrentDispatches,rateLimits.maxDispatchesPerSecond,retryConfig"
                answer = client.patch(f"{self.api_url}/v2/{body['name']}", params={"updateMask": mask},
                                      headers=self._headers(), json=body)
        if not answer.is_success:
            raise errors.TasksUnavailable(f"queue {queue} not created or updated: {_status_text(answer)}")
        return answer.json()

    def get_queue(self, queue: str) -> dict[str, Any]:
        answer = httpx.get(f"{self.api_url}/v2/{self.queue_name(queue)}", headers=self._headers(),
                           timeout=self._timeout)
        if not answer.is_success:
            raise errors.TasksUnavailable(f"queue {queue}: {_status_text(answer)}")
        return answer.json()


def _status_text(answer: httpx.Response) -> str:
    """`409 ALREADY_EXISTS: message` from Google's error body, else the status code."""
    try:
        error = answer.json().get("error", {})
        return f"{answer.status_code} {error.get('status', '')}: {str(error.get('message', ''))[:200]}".strip()
    except (ValueError, AttributeError):
        return str(answer.status_code)
