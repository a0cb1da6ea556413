"""FastAPI dependencies shared by every router: the request's session and its user."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from typing import Annotated, TypeVar

import anyio
import anyio.to_thread
from fastapi import Depends, Request
from fastapi.security import APIKeyQuery, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from spark_trainer.context import AppContext
from spark_trainer.errors import RateLimited, Unauthorized
from spark_trainer.identity import service as identity
from spark_trainer.models import Tier, User

T = TypeVar("T")

# Dependencies that do no I/O are ``async def``: FastAPI runs plain ``def`` dependencies in
# the thread pool, and each of those hops costs more than the dependency itself.


async def get_context(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


Context = Annotated[AppContext, Depends(get_context)]


async def get_session(ctx: Context) -> AsyncIterator[Session]:
    """One transaction per request: committed when the handler succeeds, else rolled back.

    Creating a session does no I/O (it connects on first use), so only the commit or
    rollback goes to a thread.
    """
    async with ctx.session_slots:
        session = ctx.session_factory()
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


async def _finish(session: Session, *, commit: bool) -> None:
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


def get_current_user(
    request: Request, ctx: Context, session: DbSession, header: BearerHeader
) -> User:
    # A malformed or missing header is explained by bearer_credential's own message.
    credential = header.credentials if header else bearer_credential(request)
    return authenticate_request(request, ctx, session, credential)


def get_stream_user(
    request: Request, ctx: Context, session: DbSession, header: BearerHeader, token: QueryToken
) -> User:
    credential = header.credentials if header else token or bearer_credential(request)
    return authenticate_request(request, ctx, session, credential)


def authenticate_request(request: Request, ctx: Context, session: Session, credential: str) -> User:
    user = identity.authenticate(session, ctx.tokens.key, credential)
    request.state.rate_limit_headers = count_request(ctx, user)
    request.state.user_id = user.id
    return user


def count_request(ctx: AppContext, user: User) -> dict[str, str]:
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


def _authenticate_briefly(request: Request, ctx: AppContext, credential: str) -> User:
    with ctx.session_factory.begin() as session:
        return authenticate_request(request, ctx, session, credential)


async def get_upload_user(
    request: Request, ctx: Context, header: BearerHeader
) -> AsyncIterator[User]:
    """The authenticated user, holding one of their upload places until the response."""
    credential = header.credentials if header else bearer_credential(request)
    async with ctx.session_slots:
        user = await anyio.to_thread.run_sync(_authenticate_briefly, request, ctx, credential)
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
