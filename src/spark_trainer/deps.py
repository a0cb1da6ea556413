"""FastAPI dependencies shared by every router: the request's session and its user."""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Annotated, ParamSpec, TypeVar

import anyio
import anyio.to_thread
from fastapi import APIRouter, Depends, Request, Response
from fastapi.routing import APIRoute
from fastapi.security import APIKeyQuery, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from spark_trainer.context import AppContext
from spark_trainer.db.reads import ReadConnection, ReadDatabase
from spark_trainer.errors import RateLimited, Unauthorized
from spark_trainer.identity import service as identity
from spark_trainer.identity.cache import UserSnapshot
from spark_trainer.kit.responses import json_response
from spark_trainer.models import Tier, User
from spark_trainer.ratelimit import LocalWindows

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")
U = TypeVar("U", User, UserSnapshot)

# Dependencies that do no I/O are ``async def``: FastAPI runs plain ``def`` dependencies in
# the thread pool, and each of those hops costs more than the dependency itself.


async def get_context(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


Context = Annotated[AppContext, Depends(get_context)]


async def get_session(ctx: Context) -> AsyncIterator[Session]:
    """One transaction per request: committed when the handler succeeds, else rolled back.

    Creating a session does no I/O (it connects on first use). A plain ``def`` handler
    commits in its own worker thread (see :func:`one_hop`), so by the time this resumes
    there is usually nothing left to do but drop the session, which needs no thread.
    """
    async with ctx.session_slots:
        session = ctx.session_factory()
        _request_session.set(session)
        try:
            yield session
        except BaseException:
            await _finish(session, commit=False)
            raise
        await _finish(session, commit=True)
    # Side effects a service deferred until its writes are visible (waking the
    # scheduler for a new job): never before the commit, never after a rollback.
    for callback in session.info.pop("after_commit", []):
        callback()


# The request's session, for one_hop's wrapper: it runs in the request's own task, so it
# sees only its own request's session.
_request_session: ContextVar[Session | None] = ContextVar("request_session", default=None)


async def _finish(session: Session, *, commit: bool) -> None:
    if session.get_transaction() is None:
        session.close()  # no connection is held: nothing to send to the database
        return
    # A thread of its own, not one from the shared pool: this session holds a pooled
    # connection, and under load every shared worker thread may be waiting for one;
    # if ending it had to queue behind them, no connection would ever come back.
    # Shielded, so a client that disconnects cannot leave the connection checked out.
    with anyio.CancelScope(shield=True):
        await anyio.to_thread.run_sync(
            functools.partial(_end, session, commit=commit), limiter=anyio.CapacityLimiter(1)
        )


def _end(session: Session, *, commit: bool) -> None:
    try:
        if commit:
            session.commit()
        else:
            session.rollback()
    finally:
        session.close()


def one_hop(call: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """Runs a plain ``def`` handler and its request's commit in one worker-thread hop.

    FastAPI would otherwise hop to the thread pool for the handler, again to validate
    its return value, and once more for the commit: under load each hop waits for the
    GIL behind every other thread, and the hops, not the work, set the request's cost.
    The wrapper is a coroutine function, so FastAPI validates and serializes the result
    on the event loop (the commit has happened by then: ``expire_on_commit=False`` keeps
    loaded attributes readable, and the session is closed afterwards).
    """
    if call.__dict__.get(_ON_LOOP):

        @functools.wraps(call)
        async def on_loop(*args: P.args, **kwargs: P.kwargs) -> R:
            return _call_and_commit(_request_session.get(), call, *args, **kwargs)

        on_loop.__dict__[_ONE_HOP] = True
        return on_loop

    @functools.wraps(call)
    async def endpoint(*args: P.args, **kwargs: P.kwargs) -> R:
        session = _request_session.get()
        return await anyio.to_thread.run_sync(
            functools.partial(_call_and_commit, session, call, *args, **kwargs)
        )

    endpoint.__dict__[_ONE_HOP] = True
    return endpoint


def read_on_loop(call: Callable[P, R]) -> Callable[P, R]:
    """Marks a handler as a short indexed read, run on the event loop with no thread hop.

    For the hottest reads (a page of at most 200 rows, a row by id): their queries take
    tens of microseconds, less than a thread hop, and without hops there is no GIL convoy
    between the loop and worker threads. Only for bounded reads that cannot wait on a lock
    (SQLite's WAL and PostgreSQL's MVCC readers never do): anything slower would stall
    every other request on this process while it runs.
    """
    call.__dict__[_ON_LOOP] = True
    return call


_ONE_HOP = "__spark_trainer_one_hop__"
_ON_LOOP = "__spark_trainer_read_on_loop__"


def _call_and_commit(
    session: Session | None, call: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs
) -> R:
    if session is None:
        return call(*args, **kwargs)
    try:
        result = call(*args, **kwargs)
    except BaseException:
        session.rollback()
        raise
    session.commit()
    return result


def one_hop_routes(router: APIRouter) -> APIRouter:
    """Wraps every plain ``def`` HTTP handler of ``router`` with :func:`one_hop`, in place.

    Called on each router as the app includes it, so every domain's handlers get the
    single hop without writing anything but ordinary ``def`` handlers. Idempotent.
    """
    for route in router.routes:
        if (
            isinstance(route, APIRoute)
            and not inspect.iscoroutinefunction(route.endpoint)
            and not route.endpoint.__dict__.get(_ONE_HOP)
        ):
            route.endpoint = one_hop(route.endpoint)
            route.dependant.call = route.endpoint
    return router


# scope="function": the commit happens before the response is sent, so a client never
# sees a 2xx for a write that then failed to commit.
DbSession = Annotated[Session, Depends(get_session, scope="function")]


def bearer_credential(request: Request) -> str:
    header = request.headers.get("authorization")
    if not header:
        raise Unauthorized("Missing Authorization header")
    scheme, _, credential = header.partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        raise Unauthorized("Authorization header must be 'Bearer <token>'")
    return credential.strip()


# Declared through FastAPI's security classes so that the OpenAPI document (and Swagger UI's
# "Authorize", and the generated SDKs) know how requests authenticate.
_bearer_scheme = HTTPBearer(
    auto_error=False,
    description="An access token from /api/auth/login, or an API key (stk_…).",
)
_query_token_scheme = APIKeyQuery(
    name="access_token",
    auto_error=False,
    description="The same credential, for clients that cannot send headers (EventSource, "
    "WebSocket).",
)
BearerHeader = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer_scheme)]
QueryToken = Annotated[str | None, Depends(_query_token_scheme)]


async def get_current_user(request: Request, ctx: Context, header: BearerHeader) -> User:
    # A malformed or missing header is explained by bearer_credential's own message.
    credential = header.credentials if header else bearer_credential(request)
    return await authenticate_request_async(request, ctx, credential)


async def get_stream_user(
    request: Request, ctx: Context, header: BearerHeader, token: QueryToken
) -> User:
    credential = header.credentials if header else token or bearer_credential(request)
    return await authenticate_request_async(request, ctx, credential)


async def authenticate_request_async(request: Request, ctx: Context, credential: str) -> User:
    """The credential's user, rate-limited; on the event loop when nothing blocks.

    A cached user and the in-memory limiter need no I/O, so the common request pays no
    thread hop for authentication at all; a cache miss (or the Redis limiter) takes one.
    """
    user = ctx.users.cached(credential)
    if user is not None and isinstance(ctx.limiter.storage, LocalWindows):
        return _rate_limited(request, ctx, user)
    return await anyio.to_thread.run_sync(authenticate_request, request, ctx, credential)


def authenticate_request(request: Request, ctx: Context, credential: str) -> User:
    """The blocking form, for code already off the event loop."""
    return _rate_limited(request, ctx, ctx.users.get(credential))


def _rate_limited(request: Request, ctx: AppContext, user: U) -> U:
    request.state.rate_limit_headers = count_request(ctx, user)
    request.state.user_id = user.id
    return user


def count_request(ctx: AppContext, user: User | UserSnapshot) -> dict[str, str]:
    """Counts one request against the user's limit (HTTP and WebSocket alike); answers the
    rate-limit headers, or raises RateLimited carrying them."""
    per_minute = (
        ctx.settings.rate_limit_premium_per_minute
        if user.tier == Tier.PREMIUM
        else ctx.settings.rate_limit_standard_per_minute
    )
    result = ctx.limiter.hit("user", user.id, per_minute)
    headers = result.headers()
    if not result.allowed:
        raise RateLimited(
            f"Rate limit of {per_minute} requests per minute exceeded",
            headers={**headers, "Retry-After": result.retry_after()},
        )
    return headers


CurrentUser = Annotated[User, Depends(get_current_user)]


# --- the request path's short reads ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reader:
    """An authenticated short read: who it is for, and the database to read.

    The pattern for a list or detail GET (``jobs.endpoints.list_jobs``): an ``async def``
    handler that declares its ``response_model`` and answers
    ``reader.respond(partial(service.fn, viewer=reader.viewer, ...))``, where
    ``service.fn(conn, ...)`` selects the schema's columns through a Core connection and
    returns the schema's shape as plain dicts (``kit.responses``). It runs on the event
    loop with no thread hop (``db.reads``), so it must be a short, bounded read; writes
    and long reads keep ``DbSession``.
    One dependency for authentication and the database: each one FastAPI resolves per
    request costs about as much as the query.
    """

    viewer: UserSnapshot
    db: ReadDatabase

    async def respond(self, read: Callable[[ReadConnection], object]) -> Response:
        return json_response(await self.db.run(read))


async def get_reader(request: Request, header: BearerHeader) -> Reader:
    ctx: AppContext = request.app.state.ctx
    credential = header.credentials if header else bearer_credential(request)
    viewer = ctx.users.cached_snapshot(credential)
    if viewer is not None and isinstance(ctx.limiter.storage, LocalWindows):
        _rate_limited(request, ctx, viewer)
    else:
        user = await anyio.to_thread.run_sync(authenticate_request, request, ctx, credential)
        viewer = UserSnapshot.of(user)
    return Reader(viewer, ctx.reads)


async def get_admin_reader(request: Request, header: BearerHeader) -> Reader:
    reader = await get_reader(request, header)
    identity.require_admin(reader.viewer)
    return reader


CurrentReader = Annotated[Reader, Depends(get_reader)]
AdminReader = Annotated[Reader, Depends(get_admin_reader)]
StreamUser = Annotated[User, Depends(get_stream_user)]


async def get_admin_user(user: CurrentUser) -> User:
    identity.require_admin(user)
    return user


AdminUser = Annotated[User, Depends(get_admin_user)]


# --- uploads: requests whose body may take minutes to arrive -----------------------------
# A request session holds one of a bounded number of slots for the whole request; an
# upload that kept one while its body trickled in would let a few stalled clients take
# every slot, and every other request would wait. Upload routes therefore authenticate in
# a session of their own that ends at once, receive the body holding no session, and
# write their rows in another short session (``in_session``).


async def get_upload_user(
    request: Request, ctx: Context, header: BearerHeader
) -> AsyncIterator[User]:
    """The authenticated user, holding one of their upload places until the response."""
    credential = header.credentials if header else bearer_credential(request)
    user = await authenticate_request_async(request, ctx, credential)
    with ctx.uploads.hold(user.id) as admitted:
        if not admitted:
            raise RateLimited(
                f"At most {ctx.uploads.limit} uploads at once per user; wait for one to finish",
                headers={"Retry-After": "1"},
            )
        yield user


UploadUser = Annotated[User, Depends(get_upload_user, scope="function")]


async def in_session(ctx: AppContext, work: Callable[[Session], T]) -> T:
    """Runs ``work`` in one committed transaction, holding a session slot only meanwhile."""

    def run() -> T:
        with ctx.session_factory.begin() as session:
            return work(session)

    async with ctx.session_slots:
        return await anyio.to_thread.run_sync(run)
