"""The Cloud Tasks stand-in, through the production adapter (shared/adapters/cloud_tasks.py): queue settings,
name dedup, dispatch concurrency, retries with backoff, attempts, and the headers a target receives."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from shared.adapters.cloud_tasks import CloudTasks, HttpTask
from tests.conftest import TEST_SCHEDULER_SECRET, unique


class Target:
    """A local HTTP target recording every request; answers by the body's "answer" (503 once = fail the first
    attempt only), after `delay` seconds."""

    def __init__(self, delay: float = 0.3):
        self.requests: list[dict] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.lock = threading.Lock()
        target = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with target.lock:
                    target.in_flight += 1
                    target.most_in_flight = max(target.most_in_flight, target.in_flight)
                started = time.time()
                time.sleep(delay)
                retry = int(self.headers["X-CloudTasks-TaskRetryCount"])
                status = {"ok": 200, "fail_once": 503 if retry == 0 else 200, "always_fail": 500}[body["answer"]]
                with target.lock:
                    target.in_flight -= 1
                    target.requests.append({"body": body, "started": started, "status": status,
                                            "headers": {k.lower(): v for k, v in self.headers.items()}})
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/work"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def of(self, name: str) -> list[dict]:
        return [r for r in self.requests if r["body"]["name"] == name]


@pytest.fixture
def target():
    server = Target()
    yield server
    server.server.shutdown()


def test_dispatch_keeps_the_queues_limits_retries_with_backoff_and_sends_the_headers(fanout_stack, tasks_admin,
                                                                                    target):
    from ghl_bridge.stack.stack import LOCAL_TASKS_LOCATION, LOCAL_TASKS_PROJECT

    tasks = CloudTasks(api_url=fanout_stack["cloud_tasks_url"], project=LOCAL_TASKS_PROJECT,
                       location=LOCAL_TASKS_LOCATION)
    queue = unique("q").replace("_", "-")
    tasks.ensure_queue(queue, max_concurrent_dispatches=1, max_dispatches_per_second=100, max_attempts=3,
                       min_backoff_seconds=0.3, max_backoff_seconds=1)
    updated = tasks.ensure_queue(queue, max_concurrent_dispatches=2, max_dispatches_per_second=100,
                                 max_attempts=3, min_backoff_seconds=0.3, max_backoff_seconds=1)  # exists: patched
    assert updated["rateLimits"]["maxConcurrentDispatches"] == 2
    assert tasks.get_queue(queue)["retryConfig"]["maxAttempts"] == 3

    answers = ["ok"] * 4 + ["fail_once", "always_fail"]
    specs = [HttpTask(f"t{i}", target.url, {"name": f"t{i}", "answer": answer}) for i, answer in enumerate(answers)]
    created = tasks.create_tasks(queue, specs, oidc_service_account="invoker@local-project.iam.gserviceaccount.com",
                                 dispatch_deadline_seconds=30)
    assert created == {f"t{i}": "created" for i in range(6)}
    again = tasks.create_tasks(queue, specs[:2], oidc_service_account=None, dispatch_deadline_seconds=30)
    assert again == {"t0": "exists", "t1": "exists"}  # live names are taken

    deadline = time.monotonic() + 30
    while tasks_admin.tasks(queue)["live"] and time.monotonic() < deadline:
        time.sleep(0.1)
    state = tasks_admin.tasks(queue)
    outcomes = {t["task"]: (t["outcome"], t["dispatch_count"]) for t in state["finished"]}
    assert outcomes == {"t0": ("completed", 1), "t1": ("completed", 1), "t2": ("completed", 1),
                        "t3": ("completed", 1), "t4": ("completed", 2), "t5": ("attempts_exhausted", 3)}
    assert target.most_in_flight == 2  # maxConcurrentDispatches, reached and never passed

    first = target.of("t0")[0]["headers"]
    assert first["x-cloudtasks-queuename"] == queue and first["x-cloudtasks-taskname"] == "t0"
    assert first["x-cloudtasks-taskretrycount"] == "0" and first["x-cloudtasks-taskexecutioncount"] == "0"
    assert float(first["x-cloudtasks-tasketa"]) > 0 and first["content-type"] == "application/json"
    assert first["authorization"] == f"Bearer {TEST_SCHEDULER_SECRET}"  # the local stand-in's OIDC token
    retried = target.of("t4")
    assert [r["headers"]["x-cloudtasks-taskretrycount"] for r in retried] == ["0", "1"]
    assert retried[1]["headers"]["x-cloudtasks-taskexecutioncount"] == "1"
    failing = target.of("t5")
    gaps = [b["started"] - a["started"] for a, b in zip(failing, failing[1:])]
    # each retry waits its backoff (0.3 s, then 0.6 s) after the previous answer (0.3 s of work)
    assert gaps[0] >= 0.3 + 0.3 - 0.05 and gaps[1] >= 0.3 + 0.6 - 0.05, gaps

    # An ended task's name stays taken (the dedup window).
    assert tasks.create_tasks(queue, specs[:1], oidc_service_account=None,
                              dispatch_deadline_seconds=30) == {"t0": "exists"}


def test_the_standin_answers_like_google(fanout_stack):
    import httpx

    base = f"{fanout_stack['cloud_tasks_url']}/v2/projects/local-project/locations/local/queues"
    missing = httpx.post(f"{base}/nope/tasks", json={"task": {"httpRequest": {"url": "http://x"}}})
    assert missing.status_code == 404 and missing.json()["error"]["status"] == "NOT_FOUND"
    bad = httpx.post(f"{base}/ghl-bridge-sync/tasks", json={"task": {"name": "x/tasks/a b", "httpRequest": {}}})
    assert bad.status_code == 400 and bad.json()["error"]["status"] == "INVALID_ARGUMENT"
    exists = httpx.post(base, json={"name": "projects/local-project/locations/local/queues/ghl-bridge-sync"})
    assert exists.status_code == 409 and exists.json()["error"]["status"] == "ALREADY_EXISTS"
