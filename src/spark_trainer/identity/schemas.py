from __future__ import annotations

from typing import Literal

from pydantic import Field

from spark_trainer.kit.schemas import InputSchema, Schema, UTCDatetime
from spark_trainer.models import Role, Tier

USERNAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{1,63}$"


class LoginRequest(InputSchema):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class RefreshRequest(InputSchema):
    refresh_token: str = Field(min_length=1, max_length=4096)


class TokenPair(Schema):
    access_token: str
    refresh_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - a token type, not a secret
    expires_in: int = Field(description="Seconds until the access token expires.")


class UserRead(Schema):
    id: str
    username: str
    role: Role
    tier: Tier
    is_active: bool
    created_at: UTCDatetime


class UserCreate(InputSchema):
    username: str = Field(pattern=USERNAME_PATTERN)
    password: str = Field(min_length=8, max_length=1024)
    role: Role = Role.USER
    tier: Tier = Tier.STANDARD


class UserUpdate(InputSchema):
    role: Role | None = None
    tier: Tier | None = None
    is_active: bool | None = Field(default=None, strict=True)
    password: str | None = Field(default=None, min_length=8, max_length=1024)


class ApiKeyCreate(InputSchema):
    name: str = Field(min_length=1, max_length=100)


class ApiKeyRead(Schema):
    id: str
    name: str
    prefix: str = Field(description="The first characters of the key, to recognise it.")
    created_at: UTCDatetime
    last_used_at: UTCDatetime | None


class ApiKeyCreated(ApiKeyRead):
    key: str = Field(description="The secret. Shown once, at creation; store it now.")
