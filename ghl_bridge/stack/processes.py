"""Starting, watching and stopping the stack's child processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_is_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Service:
    name: str
    pid: int
    port: int
    log: str

    def is_alive(self) -> bool:
        return pid_is_alive(self.pid)


def pid_is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0): reap it if it is ours.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def start_process(name: str, args: list[str], *, port: int, log_dir: Path, env: dict[str, str] | None = None,
                  cwd: Path | None = None) -> Service:
    """Start a process in its own session (so `stack down` can stop it and its children as one group)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, cwd=cwd, start_new_session=True,
        )
    return Service(name=name, pid=proc.pid, port=port, log=str(log_path))


def stop_process(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM the process group, then SIGKILL what is left after timeout."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not pid_is_alive(pid):
                return
            time.sleep(0.05)


def wait_until_http_answers(url: str, service: Service, timeout: float = 30.0, ok=lambda r: True) -> None:
    """Poll url until it answers (any HTTP answer, or one that `ok` accepts); fail early if the process died."""
    deadline = time.monotonic() + timeout
    last_error = "no answer"
    while time.monotonic() < deadline:
        if not service.is_alive():
            raise RuntimeError(f"{service.name} exited during start-up; see {service.log}:\n{tail(service.log)}")
        try:
            response = httpx.get(url, timeout=1.0)
            if ok(response):
                return
            last_error = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            last_error = type(exc).__name__
        time.sleep(0.05)
    raise RuntimeError(f"{service.name} did not answer at {url} within {timeout:.0f} s ({last_error}); "
                       f"see {service.log}:\n{tail(service.log)}")


def tail(path: str, lines: int = 20) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
