"""The webhook spool's two use cases: keep a request the database could not take, and replay it later.

keep_for_replay (the webhook, on DatabaseUnavailable): writes the authenticated raw request to the spool
(the body exactly as received, when it was received and the request id; never a header, so never the secret)
and returns the 503 to answer, with Retry-After. Without a configured spool, or when the spool write fails
too, the 503 is answered all the same: the sender's retry is then the last line.

replay_spool (the scheduler's {"action": "replay_spool"} on process-ghl-import, and `ghl-bridge replay`):
sends every spooled request through the webhook's own service (same parsing, normalisation and SQL
functions; no new authentication, since only authenticated requests were spooled) with its ORIGINAL received
time, and deletes each object only after the database took it:
  * accepted (inserted/updated/unchanged) -> deleted;
  * permanently refused (400, 422) -> the rejection is in the event log -> deleted;
  * database or object store unavailable -> the replay stops; this object and the rest stay for the next run.
Each event records its spool key, and the SQL functions record a key once: a replay that died between an
ingest and the deletion, or two replays at once, change nothing.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared import errors
from shared.logs import get_logger
from shared.services.ingest_call_event import Rpc, ingest_webhook_body

log = get_logger("services.replay_spool")

RETRY_AFTER_SECONDS = 60


class SpoolUnavailable(errors.TransientError):
    code = "spool_unavailable"


def _safe_request_id(request_id: str) -> str:
    # the request id may come from the sender's X-Request-Id header: keep object keys short and plain
    return re.sub(r"[^A-Za-z0-9_.-]", "_", request_id)[:64] or "request"


def keep_for_replay(spool, raw_body: bytes, *, received_at: datetime, request_id: str,
                    cause: errors.BridgeError) -> errors.DatabaseUnavailable:
    """Spool the request (when a spool is configured) and return the DatabaseUnavailable (503) to answer."""
    details: dict[str, Any] = {"spooled": False, "retry_after_seconds": RETRY_AFTER_SECONDS}
    if spool is None:
        message = ("the database cannot be reached and no spool is configured: the request was not kept; "
                   "send it again later")
        log.error("webhook not spooled: no spool configured", extra={"fields": {
            "request_id": request_id, "reason": cause.message, "body_bytes": len(raw_body)}})
    else:
        try:
            key = spool.put(raw_body, received_at=received_at, request_id=_safe_request_id(request_id))
        except Exception as exc:  # noqa: BLE001 - whatever the object store did, the answer is a 503
            message = ("the database cannot be reached and the request could not be spooled either: "
                       "send it again later")
            log.error("webhook not spooled: the spool write failed", extra={"fields": {
                "request_id": request_id, "reason": cause.message, "spool_error": type(exc).__name__,
                "body_bytes": len(raw_body)}})
        else:
            details["spooled"] = True
            message = ("the database cannot be reached: the request was kept and will be replayed; "
                       "sending it again later is safe too")
            log.warning("webhook spooled", extra={"fields": {
                "request_id": request_id, "reason": cause.message, "spool_key": key, "body_bytes": len(raw_body)}})
    error = errors.DatabaseUnavailable(message, details=details)
    error.retry_after_seconds = RETRY_AFTER_SECONDS
    return error


@dataclass
class ReplayReport:
    configured: bool = True
    listed: int = 0  # objects taken up by this run
    replayed: int = 0  # accepted by the database (outcomes below), deleted
    rejected: int = 0  # permanently refused, recorded in the event log, deleted
    already_recorded: int = 0  # of replayed + rejected: recorded by an earlier (interrupted) replay
    kept: int = 0  # left in the spool by this run (a transient failure, or not reached)
    unreadable: list[str] = field(default_factory=list)  # objects that are no spool document (kept, reported)
    outcomes: Counter = field(default_factory=Counter)
    stopped_by: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"configured": self.configured, "listed": self.listed, "replayed": self.replayed,
                "rejected": self.rejected, "already_recorded": self.already_recorded, "kept": self.kept,
                "unreadable": list(self.unreadable), "outcomes": dict(self.outcomes),
                "stopped_by": self.stopped_by, "seconds": round(self.seconds, 3)}


def _spool_call(what: str, operation: Callable[[], Any]) -> Any:
    try:
        return operation()
    except Exception as exc:  # noqa: BLE001 - botocore's errors are many; all mean "try again later" here
        raise SpoolUnavailable(f"object store unavailable ({what}: {type(exc).__name__})") from exc


def _is_missing(exc: BaseException) -> bool:
    response = getattr(exc, "response", None)
    return isinstance(response, dict) and response.get("Error", {}).get("Code") in ("NoSuchKey", "404")


def replay_spool(spool, rpc: Rpc, *, default_region: str = "US", deadline: float | None = None,
                 workers: int = 4, limit: int | None = None) -> ReplayReport:
    """Re-ingest every spooled request (at most `limit`), `workers` at a time, until done, a transient failure,
    or the monotonic `deadline`. The merge does not depend on the order of a call's hits, so the order of the
    replay does not matter either (keys still sort by arrival, and are taken up in that order)."""
    started = time.monotonic()
    report = ReplayReport()
    if spool is None:
        report.configured = False
        return report
    lock = threading.Lock()
    stop = threading.Event()

    def replay_one(key: str) -> None:
        if stop.is_set() or (deadline is not None and time.monotonic() > deadline):
            with lock:
                report.kept += 1
                report.stopped_by = report.stopped_by or "deadline"
            return
        try:
            request = spool.get(key)
        except (ValueError, KeyError, TypeError) as exc:  # not a spool document: keep it for a person to look at
            log.error("unreadable spool object kept", extra={"fields": {"spool_key": key, "error": type(exc).__name__}})
            with lock:
                report.unreadable.append(key)
            return
        except Exception as exc:  # noqa: BLE001 - botocore's errors: the object store is unavailable
            if _is_missing(exc):  # another replay finished it meanwhile
                return
            _stop(f"object store unavailable (get: {type(exc).__name__})", key)
            return
        try:
            result = ingest_webhook_body(request.body, rpc=rpc, default_region=default_region,
                                         received_at=request.received_at, spool_key=key)
        except errors.PermanentError as exc:
            # refused for good (recorded in the event log by the service): nothing more a replay can do
            outcome, already = ("rejected", False)
            log.info("spooled webhook rejected", extra={"fields": {"spool_key": key, "error": exc.code,
                                                                   "reason": exc.message[:200]}})
        except errors.BridgeError as exc:
            _stop(exc.message, key)
            return
        else:
            outcome, already = result.outcome, result.already_recorded
        try:
            _spool_call("delete", lambda: spool.delete(key))
        except SpoolUnavailable as exc:
            _stop(exc.message, key)  # recorded already; the next replay finds it recorded and deletes it
            return
        with lock:
            if outcome == "rejected":
                report.rejected += 1
            else:
                report.replayed += 1
                report.outcomes[outcome] += 1
            report.already_recorded += already

    def _stop(reason: str, key: str | None = None) -> None:
        with lock:
            report.kept += 1
            if not stop.is_set():
                report.stopped_by = reason
                log.warning("replay stopped; the rest stays spooled", extra={"fields": {
                    "reason": reason, "spool_key": key}})
            stop.set()

    keys = _spool_call("list", lambda: list(_limited(spool.keys(), limit)))
    report.listed = len(keys)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        list(pool.map(replay_one, keys))
    report.seconds = time.monotonic() - started
    log.info("spool replayed", extra={"fields": report.to_dict()})
    return report


def _limited(keys, limit: int | None) -> list[str]:
    taken = []
    for key in keys:
        if limit is not None and len(taken) >= limit:
            break
        taken.append(key)
    return taken


def replay_from_settings(settings, database, spool, *, deadline: float | None = None) -> ReplayReport:
    """The scheduler's and the CLI's entry: the real rpc port over the service-role client."""
    from shared.adapters.supabase_db import call_rpc

    return replay_spool(spool, lambda function, params: call_rpc(database, function, params),
                        default_region=settings.phone_default_region, deadline=deadline)
