"""The user behind a credential, remembered for a few seconds.

Every authenticated request needs its user, and reading it from the database cost about a
fifth of an ordinary list request's CPU. An entry lives at most ``ttl`` seconds, and any
committed change to a user (disabled, role, tier, password, name) or to one of its API keys
(revoked) drops that user's entries at once in this process, and in every other API process
through the event bus (Redis pub/sub). The lifetime therefore bounds staleness only while
the bus is down, or for changes written behind the ORM's back (raw SQL).

A request never gets the cached object itself: each gets a fresh detached ``User``, so
nothing one request does to it can reach another.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import event, inspect
from sqlalchemy.orm import Session, UOWTransaction, make_transient_to_detached, sessionmaker

from spark_trainer.identity import tokens
from spark_trainer.models import ApiKey, Role, Tier, User

_CHANGED = "identity_changed"
# Verified access tokens remembered at most; past it the memo starts over (a burst of new
# logins costs one signature check each again, nothing more).
MAX_VERIFIED_TOKENS = 10_000


@dataclass(frozen=True, slots=True)
class UserSnapshot:
    id: str
    username: str
    role: Role
    tier: Tier
    created_at: datetime

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN

    @classmethod
    def of(cls, user: User) -> UserSnapshot:
        return cls(user.id, user.username, user.role, user.tier, user.created_at)

    def to_user(self) -> User:
        user = User(
            id=self.id,
            username=self.username,
            role=self.role,
            tier=self.tier,
            is_active=True,
            created_at=self.created_at,
        )
        # Detached, not new: should a service attach it to its session (a relationship
        # assignment), it is the existing row, never a second INSERT.
        make_transient_to_detached(user)
        return user


class UserCache:
    def __init__(
        self,
        session_factory: sessionmaker[Session],
        authenticate: Callable[[Session, str], User],
        *,
        key: str,
        ttl: float,
    ) -> None:
        self._session_factory = session_factory
        self._authenticate = authenticate
        self._key = key
        self.ttl = ttl
        self._lock = threading.Lock()
        # cache key ("u:<user id>" for access tokens, "k:<digest>" for API keys) →
        # (monotonic expiry, snapshot)
        self._entries: dict[str, tuple[float, UserSnapshot]] = {}
        # access token → (its expiry, Unix time; its cache key)
        self._verified: dict[str, tuple[int, str]] = {}
        # Bumped by every invalidation: a load that overlapped one is not stored, since
        # it may have read the row from before the change.
        self._epoch = 0
        # Tells the other API processes (the event bus); set once the bus exists.
        self.broadcast: Callable[[str], None] | None = None
        event.listen(session_factory, "after_flush", self._collect)
        event.listen(session_factory, "after_commit", self._after_commit)
        event.listen(session_factory, "after_rollback", self._after_rollback)

    def _cache_key(self, credential: str) -> str:
        if tokens.is_api_key(credential):
            return "k:" + tokens.api_key_digest(credential)
        # A token is immutable, so its verified claims are too: checking the signature
        # once per token, not per request, saves a tenth of a cached request's CPU.
        verified = self._verified.get(credential)
        if verified is not None and verified[0] > time.time():
            return verified[1]
        # Raises Unauthorized for a bad signature, a wrong type or an expired token.
        claims = tokens.decode_token(credential, key=self._key, expected_type="access")
        if len(self._verified) >= MAX_VERIFIED_TOKENS:
            self._verified.clear()
        cache_key = "u:" + claims.subject
        self._verified[credential] = (claims.expires_at, cache_key)
        return cache_key

    def cached(self, credential: str) -> User | None:
        """The credential's user if it is cached: no I/O, safe on the event loop."""
        snapshot = self.cached_snapshot(credential)
        return snapshot.to_user() if snapshot is not None else None

    def cached_snapshot(self, credential: str) -> UserSnapshot | None:
        """:meth:`cached` without making an ORM object: for reads that need only the
        user's id and role (building a detached ``User`` cost a fifth of a short read)."""
        entry = self._entries.get(self._cache_key(credential))
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def load(self, credential: str) -> User:
        """Reads the credential's user from the database (a short session of its own) and
        caches it. Raises Unauthorized as :func:`identity.service.authenticate` does."""
        cache_key = self._cache_key(credential)
        with self._lock:
            epoch = self._epoch
        with self._session_factory() as session:
            snapshot = UserSnapshot.of(self._authenticate(session, credential))
            session.commit()  # an API key's coarse last-used touch
        with self._lock:
            if epoch == self._epoch:
                self._entries[cache_key] = (time.monotonic() + self.ttl, snapshot)
        return snapshot.to_user()

    def get(self, credential: str) -> User:
        return self.cached(credential) or self.load(credential)

    def invalidate(self, user_id: str) -> None:
        """Drops every entry of this user (called here at commit, and by the bus)."""
        with self._lock:
            self._epoch += 1
            for cache_key in [k for k, (_, s) in self._entries.items() if s.id == user_id]:
                del self._entries[cache_key]

    # --- noticing changes ---------------------------------------------------------------

    def _collect(self, session: Session, _: UOWTransaction) -> None:
        changed: set[str] = session.info.setdefault(_CHANGED, set())
        for obj in session.dirty:
            if isinstance(obj, User):
                changed.add(obj.id)
            elif isinstance(obj, ApiKey) and _revoked(obj):
                changed.add(obj.user_id)
        for obj in session.deleted:
            if isinstance(obj, User):
                changed.add(obj.id)
            elif isinstance(obj, ApiKey):
                changed.add(obj.user_id)

    def _after_commit(self, session: Session) -> None:
        for user_id in session.info.pop(_CHANGED, ()):
            self.invalidate(user_id)
            if self.broadcast is not None:
                self.broadcast(user_id)

    def _after_rollback(self, session: Session) -> None:
        session.info.pop(_CHANGED, None)


def _revoked(key: ApiKey) -> bool:
    state: Any = inspect(key)
    return bool(state.attrs.revoked_at.history.has_changes())
