"""Everything one running API process holds: settings, database, limiter, clients."""

from __future__ import annotations

from dataclasses import dataclass, field

import redis
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from spark_trainer.db.engine import make_engine, make_session_factory
from spark_trainer.identity.service import TokenConfig
from spark_trainer.ratelimit import RateLimiter
from spark_trainer.settings import Settings


@dataclass
class AppContext:
    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    tokens: TokenConfig
    limiter: RateLimiter
    redis: redis.Redis | None = field(default=None)

    @classmethod
    def build(cls, settings: Settings) -> AppContext:
        engine = make_engine(settings)
        return cls(
            settings=settings,
            engine=engine,
            session_factory=make_session_factory(engine),
            tokens=TokenConfig.from_settings(settings),
            limiter=RateLimiter.from_url(settings.redis_url),
            redis=(
                redis.Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
                if settings.redis_url
                else None
            ),
        )

    def dependency_status(self) -> dict[str, bool]:
        """Each dependency in use, and whether it answers right now."""
        status = {"database": self._database_ok()}
        if self.redis is not None:
            status["redis"] = self._redis_ok()
        return status

    def _database_ok(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception:
            return False
        return True

    def _redis_ok(self) -> bool:
        assert self.redis is not None
        try:
            return bool(self.redis.ping())
        except redis.RedisError:
            return False

    def close(self) -> None:
        if self.redis is not None:
            self.redis.close()
        self.engine.dispose()
