"""The deployment endpoint: an authenticating reverse proxy in front of the replicas.

``/api/deployments/{id}/v1/...`` (and ``/v2/...`` for Triton) goes to one healthy replica,
chosen by least outstanding requests with round robin among equals, and the response
comes back chunk by chunk as the replica produces it (server-sent events included).
The app hands these calls to :meth:`DeploymentProxy.dispatch` before its middleware and
router (see there); the routes in ``endpoints.py`` describe the endpoint in the API
document and serve the calls that need the CORS middleware.

What it routes by comes from the database (the supervisor's health verdicts), cached for
:data:`ROUTE_TTL_SECONDS`; a replica that refuses a connection is taken out locally at
once and the request goes to the next one. That is also done when a connection dies
before any response came back: inference requests change nothing on a replica, so
running one again elsewhere is safe.
So a replica that is drained, restarted or killed costs no request while another is up.

Credentials (the owner's token or API key, a deployment key, or the own token of a
running job of the owner's) are resolved through the identity service and cached for
:data:`AUTH_TTL_SECONDS` per credential digest: a revoked key, or the token of a job that
has ended, stops working within that time. The endpoint is not under the API's per-user
rate limit: inference traffic is the owner's own compute, measured by
``requests_per_second`` instead.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import anyio.to_thread
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from spark_trainer.deployments import backends
from spark_trainer.deployments.repository import DeploymentRepository
from spark_trainer.deployments.service import DEPLOYMENT_KEY_PREFIX
from spark_trainer.deployments.upstream import (
    UpstreamFailed,
    UpstreamGone,
    UpstreamPool,
    UpstreamResponse,
)
from spark_trainer.errors import (
    PayloadTooLarge,
    ServiceUnavailable,
    SparkTrainerError,
    Unauthorized,
    ValidationFailed,
)
from spark_trainer.errors import resource_not_found as not_found
from spark_trainer.exception_handlers import error_response, internal_error
from spark_trainer.identity import service as identity
from spark_trainer.identity.tokens import api_key_digest
from spark_trainer.jobs import service as jobs
from spark_trainer.kit.text import MESSAGE, find_control_character
from spark_trainer.models import ReplicaState
from spark_trainer.runtime.jobfiles import JOB_TOKEN_PREFIX
from spark_trainer.settings import Settings

ROUTE_TTL_SECONDS = 0.5
# Older than this, the table is reloaded in the background while requests go on using it.
ROUTE_REFRESH_SECONDS = 0.3
AUTH_TTL_SECONDS = 5.0
# A credential this close to its expiry is resolved again in the background.
AUTH_REFRESH_SECONDS = 1.0
AUTH_CACHE_MAX = 10_000
DOWN_SECONDS = 2.0
RATE_WINDOW_SECONDS = 10
RATE_FLUSH_SECONDS = 1.0
CONNECT_TIMEOUT_SECONDS = 2.0
# A long generation may take minutes before its first byte.
READ_TIMEOUT_SECONDS = 600.0

ENDPOINT_PREFIX = "/api/deployments/"
# Sent on to the replica: never the caller's SparkTrainer credential.
FORWARDED_REQUEST_HEADERS = frozenset({b"content-type", b"accept", b"user-agent", b"x-request-id"})
# Hop-by-hop headers (RFC 9110 §7.6.1) and the ones the API server writes itself.
DROPPED_RESPONSE_HEADERS = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"date",
        b"server",
    }
)


logger = logging.getLogger(__name__)
# The request log line the app's middleware writes for every other request.
request_log = logging.getLogger("spark_trainer.request")


class BadGateway(SparkTrainerError):
    status_code = 502
    error = "Bad Gateway"


class RequestTimeout(SparkTrainerError):
    status_code = 408
    error = "Request Timeout"


class _ClientGone(Exception):
    """The client disconnected before its request body had arrived: nothing to answer."""


@dataclass(frozen=True, slots=True)
class _Call:
    deployment_id: str
    path: str  # on the replica, without the leading slash: "v1/completions"


@dataclass(frozen=True, slots=True)
class _Limits:
    max_bytes: int
    read_timeout: float


def _endpoint_call(scope: Scope) -> _Call | None:
    """The call a request makes, when it is one to a deployment's endpoint (the routes'
    ``/api/deployments/{deployment_id}/v1|v2/{path}``, GET or POST)."""
    path: str = scope["path"]
    if (
        scope["type"] != "http"
        or not path.startswith(ENDPOINT_PREFIX)
        or scope["method"] not in ("GET", "POST")
        or scope.get("root_path")
    ):
        return None
    deployment_id, _, rest = path[len(ENDPOINT_PREFIX) :].partition("/")
    if not deployment_id or not rest.startswith(("v1/", "v2/")):
        return None
    return _Call(deployment_id, rest)


def _check_text(call: _Call, query: bytes) -> None:
    # What the app's reject_control_characters dependency checks: path parameters and
    # query parameters, named as it names them. Printable ASCII with no escapes (the
    # usual call) has none to find.
    plain = call.deployment_id + call.path + query.decode("latin-1")
    if b"%" not in query and plain.isascii() and plain.isprintable():
        return
    params = [("deployment_id", call.deployment_id), ("path", call.path[3:])]
    if query:
        params += parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    for name, value in params:
        bad = find_control_character(value) or find_control_character(name)
        if bad is not None:
            raise ValidationFailed(f"{name}: {MESSAGE} (found {bad})")


def _bearer(authorization: bytes | None) -> str:
    # As deps.bearer_credential, on the raw header.
    if not authorization:
        raise Unauthorized("Missing Authorization header")
    scheme, _, credential = authorization.decode("latin-1").partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        raise Unauthorized("Authorization header must be 'Bearer <token>'")
    return credential.strip()


async def _read_body(receive: Receive, declared: bytes | None, limits: _Limits | None) -> bytes:
    """The request body, under the app's size limit and read timeout (``limits``; None
    where the app's middleware applies them)."""
    too_large = (
        None
        if limits is None
        else PayloadTooLarge(f"Request body exceeds the limit of {limits.max_bytes} bytes")
    )
    if limits is not None and declared is not None:
        try:
            size = int(declared)
        except ValueError:
            size = -1
        if size > limits.max_bytes:
            raise too_large  # type: ignore[misc]
    chunks = []
    received = 0
    while True:
        if limits is None:
            message = await receive()
        else:
            try:
                async with asyncio.timeout(limits.read_timeout):
                    message = await receive()
            except TimeoutError:
                raise RequestTimeout(
                    f"The request body stalled for more than {limits.read_timeout:g} s"
                ) from None
        if message["type"] != "http.request":
            raise _ClientGone
        chunk = message.get("body", b"")
        received += len(chunk)
        if limits is not None and received > limits.max_bytes:
            raise too_large  # type: ignore[misc]
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _log_failure(task: asyncio.Task[None]) -> None:
    # A reload nobody waited for fails quietly otherwise; the table's age then makes the
    # next request wait for one, which answers the error.
    if not task.cancelled() and task.exception() is not None:
        logger.warning("route table not reloaded", exc_info=task.exception())


class _Relayed(Response):
    """What the endpoint's routes answer: the proxy relays the call when the response is
    sent, on the ASGI channel itself, as on its early path."""

    def __init__(self, proxy: DeploymentProxy, call: _Call, credential: str) -> None:
        super().__init__()
        self.proxy = proxy
        self.call = call
        self.credential = credential

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state: dict[str, Any] = {"status": 500, "user_id": None}
        await self.proxy._serve(scope, receive, send, self.call, self.credential, None, None, state)


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


class RequestRate:
    """Requests per second per deployment over a sliding window of whole wall-clock
    seconds, across API processes.

    A request costs one dict increment here; the counts go to the database at most once a
    second (one upsert per deployment and second, on a worker thread), where every API
    process adds to the same rows. A rate is what the database holds for the window plus
    what this process has not written yet, so it is right wherever it is asked.
    """

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        window_seconds: int = RATE_WINDOW_SECONDS,
        flush_seconds: float = RATE_FLUSH_SECONDS,
    ) -> None:
        self.session_factory = session_factory
        self.window = window_seconds
        self.flush_seconds = flush_seconds
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, int], int] = {}
        # Taken for writing, not yet committed: still this process's to count.
        self._writing: dict[tuple[str, int], int] = {}
        self._next_flush = 0.0
        self._scheduled = False

    def hit(self, deployment_id: str) -> float | None:
        """Counts one request. Returns in how many seconds the caller should flush (0: now)
        when no flush is scheduled yet, else None: every count is written within about
        ``flush_seconds``, also the last ones of a burst."""
        key = (deployment_id, int(time.time()))
        with self._lock:
            self._pending[key] = self._pending.get(key, 0) + 1
            if self._scheduled:
                return None
            self._scheduled = True
            return max(0.0, self._next_flush - time.monotonic())

    def flush(self) -> None:
        with self._lock:
            self._writing, self._pending = self._pending, {}
        try:
            if self._writing:
                with self.session_factory.begin() as session:
                    DeploymentRepository(session).add_request_counts(
                        self._writing, keep_after=int(time.time()) - 6 * self.window
                    )
        except SQLAlchemyError:
            # The database is away: keep the counts for the next flush.
            logger.warning("request counts not written; retrying", exc_info=True)
            with self._lock:
                for key, count in self._writing.items():
                    self._pending[key] = self._pending.get(key, 0) + count
        finally:
            with self._lock:
                self._writing = {}
                self._next_flush = time.monotonic() + self.flush_seconds
                self._scheduled = False

    def rates(self, session: Session, deployment_ids: Sequence[str]) -> dict[str, float]:
        after = int(time.time()) - self.window
        totals = dict.fromkeys(deployment_ids, 0)
        totals.update(DeploymentRepository(session).request_counts(deployment_ids, after))
        with self._lock:
            for source in (self._pending, self._writing):
                for (deployment_id, second), count in source.items():
                    if second > after and deployment_id in totals:
                        totals[deployment_id] += count
        return {d: totals[d] / self.window for d in deployment_ids}

    def rate(self, session: Session, deployment_id: str) -> float:
        return self.rates(session, [deployment_id])[deployment_id]


class DeploymentProxy:
    def __init__(self, session_factory: sessionmaker[Session], signing_key: str) -> None:
        self.session_factory = session_factory
        self.signing_key = signing_key
        self.rates = RequestRate(session_factory)
        self._flush_task: asyncio.Future[None] | None = None
        self._flush_timer: asyncio.TimerHandle | None = None
        self._routes: dict[str, _Route] = {}
        self._loaded_at = float("-inf")
        self._invalidated = False
        self._reload: asyncio.Task[None] | None = None
        self._auth: dict[str, _Principal] = {}
        self._resolving: set[str] = set()
        # Reloads and re-checks in progress: referenced until done, awaited on close.
        self._background: set[asyncio.Task[None]] = set()
        # Keyed by replica port (replicas listen on this node's loopback).
        self._outstanding: dict[int, int] = {}
        self._down: dict[int, float] = {}
        self._turn = itertools.count()
        self._pool = UpstreamPool(CONNECT_TIMEOUT_SECONDS)

    def invalidate(self) -> None:
        """Makes the next request start a reload of the route table (after a supervisor
        pass, from its thread); a request that finds no route or no healthy replica
        waits for that reload before it answers 404 or 503.

        The pass has just health-checked every replica, so local down marks give way to
        it: a replica restarted on the same port is used again at once rather than after
        DOWN_SECONDS. One that died since its probe costs one refused connection, and
        the request moves on to the next replica.
        """
        self._down.clear()
        self._invalidated = True

    async def aclose(self) -> None:
        await asyncio.gather(*self._background, return_exceptions=True)
        self._pool.close()
        if self._flush_timer is not None:
            self._flush_timer.cancel()
        if self._flush_task is not None:
            await self._flush_task
        await anyio.to_thread.run_sync(self.rates.flush)

    # --- the request path -------------------------------------------------------------

    async def dispatch(
        self, scope: Scope, receive: Receive, send: Send, settings: Settings
    ) -> bool:
        """Serves an HTTP call to a deployment's endpoint ahead of the app's middleware and
        router; False when ``scope`` is anything else (the app serves it).

        Routing, dependency resolution and five middleware layers were most of the proxy's
        CPU per request, so this path does what they would do for it itself: the request
        id header and log line, the body size limit and read timeout, the control
        character check of the path and query, and errors in the spec's JSON. A request
        with an ``Origin`` header, where CORS is configured, goes the app's way instead, for
        the CORS middleware's headers; the routes stay for that and for the API document.
        """
        call = _endpoint_call(scope)
        if call is None or (
            settings.cors_origins and any(name == b"origin" for name, _ in scope["headers"])
        ):
            return False
        request_id = secrets.token_hex(8)
        started = time.perf_counter()
        state: dict[str, Any] = {"status": 500, "user_id": None}
        try:
            await self._serve(
                scope,
                receive,
                send,
                call,
                None,
                _Limits(settings.max_request_bytes, settings.body_read_timeout_seconds),
                request_id.encode("ascii"),
                state,
            )
        finally:
            request_log.info(
                "request",
                extra={
                    "request_id": request_id,
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": state["status"],
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    "user_id": state["user_id"],
                },
            )
        return True

    async def forward(
        self, request: Request, credential: str, deployment_id: str, path: str
    ) -> Response:
        """The answer of the endpoint's routes, for calls that went the app's way (the
        app's middleware has then applied the limits and adds the request id)."""
        return _Relayed(self, _Call(deployment_id, path), credential)

    async def _serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        call: _Call,
        credential: str | None,
        limits: _Limits | None,
        request_id: bytes | None,
        state: dict[str, Any],
    ) -> None:
        try:
            response, port = await self._open(scope, receive, call, credential, limits, state)
        except SparkTrainerError as exc:
            headers = dict(exc.headers)
            if request_id is not None:
                headers["X-Request-ID"] = request_id.decode()
            reply = error_response(exc.status_code, exc.error, exc.message, headers or None)
        except _ClientGone:
            state["status"] = 499
            return
        except Exception as exc:
            reply = internal_error(scope["method"], scope["path"], exc)
            if request_id is not None:
                reply.headers["X-Request-ID"] = request_id.decode()
        else:
            state["status"] = response.status
            await self._relay(scope, receive, send, response, port, request_id)
            return
        state["status"] = reply.status_code
        await reply(scope, receive, send)

    async def _open(
        self,
        scope: Scope,
        receive: Receive,
        call: _Call,
        credential: str | None,
        limits: _Limits | None,
        state: dict[str, Any],
    ) -> tuple[UpstreamResponse, int]:
        """Checks and authorizes the call, and sends it to a replica: the replica's
        response (a small body already read, a stream not yet) and the replica's port."""
        # One pass over the headers for everything this path reads of them.
        authorization = declared = None
        forwarded = []
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name == b"content-length":
                declared = value
            elif name in FORWARDED_REQUEST_HEADERS:
                forwarded.append(b"%s: %s\r\n" % (name, value))
        query = scope["query_string"]
        if limits is not None:
            _check_text(call, query)
        if credential is None:
            credential = _bearer(authorization)
        route = await self._route(call.deployment_id)
        if route is None:
            raise not_found("Deployment", call.deployment_id)
        state["user_id"] = await self._authorize(credential, route)
        body = await _read_body(receive, declared, limits)
        delay = self.rates.hit(call.deployment_id)
        if delay is not None:
            loop = asyncio.get_running_loop()
            if delay > 0:
                self._flush_timer = loop.call_later(delay, self._flush_counts, loop)
            else:
                self._flush_counts(loop)
        # The raw query string as received: the replica parses it, not the proxy.
        target = b"/%s?%s" % (call.path.encode(), query) if query else b"/" + call.path.encode()
        header_lines = b"".join(forwarded)
        tried: set[int] = set()
        while True:
            port = self._pick(route, tried)
            if port is None:
                raise ServiceUnavailable(
                    f"Deployment '{call.deployment_id}' has no healthy replica ({route.status})"
                )
            tried.add(port)
            self._outstanding[port] = self._outstanding.get(port, 0) + 1
            try:
                response = await self._pool.request(
                    backends.LISTEN_HOST,
                    port,
                    scope["method"],
                    target,
                    header_lines,
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
            return response, port

    async def _relay(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        response: UpstreamResponse,
        port: int,
        request_id: bytes | None,
    ) -> None:
        headers = [(k, v) for k, v in response.headers if k not in DROPPED_RESPONSE_HEADERS]
        if request_id is not None:
            headers.append((b"x-request-id", request_id))
        if response.content is None:
            # Streamed as it arrives; Starlette's streaming response also ends the relay
            # when the client goes away.
            streaming = StreamingResponse(self._chunks(response, port), response.status)
            streaming.raw_headers = headers
            await streaming(scope, receive, send)
            return
        # A small body of announced length (a non-streamed completion), read with the head:
        # relayed whole in one message, without the streaming machinery's task and framing.
        self._release(port)
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": response.content})

    async def _chunks(self, response: UpstreamResponse, port: int) -> AsyncIterator[bytes]:
        try:
            async for chunk in response.chunks(READ_TIMEOUT_SECONDS):
                yield chunk
        finally:
            response.release()
            self._release(port)

    def _flush_counts(self, loop: asyncio.AbstractEventLoop) -> None:
        # Off the request path, on a worker thread; the reference keeps the future alive.
        self._flush_task = loop.run_in_executor(None, self.rates.flush)

    def _release(self, port: int) -> None:
        self._outstanding[port] = max(0, self._outstanding.get(port, 1) - 1)

    def _pick(self, route: _Route, tried: set[int]) -> int | None:
        if len(route.ports) == 1 and not tried and not self._down:
            return route.ports[0]
        now = time.monotonic()
        candidates = [u for u in route.ports if u not in tried and self._down.get(u, 0.0) <= now]
        if not candidates:
            return None
        turn = next(self._turn)
        # Least outstanding first; the turn counter rotates among equals (round robin).
        order = candidates[turn % len(candidates) :] + candidates[: turn % len(candidates)]
        return min(order, key=lambda u: self._outstanding.get(u, 0))

    # --- routes ------------------------------------------------------------------------

    async def _route(self, deployment_id: str) -> _Route | None:
        """The deployment's route, from a table at most ROUTE_TTL_SECONDS old.

        A table past ROUTE_REFRESH_SECONDS, or one a supervisor pass has made stale, is
        reloaded in the background: requests go on with it meanwhile (waiting for each
        reload, twice a second, stalled every request in flight for a thread hop and a
        query). Only a request whose deployment the stale table lacks, or has no healthy
        replica for, waits for the reload, which may know better.
        """
        age = time.monotonic() - self._loaded_at
        if age > ROUTE_TTL_SECONDS:
            await asyncio.shield(self._start_reload())
            return self._routes.get(deployment_id)
        reload = None
        if self._invalidated or age > ROUTE_REFRESH_SECONDS:
            reload = self._start_reload()
        elif self._reload is not None and not self._reload.done():
            reload = self._reload
        route = self._routes.get(deployment_id)
        if reload is not None and (route is None or not route.ports):
            await asyncio.shield(reload)
            route = self._routes.get(deployment_id)
        return route

    def _start_reload(self) -> asyncio.Task[None]:
        """The reload in progress, or a new one (one at a time)."""
        if self._reload is None or self._reload.done():
            # Cleared before the query: a pass that ends during it asks for another.
            self._invalidated = False
            self._reload = asyncio.get_running_loop().create_task(self._reload_routes())
            self._reload.add_done_callback(_log_failure)
            self._background.add(self._reload)
            self._reload.add_done_callback(self._background.discard)
        return self._reload

    async def _reload_routes(self) -> None:
        started = time.monotonic()
        self._routes = await anyio.to_thread.run_sync(self._load_routes)
        self._loaded_at = started

    def _load_routes(self) -> dict[str, _Route]:
        ports: dict[str, list[int]] = {}
        found: dict[str, tuple[str, str]] = {}
        with self.session_factory() as session:
            for deployment_id, owner_id, status, state, port in DeploymentRepository(
                session
            ).routes():
                found[deployment_id] = (owner_id, status)
                entry = ports.setdefault(deployment_id, [])
                if state == ReplicaState.HEALTHY and port is not None:
                    entry.append(port)
        return {
            deployment_id: _Route(deployment_id, owner, status, tuple(ports[deployment_id]))
            for deployment_id, (owner, status) in found.items()
        }

    # --- credentials ---------------------------------------------------------------------

    async def _authorize(self, credential: str, route: _Route) -> str | None:
        """The caller's user id (None for a deployment key), or Unauthorized/NotFound."""
        digest = api_key_digest(credential)
        principal = self._auth.get(digest)
        now = time.monotonic()
        if principal is None or principal.expires < now:
            principal = await anyio.to_thread.run_sync(self._resolve, credential, digest)
            self._remember(digest, principal)
        elif principal.expires - now < AUTH_REFRESH_SECONDS and digest not in self._resolving:
            # Resolved again before it expires, so a steady caller never waits for it;
            # each answer still rests on a check at most AUTH_TTL_SECONDS old.
            self._resolving.add(digest)
            task = asyncio.get_running_loop().create_task(self._re_resolve(credential, digest))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        allowed = (
            principal.deployment_id == route.deployment_id
            if principal.deployment_id is not None
            else principal.is_admin or principal.user_id == route.owner_id
        )
        if not allowed:
            # As for every owned resource: someone else's deployment does not exist.
            raise not_found("Deployment", route.deployment_id)
        return principal.user_id

    def _remember(self, digest: str, principal: _Principal) -> None:
        if len(self._auth) >= AUTH_CACHE_MAX:
            self._auth.clear()
        self._auth[digest] = principal

    async def _re_resolve(self, credential: str, digest: str) -> None:
        try:
            principal = await anyio.to_thread.run_sync(self._resolve, credential, digest)
        except SparkTrainerError:
            # Revoked, disabled or ended: the next call resolves it, and is refused, itself.
            self._auth.pop(digest, None)
        except SQLAlchemyError:
            # The database is away: the entry expires as it would have.
            logger.warning("credential not re-checked", exc_info=True)
        else:
            self._remember(digest, principal)
        finally:
            self._resolving.discard(digest)

    def _resolve(self, credential: str, digest: str) -> _Principal:
        expires = time.monotonic() + AUTH_TTL_SECONDS
        with self.session_factory.begin() as session:
            if credential.startswith(DEPLOYMENT_KEY_PREFIX):
                key = DeploymentRepository(session).key_by_digest(digest)
                if key is None:
                    raise Unauthorized("Invalid deployment key")
                return _Principal(None, False, key.deployment_id, expires)
            if credential.startswith(JOB_TOKEN_PREFIX):
                # A running job of the owner's (an evaluation probing the deployment).
                owner = jobs.job_token_owner(session, credential)
                return _Principal(owner.id, False, None, expires)
            user = identity.authenticate(session, self.signing_key, credential)
            return _Principal(user.id, user.is_admin, None, expires)
