from __future__ import annotations

from functools import partial

from fastapi import Request, Response, status

from spark_trainer.deps import (
    AdminReader,
    AdminUser,
    Context,
    CurrentUser,
    DbSession,
    read_on_loop,
)
from spark_trainer.errors import RateLimited
from spark_trainer.identity import service
from spark_trainer.identity.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyRead,
    LoginRequest,
    RefreshRequest,
    TokenPair,
    UserCreate,
    UserRead,
    UserUpdate,
)
from spark_trainer.kit.pagination import PagingParams
from spark_trainer.kit.schemas import Page
from spark_trainer.routing import api_router

auth_router = api_router(prefix="/api/auth", tags=["auth"])
users_router = api_router(prefix="/api/users", tags=["users"])


@auth_router.post(
    "/login",
    response_model=TokenPair,
    summary="Log in with username and password",
    responses={
        401: {"description": "Wrong username or password"},
        429: {"description": "Too many attempts for this username from this address"},
    },
)
def login(body: LoginRequest, request: Request, ctx: Context, session: DbSession) -> TokenPair:
    client = request.client.host if request.client else "unknown"
    attempt = ctx.limiter.hit(
        "login", f"{body.username}|{client}", ctx.settings.login_attempts_per_minute
    )
    if not attempt.allowed:
        raise RateLimited(
            "Too many login attempts; try again later",
            headers={"Retry-After": attempt.retry_after()},
        )
    return service.login(session, ctx.tokens, body.username, body.password)


@auth_router.post(
    "/refresh",
    response_model=TokenPair,
    summary="Exchange a refresh token",
    responses={401: {"description": "Invalid, expired or already used refresh token"}},
)
def refresh(body: RefreshRequest, ctx: Context, session: DbSession) -> TokenPair:
    return service.refresh(session, ctx.tokens, body.refresh_token)


@auth_router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Revoke a refresh token and every token rotated from it",
    responses={401: {"description": "Invalid or expired refresh token"}},
)
def logout(body: RefreshRequest, ctx: Context, session: DbSession) -> None:
    service.logout(session, ctx.tokens, body.refresh_token)


@auth_router.get("/me", response_model=UserRead, summary="The authenticated user")
@read_on_loop
def me(user: CurrentUser) -> UserRead:
    return UserRead.model_validate(user)


@auth_router.get("/api-keys", response_model=list[ApiKeyRead], summary="Your active API keys")
@read_on_loop
def list_api_keys(user: CurrentUser, session: DbSession) -> list[ApiKeyRead]:
    return [ApiKeyRead.model_validate(k) for k in service.list_api_keys(session, user)]


@auth_router.post(
    "/api-keys",
    response_model=ApiKeyCreated,
    status_code=status.HTTP_201_CREATED,
    summary="Create an API key (its secret is shown only in this response)",
)
def create_api_key(body: ApiKeyCreate, user: CurrentUser, session: DbSession) -> ApiKeyCreated:
    key, secret = service.create_api_key(session, user, body.name)
    return ApiKeyCreated.model_validate(
        {**ApiKeyRead.model_validate(key).model_dump(), "key": secret}
    )


@auth_router.delete(
    "/api-keys/{key_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Revoke an API key"
)
def revoke_api_key(key_id: str, user: CurrentUser, session: DbSession) -> None:
    service.revoke_api_key(session, user, key_id)


@users_router.get("", response_model=Page[UserRead], summary="List users (admin)")
async def list_users(reader: AdminReader, paging: PagingParams) -> Response:
    return await reader.respond(partial(service.user_page, paging=paging))


@users_router.post(
    "",
    response_model=UserRead,
    status_code=status.HTTP_201_CREATED,
    summary="Create a user",
    responses={409: {"description": "The username is taken"}},
)
def create_user(body: UserCreate, _: AdminUser, session: DbSession) -> UserRead:
    return UserRead.model_validate(service.create_user(session, body))


@users_router.get("/{user_id}", response_model=UserRead, summary="A user, by id or username")
@read_on_loop
def get_user(user_id: str, _: AdminUser, session: DbSession) -> UserRead:
    return UserRead.model_validate(service.get_user(session, user_id))


@users_router.patch(
    "/{user_id}",
    response_model=UserRead,
    summary="Change a user's role, tier, password or status",
    responses={409: {"description": "An administrator tried to disable or demote themselves"}},
)
def update_user(user_id: str, body: UserUpdate, admin: AdminUser, session: DbSession) -> UserRead:
    return UserRead.model_validate(service.update_user(session, user_id, body, actor=admin))
