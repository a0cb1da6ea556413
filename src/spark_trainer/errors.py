"""The error hierarchy every service raises; one handler turns each into the spec's JSON.

    SparkTrainerError             500 "Internal Server Error"
    ├── BadRequest                400 "Bad Request"
    │   └── ValidationFailed      400 "Validation Error"
    ├── Unauthorized              401 "Unauthorized"
    ├── Forbidden                 403 "Forbidden"
    ├── NotFound                  404 "Not Found"
    ├── MethodNotAllowed          405 "Method Not Allowed"
    ├── Conflict                  409 "Conflict"
    ├── PayloadTooLarge           413 "Payload Too Large"
    ├── RateLimited               429 "Too Many Requests"
    └── ServiceUnavailable        503 "Service Unavailable"

Services raise these in domain terms; ``exception_handlers`` is the only place that
knows how they look on the wire: ``{"error": ..., "message": ..., "status": ...}``.
"""

from __future__ import annotations

from collections.abc import Mapping


class SparkTrainerError(Exception):
    status_code = 500
    error = "Internal Server Error"

    def __init__(self, message: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = dict(headers or {})


class BadRequest(SparkTrainerError):
    status_code = 400
    error = "Bad Request"


class ValidationFailed(BadRequest):
    error = "Validation Error"


class Unauthorized(SparkTrainerError):
    status_code = 401
    error = "Unauthorized"

    def __init__(self, message: str = "Authentication required") -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(SparkTrainerError):
    status_code = 403
    error = "Forbidden"


class NotFound(SparkTrainerError):
    status_code = 404
    error = "Not Found"


class MethodNotAllowed(SparkTrainerError):
    status_code = 405
    error = "Method Not Allowed"


class Conflict(SparkTrainerError):
    status_code = 409
    error = "Conflict"


class PayloadTooLarge(SparkTrainerError):
    status_code = 413
    error = "Payload Too Large"


class RateLimited(SparkTrainerError):
    status_code = 429
    error = "Too Many Requests"


class ServiceUnavailable(SparkTrainerError):
    status_code = 503
    error = "Service Unavailable"


def resource_not_found(kind: str, resource_id: str) -> NotFound:
    return NotFound(f"{kind} '{resource_id}' not found")
