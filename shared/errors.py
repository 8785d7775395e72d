"""The error tree. One place (`http_status`) maps errors to HTTP status codes.

    BridgeError
     +-- PermanentError        retrying cannot help (bad input, bad config, GHL 4xx except 429)
     |    +-- BadRequest          400: the request names no call id, is not JSON, has a wrong type ...
     |    +-- Unauthorized        401: missing or wrong secret / signature
     |    +-- MethodNotAllowed    405
     |    +-- PayloadTooLarge     413
     |    +-- UnknownLocation     422: no active integration for the location
     |    +-- ConfigurationError  500: the deployment is missing a setting
     |    +-- GhlPermanentError   GHL answered 400/401/403/404/422 (carries GHL's message)
     +-- TransientError        retry later (429, 5xx, timeouts, database unavailable)
          +-- DatabaseUnavailable 503: PostgREST or Postgres cannot be reached
          +-- GhlTransientError   GHL 429/5xx/network
          +-- BudgetExhausted     the daily GHL budget (minus the reserve) is spent
          +-- LocationBusy        409: another runner of the same job works the location (job lease)
          +-- TasksUnavailable    503: Cloud Tasks did not take a task (429/5xx/network, after retries)

Messages are written for the caller: they say what was wrong, never echo a secret or a token.
"""

from __future__ import annotations


class BridgeError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, details: dict | None = None):
        super().__init__(message)
        self.message = message
        self.details = details or {}

    def to_body(self) -> dict:
        body = {"error": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


class PermanentError(BridgeError):
    status = 400
    code = "permanent_error"


class TransientError(BridgeError):
    status = 503
    code = "temporarily_unavailable"
    retry_after_seconds: int | None = None  # when set, answered as a Retry-After header


class BadRequest(PermanentError):
    status = 400
    code = "bad_request"


class Unauthorized(PermanentError):
    status = 401
    code = "unauthorized"


class MethodNotAllowed(PermanentError):
    status = 405
    code = "method_not_allowed"


class PayloadTooLarge(PermanentError):
    status = 413
    code = "payload_too_large"


class UnknownLocation(PermanentError):
    status = 422
    code = "unknown_location"


class ConfigurationError(PermanentError):
    status = 500
    code = "configuration_error"


class DatabaseUnavailable(TransientError):
    status = 503
    code = "database_unavailable"


def http_status(error: BaseException) -> int:
    """The one mapping from errors to HTTP status codes (anything unexpected is a 500)."""
    return error.status if isinstance(error, BridgeError) else 500


class GhlPermanentError(PermanentError):
    """GHL answered 400/401/403/404/422 (or another 4xx but 429): retrying the same request cannot help."""

    status = 502
    code = "ghl_rejected"

    def __init__(self, status_code: int, message: str, *, details: dict | None = None):
        super().__init__(f"GHL answered {status_code}: {message}", details=details)
        self.status_code = status_code
        self.ghl_message = message


class GhlTransientError(TransientError):
    """GHL kept answering 429/5xx, timing out or refusing connections after the client's retries."""

    status = 503
    code = "ghl_unavailable"


class BudgetExhausted(TransientError):
    """The location's daily GHL budget, minus the configured reserve, is spent (raised before sending)."""

    status = 503
    code = "ghl_budget_exhausted"


class LocationBusy(TransientError):
    """Another runner of the same job holds the location's job lease (shared/services/fanout.py): a task
    answered this is retried by its queue, with backoff, until the lease is free or its attempts run out."""

    status = 409
    code = "location_busy"


class TasksUnavailable(TransientError):
    """Cloud Tasks kept failing (429/5xx/network) or refused a task; the dispatch is retried by the scheduler."""

    status = 503
    code = "cloud_tasks_unavailable"
