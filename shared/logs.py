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


def configure_logging(level: str = "INFO", stream=None) -> None:
    """JSON lines on `stream` (default stdout, where Cloud Functions collects them; operator commands pass stderr so
    their stdout holds only their result)."""
    global _configured
    with _lock:
        if _configured:
            return
        handler = logging.StreamHandler(stream if stream is not None else sys.stdout)
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
