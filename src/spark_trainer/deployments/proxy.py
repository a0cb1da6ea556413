"""The deployment endpoint: an authenticating reverse proxy in front of the replicas.

``/api/deployments/{id}/v1/...`` (and ``/v2/...`` for Triton) goes to one healthy replica,
chosen by least outstanding requests with round robin among equals, and the response
comes back chunk by chunk as the replica produces it (server-sent events included).

What it routes by comes from the database (the supervisor's health verdicts), cached for
:data:`ROUTE_TTL_SECONDS`; a replica that refuses a connection is taken out locally at
once and the request goes to the next one. That is also done when a connection dies
before any response came back: inference requests change nothing on a replica, so
running one again elsewhere is safe.
So a replica that is drained, restarted or killed costs no request while another is up.

Credentials are resolved through the identity service and cached for
:data:`AUTH_TTL_SECONDS` per credential digest: a revoked key stops working within that
time. The endpoint is not under the API's per-user rate limit: inference traffic is the
owner's own compute, measured by ``requests_per_second`` instead.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import anyio.to_thread
from sqlalchemy.orm import Session, sessionmaker
from starlette.requests import Request
from starlette.responses import StreamingResponse

from spark_trainer.deployments import backends
from spark_trainer.deployments.repository import DeploymentRepository
from spark_trainer.deployments.service import DEPLOYMENT_KEY_PREFIX
from spark_trainer.deployments.upstream import (
    UpstreamFailed,
    UpstreamGone,
    UpstreamPool,
    UpstreamResponse,
)
from spark_trainer.errors import ServiceUnavailable, SparkTrainerError, Unauthorized
from spark_trainer.errors import resource_not_found as not_found
from spark_trainer.identity import service as identity
from spark_trainer.identity.tokens import api_key_digest
from spark_trainer.models import ReplicaState

ROUTE_TTL_SECONDS = 0.5
AUTH_TTL_SECONDS = 5.0
AUTH_CACHE_MAX = 10_000
DOWN_SECONDS = 2.0
RATE_WINDOW_SECONDS = 10
CONNECT_TIMEOUT_SECONDS = 2.0
# A long generation may take minutes before its first byte.
READ_TIMEOUT_SECONDS = 600.0

# Sent on to the replica: never the caller's SparkTrainer credential.
FORWARDED_REQUEST_HEADERS = ("content-type", "accept", "user-agent", "x-request-id")
# Hop-by-hop headers (RFC 9110 §7.6.1) and the ones the API server writes itself.
DROPPED_RESPONSE_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "date",
        "server",
    }
)


class BadGateway(SparkTrainerError):
    status_code = 502
    error = "Bad Gateway"


@dataclass(frozen=True, slots=True)
class _Route:
    deployment_id: str
    owner_id: str
    status: str
    ports: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class _Principal:
    user_id: str | None
    is_admin: bool
    deployment_id: str | None  # a deployment key's one deployment
    expires: float


@dataclass
class _Counter:
    lock: threading.Lock = field(default_factory=threading.Lock)
    buckets: deque[list[int]] = field(default_factory=deque)


class RequestRate:
    """Requests per second per deployment over a sliding window of whole seconds."""

    def __init__(self, window_seconds: int = RATE_WINDOW_SECONDS) -> None:
        self.window = window_seconds
        self._counters: dict[str, _Counter] = {}

    def hit(self, deployment_id: str) -> None:
        counter = self._counters.setdefault(deployment_id, _Counter())
        second = int(time.monotonic())
        with counter.lock:
            if counter.buckets and counter.buckets[-1][0] == second:
                counter.buckets[-1][1] += 1
            else:
                counter.buckets.append([second, 1])
            while counter.buckets and counter.buckets[0][0] <= second - self.window:
                counter.buckets.popleft()

    def rate(self, deployment_id: str) -> float:
        counter = self._counters.get(deployment_id)
        if counter is None:
            return 0.0
        since = int(time.monotonic()) - self.window
        with counter.lock:
            total = sum(count for second, count in counter.buckets if second > since)
        return total / self.window


class DeploymentProxy:
    def __init__(self, session_factory: sessionmaker[Session], signing_key: str) -> None:
        self.session_factory = session_factory
        self.signing_key = signing_key
        self.rates = RequestRate()
        self._routes: dict[str, _Route] = {}
        self._loaded_at = float("-inf")
        self._refresh: asyncio.Lock | None = None
        self._auth: dict[str, _Principal] = {}
        # Keyed by replica port (replicas listen on this node's loopback).
        self._outstanding: dict[int, int] = {}
        self._down: dict[int, float] = {}
        self._turn = itertools.count()
        self._pool = UpstreamPool(CONNECT_TIMEOUT_SECONDS)

    def invalidate(self) -> None:
        """Makes the next request reload the route table (after a supervisor pass)."""
        self._loaded_at = float("-inf")

    async def aclose(self) -> None:
        self._pool.close()

    # --- the request path -------------------------------------------------------------

    async def forward(
        self, request: Request, credential: str, deployment_id: str, path: str
    ) -> StreamingResponse:
        route = (await self._route_table()).get(deployment_id)
        if route is None:
            raise not_found("Deployment", deployment_id)
        await self._authorize(credential, route)
        body = await request.body()
        self.rates.hit(deployment_id)
        headers = [(k, v) for k in FORWARDED_REQUEST_HEADERS if (v := request.headers.get(k))]
        target = f"/{path}?{request.url.query}" if request.url.query else f"/{path}"
        tried: set[int] = set()
        while True:
            port = self._pick(route, tried)
            if port is None:
                raise ServiceUnavailable(
                    f"Deployment '{deployment_id}' has no healthy replica ({route.status})"
                )
            tried.add(port)
            self._outstanding[port] = self._outstanding.get(port, 0) + 1
            try:
                response = await self._pool.request(
                    backends.LISTEN_HOST,
                    port,
                    request.method,
                    target,
                    headers,
                    body,
                    READ_TIMEOUT_SECONDS,
                )
            except UpstreamGone:
                # Refused, or the connection died before any response: the replica is
                # gone (a kept-alive connection to a killed process fails this way).
                # Inference requests change nothing on the replica, so the next one
                # may safely take it; this one is out until its health check says so.
                self._release(port)
                self._down[port] = time.monotonic() + DOWN_SECONDS
                continue
            except UpstreamFailed as exc:
                self._release(port)
                raise BadGateway(f"the replica failed to answer: {exc}") from None
            return StreamingResponse(
                self._relay(response, port),
                status_code=response.status,
                headers={
                    k: v for k, v in response.headers if k.lower() not in DROPPED_RESPONSE_HEADERS
                },
            )

    async def _relay(self, response: UpstreamResponse, port: int) -> AsyncIterator[bytes]:
        try:
            async for chunk in response.chunks(READ_TIMEOUT_SECONDS):
                yield chunk
        finally:
            response.release()
            self._release(port)

    def _release(self, port: int) -> None:
        self._outstanding[port] = max(0, self._outstanding.get(port, 1) - 1)

    def _pick(self, route: _Route, tried: set[int]) -> int | None:
        now = time.monotonic()
        candidates = [u for u in route.ports if u not in tried and self._down.get(u, 0.0) <= now]
        if not candidates:
            return None
        turn = next(self._turn)
        # Least outstanding first; the turn counter rotates among equals (round robin).
        order = candidates[turn % len(candidates) :] + candidates[: turn % len(candidates)]
        return min(order, key=lambda u: self._outstanding.get(u, 0))

    # --- routes ------------------------------------------------------------------------

    async def _route_table(self) -> dict[str, _Route]:
        if time.monotonic() - self._loaded_at <= ROUTE_TTL_SECONDS:
            return self._routes
        if self._refresh is None:
            self._refresh = asyncio.Lock()
        async with self._refresh:
            # One reload however many requests found the table stale at once.
            if time.monotonic() - self._loaded_at > ROUTE_TTL_SECONDS:
                started = time.monotonic()
                self._routes = await anyio.to_thread.run_sync(self._load_routes)
                self._loaded_at = started
        return self._routes

    def _load_routes(self) -> dict[str, _Route]:
        ports: dict[str, list[int]] = {}
        found: dict[str, tuple[str, str]] = {}
        with self.session_factory() as session:
            for deployment, replica in DeploymentRepository(session).routes():
                found[deployment.id] = (deployment.owner_id, deployment.status)
                entry = ports.setdefault(deployment.id, [])
                if (
                    replica is not None
                    and replica.state == ReplicaState.HEALTHY
                    and replica.port is not None
                ):
                    entry.append(replica.port)
        return {
            deployment_id: _Route(deployment_id, owner, status, tuple(ports[deployment_id]))
            for deployment_id, (owner, status) in found.items()
        }

    # --- credentials ---------------------------------------------------------------------

    async def _authorize(self, credential: str, route: _Route) -> None:
        digest = api_key_digest(credential)
        principal = self._auth.get(digest)
        if principal is None or principal.expires < time.monotonic():
            principal = await anyio.to_thread.run_sync(self._resolve, credential, digest)
            if len(self._auth) >= AUTH_CACHE_MAX:
                self._auth.clear()
            self._auth[digest] = principal
        allowed = (
            principal.deployment_id == route.deployment_id
            if principal.deployment_id is not None
            else principal.is_admin or principal.user_id == route.owner_id
        )
        if not allowed:
            # As for every owned resource: someone else's deployment does not exist.
            raise not_found("Deployment", route.deployment_id)

    def _resolve(self, credential: str, digest: str) -> _Principal:
        expires = time.monotonic() + AUTH_TTL_SECONDS
        with self.session_factory.begin() as session:
            if credential.startswith(DEPLOYMENT_KEY_PREFIX):
                key = DeploymentRepository(session).key_by_digest(digest)
                if key is None:
                    raise Unauthorized("Invalid deployment key")
                return _Principal(None, False, key.deployment_id, expires)
            user = identity.authenticate(session, self.signing_key, credential)
            return _Principal(user.id, user.is_admin, None, expires)
