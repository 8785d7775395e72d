"""Structured logs: one JSON line per event with `severity` and `message` (what Cloud Logging reads).

Usage: `log = get_logger(__name__)`; `log.info("webhook ingested", extra={"fields": {...}})`.
Secrets registered with `register_secret` are masked in every line, whatever logged them.
"""

from __future__ import annotations

import json
import logging
import sys
import threading

_SECRETS: set[str] = set()
_lock = threading.Lock()
_configured = False


def register_secret(value: str | None) -> None:
    if value and len(value) >= 6:
        _SECRETS.add(value)


def redact(text: str) -> str:
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, "[REDACTED]")
    return text


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"severity": record.levelname, "message": record.getMessage(), "logger": record.name}
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return redact(json.dumps(entry, default=str))


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a record is emitted (a test's captured stream included)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # logging.StreamHandler sets it; the property always reads sys.stderr
        pass


def configure_logging(level: str = "INFO", *, to_stderr: bool = False) -> None:
    """The first call wins. Functions log to stdout (Cloud Logging reads it); the CLI passes to_stderr=True
    before anything else runs, so its stdout holds only its results (one JSON document with --json)."""
    global _configured
    with _lock:
        if _configured:
            return
        handler = _StderrHandler() if to_stderr else logging.StreamHandler(sys.stdout)
        handler.setFormatter(JsonFormatter())
        root = logging.getLogger("ghl_bridge")
        root.handlers = [handler]
        root.setLevel(level.upper())
        root.propagate = False
        # A line holds none of these; skip gathering them for every record (the logging HOWTO's
        # "Optimization": no caller frame walk, thread, process or multiprocessing lookup).
        logging._srcfile = None
        logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
        _configured = True


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger("ghl_bridge." + name)
