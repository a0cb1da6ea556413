"""Maps every failure a request can meet onto the spec's error JSON, in one place."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from spark_trainer.errors import PayloadTooLarge, SparkTrainerError

logger = logging.getLogger(__name__)


def error_body(status: int, error: str, message: str) -> dict[str, Any]:
    return {"error": error, "message": message, "status": status}


def error_response(
    status: int, error: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(status, error, message), status_code=status, headers=headers)


def _field_path(loc: Sequence[Any]) -> str:
    # FastAPI prefixes the location with where it came from ("body", "query", ...).
    parts = [str(p) for p in loc]
    if parts and parts[0] in {"body", "query", "path", "header", "cookie", "form"}:
        where, rest = parts[0], parts[1:]
        return ".".join(rest) if rest else where
    return ".".join(parts)


def describe_validation_errors(errors: Sequence[Any]) -> str:
    described = []
    for err in errors:
        field = _field_path(err.get("loc", ()))
        msg = err.get("msg", "is invalid")
        if err.get("type") == "json_invalid":
            described.append("request body is not valid JSON")
        elif err.get("type") == "missing":
            described.append(f"{field}: field required")
        else:
            described.append(f"{field}: {msg}")
    return "; ".join(described) or "invalid request"


async def _spark_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, SparkTrainerError)
    return error_response(exc.status_code, exc.error, exc.message, exc.headers or None)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(400, "Validation Error", describe_validation_errors(exc.errors()))


# Our own name where Python's phrase differs from it (and changes between versions: 413 is
# "Request Entity Too Large" on 3.11, "Content Too Large" on 3.13).
_PHRASES = {PayloadTooLarge.status_code: PayloadTooLarge.error}


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    phrase = _PHRASES.get(status) or (
        HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    )
    message = exc.detail if isinstance(exc.detail, str) and exc.detail != phrase else None
    if message is None:
        message = {
            404: "No such resource or route",
            405: "Method not allowed on this route",
        }.get(status, phrase)
    return error_response(status, phrase, message, dict(exc.headers or {}) or None)


def internal_error(method: str, path: str, exc: BaseException) -> JSONResponse:
    """The 500 for an exception nothing else handled. The traceback goes to the server
    log, never to the client."""
    logger.exception("unhandled error", extra={"method": method, "path": path}, exc_info=exc)
    return error_response(500, "Internal Server Error", "An internal error occurred")


async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
    # Only reached if RequestContextMiddleware itself fails: it answers every other 500.
    return internal_error(request.method, request.url.path, exc)


def install(app: FastAPI) -> None:
    app.add_exception_handler(SparkTrainerError, _spark_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unhandled)
