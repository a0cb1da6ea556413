from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from spark_trainer.db.reads import ReadConnection, read_columns
from spark_trainer.kit.pagination import PageQuery, page_of
from spark_trainer.models import ApiKey, RefreshToken, User


class UserRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, user_id: str) -> User | None:
        return self.session.get(User, user_id)

    def get_by_username(self, username: str) -> User | None:
        return self.session.scalar(select(User).where(User.username == username))

    def count(self) -> int:
        return self.session.scalar(select(func.count()).select_from(User)) or 0

    def page(self, *, limit: int, offset: int) -> tuple[Sequence[User], int]:
        query = select(User).order_by(User.created_at, User.id)
        return page_of(self.session, query, limit=limit, offset=offset)

    def add(self, user: User) -> User:
        self.session.add(user)
        self.session.flush()
        return user


class ApiKeyRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get_active_by_digest(self, digest: str) -> ApiKey | None:
        return self.session.scalar(
            select(ApiKey).where(ApiKey.secret_digest == digest, ApiKey.revoked_at.is_(None))
        )

    def get_for_user(self, key_id: str, user_id: str) -> ApiKey | None:
        return self.session.scalar(
            select(ApiKey).where(ApiKey.id == key_id, ApiKey.user_id == user_id)
        )

    def list_for_user(self, user_id: str) -> Sequence[ApiKey]:
        return self.session.scalars(
            select(ApiKey)
            .where(ApiKey.user_id == user_id, ApiKey.revoked_at.is_(None))
            .order_by(ApiKey.created_at)
        ).all()

    def add(self, key: ApiKey) -> ApiKey:
        self.session.add(key)
        self.session.flush()
        return key


class RefreshTokenRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, jti: str) -> RefreshToken | None:
        return self.session.get(RefreshToken, jti)

    def add(self, token: RefreshToken) -> None:
        self.session.add(token)

    def mark_used(self, jti: str, now: datetime) -> bool:
        """Spends a token once; False if it was already spent or revoked (a race lost)."""
        result = self.session.execute(
            update(RefreshToken)
            .where(
                RefreshToken.jti == jti,
                RefreshToken.used_at.is_(None),
                RefreshToken.revoked_at.is_(None),
            )
            .values(used_at=now)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    def revoke_family(self, family_id: str, now: datetime) -> None:
        self.session.execute(
            update(RefreshToken)
            .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=now)
        )

    def revoke_all_for_user(self, user_id: str, now: datetime) -> None:
        self.session.execute(
            update(RefreshToken)
            .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=now)
        )


_USERS = User.__table__


@cache
def _user_page(fields: tuple[str, ...]) -> PageQuery:
    return PageQuery(
        select(*read_columns(_USERS, fields)).order_by(_USERS.c.created_at, _USERS.c.id)
    )


class UserRows:
    """The request path's reads of users (``db.reads``): plain dicts, no session."""

    def __init__(self, conn: ReadConnection) -> None:
        self.conn = conn

    def page(
        self, fields: tuple[str, ...], *, limit: int, offset: int
    ) -> tuple[list[dict[str, Any]], int]:
        """Every user, oldest first."""
        return _user_page(fields).rows(self.conn, {}, limit=limit, offset=offset)
