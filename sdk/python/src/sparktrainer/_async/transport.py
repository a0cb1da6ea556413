"""HTTP for the client: authentication, token refresh, retries, errors, streaming.

This module is the source of ``_sync/transport.py`` (``scripts/generate-sdks``): write it
for asyncio; the blocking twin is derived from it word by word.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

import httpx

from sparktrainer import __version__
from sparktrainer._common import (
    IDEMPOTENT,
    RETRY_STATUSES,
    AsyncLock,
    RetryPolicy,
    TokenState,
    async_sleep,
)
from sparktrainer.errors import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    error_from_response,
)

# Failures after which the request surely did not reach the application.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class AsyncAuth:
    """An API key or access token as given, or a username and password that are exchanged
    for tokens, refreshed before they expire (and once more if the server still says 401)."""

    def __init__(
        self,
        api_key: str | None = None,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        if api_key is None and (username is None or password is None):
            raise ValueError("give api_key=, or username= and password=")
        self.api_key = api_key
        self.username = username
        self.password = password
        self.tokens = TokenState()
        self._lock = AsyncLock()

    @property
    def renewable(self) -> bool:
        return self.api_key is None

    async def header(self, transport: AsyncTransport, *, force: bool = False) -> str:
        if self.api_key is not None:
            return f"Bearer {self.api_key}"
        async with self._lock:
            if force or not self.tokens.fresh():
                await self._renew(transport)
            return f"Bearer {self.tokens.access_token}"

    async def _renew(self, transport: AsyncTransport) -> None:
        if self.tokens.refresh_token is not None:
            try:
                response = await transport.send_raw(
                    "POST",
                    "/api/auth/refresh",
                    json={"refresh_token": self.tokens.refresh_token},
                )
                self.tokens.update(response.json())
                return
            except AuthenticationError:
                # Spent or revoked (another process may have rotated it): log in again.
                self.tokens.refresh_token = None
        response = await transport.send_raw(
            "POST",
            "/api/auth/login",
            json={"username": self.username, "password": self.password},
        )
        self.tokens.update(response.json())


class AsyncTransport:
    def __init__(
        self,
        base_url: str,
        auth: AsyncAuth,
        *,
        timeout: float | httpx.Timeout = 30.0,
        retry: RetryPolicy | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.auth = auth
        self.retry = retry or RetryPolicy()
        self.http = http_client or httpx.AsyncClient(
            base_url=self.base_url,
            timeout=timeout,
            headers={"User-Agent": f"sparktrainer-python/{__version__}"},
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def send_raw(
        self,
        method: str,
        route: str,
        *,
        path: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
        authenticated: bool = False,
        content_factory: Any = None,
    ) -> httpx.Response:
        """One request with retries; raises the typed error for an error status.

        ``content_factory`` builds a fresh request body for every attempt (an upload read
        from disk cannot be sent twice from one iterator).
        """
        url = expand(route, path)
        attempt = 0
        renewed = False
        while True:
            attempt += 1
            request_headers = dict(headers or {})
            if authenticated:
                request_headers["Authorization"] = await self.auth.header(self)
            request = self.http.build_request(
                method,
                url,
                params=_clean(params),
                json=json,
                headers=request_headers,
                content=content_factory() if content_factory is not None else None,
            )
            try:
                response = await self.http.send(request, stream=stream)
            except httpx.TransportError as exc:
                retryable = isinstance(exc, _NOT_SENT) or method in IDEMPOTENT
                delay = self.retry.delay(attempt) if retryable else None
                if delay is None:
                    kind = APITimeoutError if isinstance(exc, httpx.TimeoutException) else None
                    raise (kind or APIConnectionError)(
                        f"{method} {url}: {exc.__class__.__name__}: {exc}"
                    ) from exc
                await async_sleep(delay)
                continue
            if response.status_code < 400:
                return response
            body = await response.aread()
            await response.aclose()
            if response.status_code in RETRY_STATUSES:
                delay = self.retry.delay(attempt, response.headers.get("Retry-After"))
                if delay is not None:
                    await async_sleep(delay)
                    continue
            if (
                response.status_code == 401
                and authenticated
                and self.auth.renewable
                and not renewed
            ):
                # The token was refused although it looked fresh (clock skew, revocation):
                # get a new one once, then let a second 401 through.
                renewed = True
                await self.auth.header(self, force=True)
                attempt -= 1
                continue
            raise error_from_response(response.status_code, response.headers, body)

    async def request(
        self,
        method: str,
        route: str,
        *,
        path: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        content_factory: Any = None,
    ) -> httpx.Response:
        return await self.send_raw(
            method,
            route,
            path=path,
            params=params,
            json=json,
            headers=headers,
            authenticated=True,
            content_factory=content_factory,
        )

    @asynccontextmanager
    async def stream(
        self,
        method: str,
        route: str,
        *,
        path: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> AsyncIterator[httpx.Response]:
        response = await self.send_raw(
            method,
            route,
            path=path,
            params=params,
            headers=headers,
            stream=True,
            authenticated=True,
        )
        try:
            yield response
        finally:
            await response.aclose()


def expand(route: str, values: Mapping[str, str] | None) -> str:
    """``/api/jobs/{job_id}`` with its parameters filled in, each percent-encoded.

    Every call names its route as the OpenAPI document spells it, which is what the
    route-drift test reads.
    """
    if not values:
        return route
    return route.format_map(
        {k: quote(v, safe="/" if k == "path" else "") for k, v in values.items()}
    )


def _clean(params: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if params is None:
        return None
    return {k: v for k, v in params.items() if v is not None}
