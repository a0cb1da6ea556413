"""Pure ASGI middleware: request log and headers, the body size limit and read timeout."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Collection
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from spark_trainer.exception_handlers import error_response, internal_error

logger = logging.getLogger("spark_trainer.request")


class RequestContextMiddleware:
    """Adds X-Request-ID and the rate-limit headers, and logs one line per request.

    It also answers the 500 for an exception no handler took, from inside the stack, so
    that response carries the same headers and the connection stays open (Starlette's
    outermost error middleware would answer it without them and re-raise to the server,
    which then drops the connection).

    The log line carries the path without its query string: stream endpoints accept a
    token there, and tokens never reach a log.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = secrets.token_hex(8)
        started = time.perf_counter()
        status_code = 500
        started_response = False
        state: dict[str, Any] = scope.setdefault("state", {})

        async def send_wrapper(message: Message) -> None:
            nonlocal status_code, started_response
            if message["type"] == "http.response.start":
                started_response = True
                status_code = message["status"]
                headers = MutableHeaders(scope=message)
                headers["X-Request-ID"] = request_id
                for name, value in state.get("rate_limit_headers", {}).items():
                    headers.setdefault(name, value)
            await send(message)

        try:
            try:
                await self.app(scope, receive, send_wrapper)
            except Exception as exc:
                if scope["type"] != "http" or started_response:
                    raise  # nothing can be answered any more
                response = internal_error(scope["method"], scope["path"], exc)
                await response(scope, receive, send_wrapper)
        finally:
            logger.info(
                "request",
                extra={
                    "request_id": request_id,
                    "method": scope.get("method", "WS"),
                    "path": scope["path"],
                    "status": status_code,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    "user_id": state.get("user_id"),
                },
            )


class BodySizeLimitMiddleware:
    """413 for bodies above the limit, by Content-Length or by counting a streamed body.

    ``own_limit`` names the (method, path) pairs passed through untouched: routes that
    stream large bodies (dataset uploads) and enforce a limit of their own.
    """

    def __init__(
        self, app: ASGIApp, max_bytes: int, own_limit: Collection[tuple[str, str]] = ()
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.own_limit = frozenset(own_limit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (scope["method"], scope["path"]) in self.own_limit:
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.max_bytes:
                    await self._reject(scope, receive, send)
                    return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # An HTTPException passes through FastAPI's body parsing untouched and
                    # reaches the one error handler, which renders the spec's 413.
                    raise HTTPException(413, self._message())
            return message

        await self.app(scope, limited_receive, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            413,
            "Payload Too Large",
            self._message(),
        )
        await response(scope, receive, send)

    def _message(self) -> str:
        return f"Request body exceeds the limit of {self.max_bytes} bytes"


class BodyReadTimeoutMiddleware:
    """408 when a request body stops arriving for ``timeout`` seconds.

    Only while the body is incomplete: once it has all arrived, waiting on ``receive``
    means waiting for a disconnect (streaming responses do), which may last for hours.
    """

    def __init__(self, app: ASGIApp, timeout: float) -> None:
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body_done = False

        async def timed_receive() -> Message:
            nonlocal body_done
            if body_done:
                return await receive()
            try:
                async with asyncio.timeout(self.timeout):
                    message = await receive()
            except TimeoutError:
                # Like the size limit: an HTTPException reaches the one error handler,
                # and an upload in progress aborts its partial file on the way out.
                raise HTTPException(
                    408, f"The request body stalled for more than {self.timeout:g} s"
                ) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        await self.app(scope, timed_receive, send)
