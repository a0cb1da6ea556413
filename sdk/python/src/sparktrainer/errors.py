"""The SDK's exceptions, one hierarchy built from the API's error JSON.

Every error the server answers is ``{"error": "Not Found", "message": "...", "status": 404}``;
the client raises the subclass of :class:`APIStatusError` that matches its status::

    SparkTrainerError
    ├── APIConnectionError            the server could not be reached (after retries)
    │   └── APITimeoutError
    ├── StreamError                   a stream broke and could not be resumed
    └── APIStatusError                the server answered an error status
        ├── ValidationError           400, 422: bad input; ``message`` names the field
        ├── AuthenticationError       401: missing, invalid or expired credentials
        ├── PermissionDeniedError     403
        ├── NotFoundError             404 (someone else's resource answers 404 too)
        ├── ConflictError             409: e.g. cancelling a job that has ended
        ├── PayloadTooLargeError      413
        ├── RangeNotSatisfiableError  416
        ├── RateLimitError            429, with ``retry_after`` in seconds
        └── ServerError               5xx
            └── ServiceUnavailableError  503
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from time import time
from typing import Any

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "ConflictError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RangeNotSatisfiableError",
    "RateLimitError",
    "ServerError",
    "ServiceUnavailableError",
    "SparkTrainerError",
    "StreamError",
    "ValidationError",
    "error_from_response",
    "parse_retry_after",
]


class SparkTrainerError(Exception):
    """Base of every exception the SDK raises."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class APIConnectionError(SparkTrainerError):
    pass


class APITimeoutError(APIConnectionError):
    pass


class StreamError(SparkTrainerError):
    pass


class APIStatusError(SparkTrainerError):
    def __init__(
        self, status: int, error: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.headers: dict[str, str] = {k.lower(): v for k, v in (headers or {}).items()}

    def __str__(self) -> str:
        return f"{self.status} {self.error}: {self.message}"


class ValidationError(APIStatusError):
    pass


class AuthenticationError(APIStatusError):
    pass


class PermissionDeniedError(APIStatusError):
    pass


class NotFoundError(APIStatusError):
    pass


class ConflictError(APIStatusError):
    pass


class PayloadTooLargeError(APIStatusError):
    pass


class RangeNotSatisfiableError(APIStatusError):
    pass


class RateLimitError(APIStatusError):
    @property
    def retry_after(self) -> float | None:
        """Seconds the server asked to wait (``Retry-After``), if it said."""
        return parse_retry_after(self.headers.get("retry-after"))


class ServerError(APIStatusError):
    pass


class ServiceUnavailableError(ServerError):
    pass


_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: ValidationError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    416: RangeNotSatisfiableError,
    422: ValidationError,
    429: RateLimitError,
    503: ServiceUnavailableError,
}


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds: either delta-seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time())
    except (TypeError, ValueError):
        return None


def error_from_response(status: int, headers: Mapping[str, str], body: bytes) -> APIStatusError:
    """The exception for an error response, read from the spec's error JSON when present."""
    error, message = f"HTTP {status}", body.decode("utf-8", "replace")[:500] or f"HTTP {status}"
    try:
        payload: Any = json.loads(body)
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        error = str(payload.get("error") or error)
        message = str(payload.get("message") or message)
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else APIStatusError)
    return cls(status, error, message, headers)
