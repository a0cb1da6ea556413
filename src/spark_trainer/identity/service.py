"""Identity use cases: login, token rotation, API keys, user administration.

Services never commit; the request (or CLI command) that calls them owns the
transaction. The one exception is documented in :func:`refresh`.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol, TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from spark_trainer.db.reads import ReadConnection
from spark_trainer.errors import Conflict, Forbidden, Unauthorized, resource_not_found
from spark_trainer.identity import tokens
from spark_trainer.identity.passwords import hash_password, verify_password
from spark_trainer.identity.repository import (
    ApiKeyRepository,
    RefreshTokenRepository,
    UserRepository,
    UserRows,
)
from spark_trainer.identity.schemas import TokenPair, UserCreate, UserRead, UserUpdate
from spark_trainer.identity.viewer import Viewer
from spark_trainer.kit.ids import IdPrefix, new_id
from spark_trainer.kit.pagination import Paging, page_payload
from spark_trainer.kit.time import utcnow
from spark_trainer.models import ApiKey, RefreshToken, Role, Tier, User
from spark_trainer.settings import Settings

logger = logging.getLogger(__name__)

ADMIN_USERNAME = "admin"
API_KEY_TOUCH_INTERVAL = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class TokenConfig:
    key: str
    access_ttl: int
    refresh_ttl: int

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenConfig:
        return cls(
            key=settings.signing_key,
            access_ttl=settings.access_token_ttl_seconds,
            refresh_ttl=settings.refresh_token_ttl_seconds,
        )


def login(session: Session, config: TokenConfig, username: str, password: str) -> TokenPair:
    user = UserRepository(session).get_by_username(username)
    ok = verify_password(user.password_hash if user else None, password)
    if user is None or not ok or not user.is_active:
        # One message for every cause, so the endpoint tells nobody which usernames exist.
        raise Unauthorized("Invalid username or password")
    return _issue(session, config, user, family_id=secrets.token_hex(16))


def refresh(session: Session, config: TokenConfig, refresh_token: str) -> TokenPair:
    claims = tokens.decode_token(refresh_token, key=config.key, expected_type="refresh")
    repo = RefreshTokenRepository(session)
    now = utcnow()
    if not repo.mark_used(claims.jti, now):
        stored = repo.get(claims.jti)
        if stored is not None:
            # The request is about to fail, which rolls its transaction back; the
            # revocation must outlive that, so this is the one place a service commits.
            repo.revoke_family(stored.family_id, now)
            session.commit()
            logger.warning(
                "refresh token reuse: family revoked",
                extra={"user_id": stored.user_id, "family_id": stored.family_id},
            )
        raise Unauthorized("Refresh token has already been used or revoked")
    stored = repo.get(claims.jti)
    assert stored is not None
    user = UserRepository(session).get(stored.user_id)
    if user is None or not user.is_active:
        raise Unauthorized("User is disabled")
    return _issue(session, config, user, family_id=stored.family_id)


def logout(session: Session, config: TokenConfig, refresh_token: str) -> None:
    claims = tokens.decode_token(refresh_token, key=config.key, expected_type="refresh")
    stored = RefreshTokenRepository(session).get(claims.jti)
    if stored is not None:
        RefreshTokenRepository(session).revoke_family(stored.family_id, utcnow())


def _issue(session: Session, config: TokenConfig, user: User, *, family_id: str) -> TokenPair:
    now = utcnow()
    refresh_jti = secrets.token_hex(16)
    RefreshTokenRepository(session).add(
        RefreshToken(
            jti=refresh_jti,
            family_id=family_id,
            user_id=user.id,
            expires_at=now + timedelta(seconds=config.refresh_ttl),
        )
    )
    return TokenPair(
        access_token=tokens.encode_token(
            key=config.key,
            subject=user.id,
            token_type="access",  # noqa: S106 - a token type
            now=now,
            ttl_seconds=config.access_ttl,
            jti=secrets.token_hex(8),
        ),
        refresh_token=tokens.encode_token(
            key=config.key,
            subject=user.id,
            token_type="refresh",  # noqa: S106 - a token type
            now=now,
            ttl_seconds=config.refresh_ttl,
            jti=refresh_jti,
            family_id=family_id,
        ),
        expires_in=config.access_ttl,
    )


def authenticate(session: Session, key: str, credential: str) -> User:
    """Resolves a Bearer credential (access token or API key) to an active user."""
    if tokens.is_api_key(credential):
        api_key = ApiKeyRepository(session).get_active_by_digest(tokens.api_key_digest(credential))
        if api_key is None:
            raise Unauthorized("Invalid API key")
        now = utcnow()
        # Coarse on purpose: a write per request would cost more than the request.
        if api_key.last_used_at is None or now - api_key.last_used_at > API_KEY_TOUCH_INTERVAL:
            api_key.last_used_at = now
        user = api_key.user
    else:
        claims = tokens.decode_token(credential, key=key, expected_type="access")
        found = UserRepository(session).get(claims.subject)
        if found is None:
            raise Unauthorized("Invalid token")
        user = found
    if not user.is_active:
        raise Unauthorized("User is disabled")
    return user


class Owned(Protocol):
    @property
    def owner_id(self) -> str: ...


OwnedT = TypeVar("OwnedT", bound=Owned)


def get_owned(
    session: Session, user: User, model: type[OwnedT], resource_id: str, kind: str
) -> OwnedT:
    """The resource with this id if ``user`` may see it; 404 otherwise, whether it does
    not exist or belongs to someone else."""
    found = session.get(model, resource_id)
    if found is None:
        raise resource_not_found(kind, resource_id)
    ensure_owner(user, found.owner_id, kind, resource_id)
    return found


def ensure_owner(user: Viewer, owner_id: str, kind: str, resource_id: str) -> None:
    """Lets the owner or an admin through; anyone else is told the resource does not exist,
    so ids of other users' resources cannot be probed."""
    if owner_id != user.id and not user.is_admin:
        raise resource_not_found(kind, resource_id)


def require_admin(user: Viewer) -> None:
    if not user.is_admin:
        raise Forbidden("Administrator role required")


# --- users ---------------------------------------------------------------------------


def create_user(session: Session, data: UserCreate) -> User:
    repo = UserRepository(session)
    if repo.get_by_username(data.username) is not None:
        raise Conflict(f"User '{data.username}' already exists")
    try:
        return repo.add(
            User(
                id=new_id(IdPrefix.USER),
                username=data.username,
                password_hash=hash_password(data.password),
                role=data.role,
                tier=data.tier,
            )
        )
    except IntegrityError:
        raise Conflict(f"User '{data.username}' already exists") from None


def get_user(session: Session, user_id: str) -> User:
    user = UserRepository(session).get(user_id) or UserRepository(session).get_by_username(user_id)
    if user is None:
        raise resource_not_found("User", user_id)
    return user


def list_users(session: Session, *, limit: int, offset: int) -> tuple[Sequence[User], int]:
    return UserRepository(session).page(limit=limit, offset=offset)


USER_FIELDS = tuple(UserRead.model_fields)


def user_page(conn: ReadConnection, *, paging: Paging) -> dict[str, Any]:
    """``Page[UserRead]`` of every user, oldest first (the request path's read)."""
    items, total = UserRows(conn).page(USER_FIELDS, limit=paging.limit, offset=paging.offset)
    return page_payload(items, total, paging)


def update_user(session: Session, user_id: str, data: UserUpdate, *, actor: User | None) -> User:
    user = get_user(session, user_id)
    if (
        actor is not None
        and actor.id == user.id
        and (data.is_active is False or data.role == Role.USER)
    ):
        raise Conflict("Administrators cannot disable or demote themselves")
    if data.role is not None:
        user.role = data.role
    if data.tier is not None:
        user.tier = data.tier
    if data.password is not None:
        user.password_hash = hash_password(data.password)
    if data.is_active is not None:
        user.is_active = data.is_active
    if data.is_active is False or data.password is not None:
        # A disabled account or a changed password must not keep sessions alive.
        RefreshTokenRepository(session).revoke_all_for_user(user.id, utcnow())
    session.flush()
    return user


def ensure_admin_user(session: Session, settings: Settings) -> str | None:
    """Creates ``admin`` on first start. Returns the password only when it was generated."""
    if UserRepository(session).count() > 0:
        return None
    generated = settings.admin_password is None
    password = (
        secrets.token_urlsafe(18)
        if settings.admin_password is None
        else settings.admin_password.get_secret_value()
    )
    UserRepository(session).add(
        User(
            id=new_id(IdPrefix.USER),
            username=ADMIN_USERNAME,
            password_hash=hash_password(password),
            role=Role.ADMIN,
            tier=Tier.PREMIUM,
        )
    )
    return password if generated else None


# --- API keys ------------------------------------------------------------------------


def create_api_key(session: Session, user: User, name: str) -> tuple[ApiKey, str]:
    secret = tokens.new_api_key_secret()
    key = ApiKeyRepository(session).add(
        ApiKey(
            id=new_id(IdPrefix.API_KEY),
            user_id=user.id,
            name=name,
            prefix=secret[: len(tokens.API_KEY_PREFIX) + 6],
            secret_digest=tokens.api_key_digest(secret),
        )
    )
    return key, secret


def list_api_keys(session: Session, user: User) -> Sequence[ApiKey]:
    return ApiKeyRepository(session).list_for_user(user.id)


def revoke_api_key(session: Session, user: User, key_id: str) -> None:
    key = ApiKeyRepository(session).get_for_user(key_id, user.id)
    if key is None or key.revoked_at is not None:
        raise resource_not_found("API key", key_id)
    key.revoked_at = utcnow()
