"""The stand-in's admin API for tests and benchmarks: what each queue dispatched and holds."""

from __future__ import annotations

import time

import httpx


class TasksAdmin:
    def __init__(self, base_url: str, *, timeout: float = 30.0):
        self._http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "TasksAdmin":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _get(self, path: str) -> dict:
        answer = self._http.get(path)
        answer.raise_for_status()
        return answer.json()

    def attempts(self, queue: str) -> list[dict]:
        """Every dispatch of the queue: task, attempt, started_at, ended_at (epoch s), status, error."""
        return self._get(f"/_standin/queues/{queue}/attempts")["attempts"]

    def tasks(self, queue: str) -> dict:
        """{"live": [task ...], "finished": [{task, outcome, dispatch_count, last_status, ended_at}], "running"}"""
        return self._get(f"/_standin/queues/{queue}/tasks")

    def pause(self, queue: str) -> None:
        self._http.post(f"/_standin/queues/{queue}/pause").raise_for_status()

    def resume(self, queue: str) -> None:
        self._http.post(f"/_standin/queues/{queue}/resume").raise_for_status()

    def wait_until_idle(self, queue: str, timeout: float = 120.0) -> dict:
        """Until the queue holds no task (every one completed or gave up); the last tasks() answer."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.tasks(queue)
            if not state["live"]:
                return state
            if time.monotonic() > deadline:
                raise TimeoutError(f"queue {queue} still holds {len(state['live'])} task(s) after {timeout:.0f} s")
            time.sleep(0.1)
