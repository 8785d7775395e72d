"""A stand-in of Cloud Tasks v2 (REST) for the local stack and the tests: the subset shared/adapters/cloud_tasks.py
and deploy.sh's queue settings use, served the way Google serves it.

    POST   /v2/projects/P/locations/L/queues                 create a queue (409 ALREADY_EXISTS when it exists)
    GET    /v2/projects/P/locations/L/queues/Q               the queue (404 NOT_FOUND)
    PATCH  /v2/projects/P/locations/L/queues/Q?updateMask=   change rateLimits / retryConfig
    POST   /v2/projects/P/locations/L/queues/Q/tasks         create a task: {"task": {"name"?, "httpRequest": {url,
           httpMethod, headers, body (base64), oidcToken?}, "scheduleTime"?, "dispatchDeadline"?}}; a name taken by
           a task of the queue, or by one completed or deleted within the dedup window: 409 ALREADY_EXISTS
    GET    /v2/projects/P/locations/L/queues/Q/tasks         the queue's tasks
    admin: GET /_standin/health, GET /_standin/queues/Q/attempts (every dispatch: task, start, end, status),
           GET /_standin/queues/Q/tasks (live and finished tasks), POST /_standin/queues/Q/pause|resume

Dispatch (one asyncio loop per queue, woken by events, never polling): at most maxConcurrentDispatches at once,
at most maxDispatchesPerSecond (a token bucket of that size), each an HTTP request with the task's headers and
body plus X-CloudTasks-QueueName/TaskName/TaskRetryCount/TaskExecutionCount/TaskETA. A 2xx answer completes the
task; any other answer, a refused connection or passing dispatchDeadline schedules a retry after
minBackoff * 2^retries (at most maxBackoff) until maxAttempts (-1: unlimited) dispatches were made.
OIDC: Google signs a token for oidcToken.serviceAccountEmail; the stand-in sends `Authorization: Bearer <token>`
with the token it was given in CLOUDTASKS_STANDIN_OIDC_TOKEN (locally the scheduler secret, which the local
functions accept), never one it makes up, so a function that checks tokens is exercised for real.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

QUEUE_PATH = re.compile(r"projects/([a-z0-9-]{1,100})/locations/([a-z0-9-]{1,100})/queues/([A-Za-z0-9-]{1,100})")
TASK_ID = re.compile(r"[A-Za-z0-9_-]{1,500}")
DEFAULT_DEDUP_WINDOW_SECONDS = 4 * 3600  # Cloud Tasks: a name is held up to about 4 hours after its task ended
HISTORY_LIMIT = 100_000  # attempts kept per queue for the admin API


def _google_error(status: int, reason: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": status, "message": message, "status": reason}}, status_code=status)


def _seconds(value: Any, default: float) -> float:
    """"10s" / "0.5s" (Google's Duration in JSON) or a number."""
    if value is None:
        return default
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and re.fullmatch(r"\d+(\.\d+)?s", value):
        return float(value[:-1])
    raise ValueError(f"not a duration: {value!r}")


def _timestamp(moment: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(moment)) + f".{int(moment % 1 * 1e6):06d}Z"


@dataclass
class Queue:
    name: str
    max_concurrent: int = 1000
    max_per_second: float = 500.0
    max_attempts: int = 100
    min_backoff: float = 0.1
    max_backoff: float = 3600.0
    paused: bool = False
    tasks: dict[str, "Task"] = field(default_factory=dict)  # live tasks by id
    ended: dict[str, float] = field(default_factory=dict)  # task id -> when it completed / was dropped (dedup)
    finished: list[dict[str, Any]] = field(default_factory=list)  # ended tasks for the admin API
    attempts: list[dict[str, Any]] = field(default_factory=list)
    running: int = 0
    tokens: float = 0.0
    tokens_at: float = field(default_factory=time.monotonic)
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "state": "PAUSED" if self.paused else "RUNNING",
                "rateLimits": {"maxConcurrentDispatches": self.max_concurrent,
                               "maxDispatchesPerSecond": self.max_per_second, "maxBurstSize": self._burst()},
                "retryConfig": {"maxAttempts": self.max_attempts, "minBackoff": f"{self.min_backoff}s",
                                "maxBackoff": f"{self.max_backoff}s", "maxDoublings": 16}}

    def _burst(self) -> int:
        return max(1, int(self.max_per_second))

    def apply(self, body: dict[str, Any], mask: set[str] | None = None) -> None:
        """Settings from a Queue resource (only the fields in `mask` when given)."""
        def wanted(path: str) -> bool:
            return mask is None or path in mask or path.split(".")[0] in mask

        rate, retry = body.get("rateLimits") or {}, body.get("retryConfig") or {}
        if wanted("rateLimits.maxConcurrentDispatches") and "maxConcurrentDispatches" in rate:
            self.max_concurrent = max(1, int(rate["maxConcurrentDispatches"]))
        if wanted("rateLimits.maxDispatchesPerSecond") and "maxDispatchesPerSecond" in rate:
            self.max_per_second = max(0.001, float(rate["maxDispatchesPerSecond"]))
        if wanted("retryConfig.maxAttempts") and "maxAttempts" in retry:
            self.max_attempts = int(retry["maxAttempts"])
        if wanted("retryConfig.minBackoff") and "minBackoff" in retry:
            self.min_backoff = _seconds(retry["minBackoff"], self.min_backoff)
        if wanted("retryConfig.maxBackoff") and "maxBackoff" in retry:
            self.max_backoff = _seconds(retry["maxBackoff"], self.max_backoff)
        self.wake.set()


@dataclass
class Task:
    id: str
    queue: str
    url: str
    method: str
    headers: dict[str, str]
    body: bytes
    oidc: dict[str, str] | None
    schedule_time: float  # epoch seconds
    dispatch_deadline: float
    create_time: float = field(default_factory=time.time)
    dispatch_count: int = 0
    response_count: int = 0
    running: bool = False
    last_status: int | None = None

    def to_json(self) -> dict[str, Any]:
        request: dict[str, Any] = {"url": self.url, "httpMethod": self.method, "headers": self.headers}
        if self.oidc:
            request["oidcToken"] = self.oidc
        return {"name": f"{self.queue}/tasks/{self.id}", "httpRequest": request,
                "scheduleTime": _timestamp(self.schedule_time), "createTime": _timestamp(self.create_time),
                "dispatchDeadline": f"{self.dispatch_deadline}s", "dispatchCount": self.dispatch_count,
                "responseCount": self.response_count, "view": "BASIC"}


class StandIn:
    def __init__(self, *, oidc_token: str | None, dedup_window_seconds: float = DEFAULT_DEDUP_WINDOW_SECONDS):
        self.queues: dict[str, Queue] = {}
        self.oidc_token = oidc_token
        self.dedup_window = dedup_window_seconds
        self.loops: dict[str, asyncio.Task] = {}
        self.client: httpx.AsyncClient | None = None

    # ---- queues -------------------------------------------------------------------------------------

    def add_queue(self, name: str, body: dict[str, Any]) -> Queue:
        queue = Queue(name=name)
        queue.apply(body)
        self.queues[name] = queue
        self.loops[name] = asyncio.get_running_loop().create_task(self._dispatch_loop(queue))
        return queue

    # ---- tasks --------------------------------------------------------------------------------------

    def add_task(self, queue: Queue, task: Task) -> None:
        queue.tasks[task.id] = task
        queue.wake.set()

    def _end(self, queue: Queue, task: Task, outcome: str) -> None:
        queue.tasks.pop(task.id, None)
        now = time.time()
        queue.ended[task.id] = now
        queue.finished.append({"task": task.id, "outcome": outcome, "dispatch_count": task.dispatch_count,
                               "last_status": task.last_status, "ended_at": now})
        # names leave the dedup window after it (kept bounded by the window, not by a count)
        if len(queue.ended) % 1000 == 0:
            for name, ended_at in list(queue.ended.items()):
                if now - ended_at > self.dedup_window:
                    del queue.ended[name]

    def name_is_taken(self, queue: Queue, task_id: str) -> bool:
        ended_at = queue.ended.get(task_id)
        return task_id in queue.tasks or (ended_at is not None and time.time() - ended_at <= self.dedup_window)

    # ---- dispatch -----------------------------------------------------------------------------------

    def _take_token(self, queue: Queue) -> float:
        """0 when a dispatch may start now (a token is taken), else the seconds until the next token."""
        now = time.monotonic()
        queue.tokens = min(queue._burst(), queue.tokens + (now - queue.tokens_at) * queue.max_per_second)
        queue.tokens_at = now
        if queue.tokens >= 1:
            queue.tokens -= 1
            return 0.0
        return (1 - queue.tokens) / queue.max_per_second

    async def _dispatch_loop(self, queue: Queue) -> None:
        queue.tokens = queue._burst()
        while True:
            queue.wake.clear()
            wait: float | None = None
            if not queue.paused:
                now = time.time()
                due = sorted((t for t in queue.tasks.values() if not t.running and t.schedule_time <= now),
                             key=lambda t: (t.schedule_time, t.create_time))
                for task in due:
                    if queue.running >= queue.max_concurrent:
                        break
                    pause = self._take_token(queue)
                    if pause:
                        wait = pause
                        break
                    task.running = True
                    queue.running += 1
                    asyncio.get_running_loop().create_task(self._attempt(queue, task))
                later = [t.schedule_time - now for t in queue.tasks.values() if not t.running and t.schedule_time > now]
                if later:
                    wait = min(wait if wait is not None else float("inf"), min(later))
            try:
                await asyncio.wait_for(queue.wake.wait(), timeout=wait)
            except asyncio.TimeoutError:
                pass

    async def _attempt(self, queue: Queue, task: Task) -> None:
        retries = task.dispatch_count
        task.dispatch_count += 1
        headers = {**task.headers, "X-CloudTasks-QueueName": queue.name.rsplit("/", 1)[-1],
                   "X-CloudTasks-TaskName": task.id, "X-CloudTasks-TaskRetryCount": str(retries),
                   "X-CloudTasks-TaskExecutionCount": str(task.response_count),
                   "X-CloudTasks-TaskETA": f"{task.schedule_time:.6f}"}
        if task.oidc and self.oidc_token:
            headers["Authorization"] = f"Bearer {self.oidc_token}"
        started = time.time()
        status: int | None = None
        error = None
        try:
            assert self.client is not None
            answer = await self.client.request(task.method, task.url, headers=headers, content=task.body,
                                               timeout=task.dispatch_deadline)
            status = answer.status_code
            task.response_count += 1
        except httpx.HTTPError as exc:
            error = type(exc).__name__
        task.last_status = status
        if len(queue.attempts) < HISTORY_LIMIT:
            queue.attempts.append({"task": task.id, "attempt": task.dispatch_count, "started_at": started,
                                   "ended_at": time.time(), "status": status, "error": error})
        task.running = False
        queue.running -= 1
        if status is not None and 200 <= status < 300:
            self._end(queue, task, "completed")
        elif queue.max_attempts != -1 and task.dispatch_count >= queue.max_attempts:
            self._end(queue, task, "attempts_exhausted")
        else:
            backoff = min(queue.max_backoff, queue.min_backoff * 2 ** min(retries, 16))
            task.schedule_time = time.time() + backoff
        queue.wake.set()


def create_app(*, oidc_token: str | None = None, dedup_window_seconds: float = DEFAULT_DEDUP_WINDOW_SECONDS
               ) -> Starlette:
    standin = StandIn(oidc_token=oidc_token, dedup_window_seconds=dedup_window_seconds)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        standin.client = httpx.AsyncClient(limits=httpx.Limits(max_connections=2000, max_keepalive_connections=200))
        try:
            yield
        finally:
            for loop in standin.loops.values():
                loop.cancel()
            await standin.client.aclose()

    async def json_body(request: Request) -> dict[str, Any] | None:
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    async def api(request: Request):
        path = request.path_params["path"]
        body = await json_body(request) if request.method in ("POST", "PATCH") else {}
        if body is None:
            return _google_error(400, "INVALID_ARGUMENT", "the body is not a JSON object")
        match = re.fullmatch(r"(projects/[^/]+/locations/[^/]+)/queues", path)
        if match and request.method == "POST":
            name = body.get("name", "")
            if not QUEUE_PATH.fullmatch(name) or not name.startswith(match.group(1) + "/"):
                return _google_error(400, "INVALID_ARGUMENT", f"invalid queue name {name!r}")
            if name in standin.queues:
                return _google_error(409, "ALREADY_EXISTS", "Requested entity already exists")
            try:
                return JSONResponse(standin.add_queue(name, body).to_json())
            except (ValueError, TypeError) as exc:
                return _google_error(400, "INVALID_ARGUMENT", str(exc))
        match = re.fullmatch(r"(projects/[^/]+/locations/[^/]+/queues/[^/]+)(/tasks)?", path)
        if not match:
            return _google_error(404, "NOT_FOUND", f"no such resource {path!r}")
        queue = standin.queues.get(match.group(1))
        if queue is None:
            return _google_error(404, "NOT_FOUND", f"Queue does not exist: {match.group(1)}")
        if not match.group(2):
            if request.method == "GET":
                return JSONResponse(queue.to_json())
            if request.method == "PATCH":
                mask = request.query_params.get("updateMask")
                try:
                    queue.apply(body, set(mask.split(",")) if mask else None)
                except (ValueError, TypeError) as exc:
                    return _google_error(400, "INVALID_ARGUMENT", str(exc))
                return JSONResponse(queue.to_json())
            return _google_error(405, "METHOD_NOT_ALLOWED", request.method)
        if request.method == "GET":
            return JSONResponse({"tasks": [t.to_json() for t in queue.tasks.values()]})
        if request.method != "POST":
            return _google_error(405, "METHOD_NOT_ALLOWED", request.method)
        return create_task(queue, body.get("task"))

    def create_task(queue: Queue, spec: Any):
        if not isinstance(spec, dict) or not isinstance(spec.get("httpRequest"), dict):
            return _google_error(400, "INVALID_ARGUMENT", "task.httpRequest is required")
        http = spec["httpRequest"]
        name = spec.get("name")
        if name:
            prefix = f"{queue.name}/tasks/"
            task_id = name[len(prefix):] if name.startswith(prefix) else ""
            if not TASK_ID.fullmatch(task_id):
                return _google_error(400, "INVALID_ARGUMENT", f"invalid task name {name!r}")
            if standin.name_is_taken(queue, task_id):
                return _google_error(409, "ALREADY_EXISTS", "Requested entity already exists")
        else:
            task_id = f"{time.time_ns()}{id(spec) % 1000:03d}"
        url = http.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            return _google_error(400, "INVALID_ARGUMENT", "httpRequest.url must be an http(s) URL")
        try:
            body = base64.b64decode(http.get("body") or "", validate=True)
            deadline = _seconds(spec.get("dispatchDeadline"), 600.0)
        except (binascii.Error, ValueError) as exc:
            return _google_error(400, "INVALID_ARGUMENT", f"httpRequest.body / dispatchDeadline: {exc}")
        if not 15 <= deadline <= 1800:
            return _google_error(400, "INVALID_ARGUMENT", "dispatchDeadline must be between 15s and 1800s")
        headers = http.get("headers") or {}
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            return _google_error(400, "INVALID_ARGUMENT", "httpRequest.headers must map names to strings")
        task = Task(id=task_id, queue=queue.name, url=url, method=http.get("httpMethod", "POST"), headers=headers,
                    body=body, oidc=http.get("oidcToken"), schedule_time=time.time(), dispatch_deadline=deadline)
        standin.add_task(queue, task)
        return JSONResponse(task.to_json())

    def admin_queue(request: Request) -> Queue | None:
        wanted = request.path_params["queue"]
        return next((q for name, q in standin.queues.items() if name.rsplit("/", 1)[-1] == wanted), None)

    async def attempts(request: Request):
        queue = admin_queue(request)
        if queue is None:
            return JSONResponse({"error": "no such queue"}, status_code=404)
        return JSONResponse({"attempts": queue.attempts})

    async def tasks(request: Request):
        queue = admin_queue(request)
        if queue is None:
            return JSONResponse({"error": "no such queue"}, status_code=404)
        return JSONResponse({"live": [{**t.to_json(), "running": t.running} for t in queue.tasks.values()],
                             "finished": queue.finished, "running": queue.running})

    async def pause(request: Request):
        queue = admin_queue(request)
        if queue is None or request.path_params["verb"] not in ("pause", "resume"):
            return JSONResponse({"error": "no such queue or verb (pause, resume)"}, status_code=404)
        queue.paused = request.path_params["verb"] == "pause"
        queue.wake.set()
        return JSONResponse(queue.to_json())

    async def health(request: Request):
        return JSONResponse({"status": "ok", "queues": sorted(standin.queues)})

    return Starlette(routes=[
        Route("/_standin/health", health),
        Route("/_standin/queues/{queue}/attempts", attempts),
        Route("/_standin/queues/{queue}/tasks", tasks),
        Route("/_standin/queues/{queue}/{verb:str}", pause, methods=["POST"]),
        Route("/v2/{path:path}", api, methods=["GET", "POST", "PATCH"]),
    ], lifespan=lifespan)
