"""Per-user request limits over the ``limits`` library.

In-memory storage in embedded mode; Redis storage once ``SPARKTRAINER_REDIS_URL`` is set,
so the limit holds across every API process that shares that Redis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage, Storage, storage_from_string
from limits.strategies import FixedWindowRateLimiter


@dataclass(frozen=True, slots=True)
class RateLimitResult:
    allowed: bool
    limit: int
    remaining: int
    reset_at: int

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_at),
        }


class RateLimiter:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._limiter = FixedWindowRateLimiter(storage)
        self._items: dict[int, RateLimitItemPerMinute] = {}

    @classmethod
    def from_url(cls, redis_url: str | None) -> RateLimiter:
        if redis_url is None:
            return cls(MemoryStorage())
        return cls(storage_from_string(redis_url, key_prefix="sparktrainer-ratelimit"))

    def _item(self, per_minute: int) -> RateLimitItemPerMinute:
        item = self._items.get(per_minute)
        if item is None:
            item = self._items[per_minute] = RateLimitItemPerMinute(per_minute)
        return item

    def hit(self, scope: str, identity: str, per_minute: int) -> RateLimitResult:
        item = self._item(per_minute)
        allowed = self._limiter.hit(item, scope, identity)
        stats = self._limiter.get_window_stats(item, scope, identity)
        return RateLimitResult(
            allowed=allowed,
            limit=per_minute,
            remaining=stats.remaining,
            reset_at=math.ceil(stats.reset_time),
        )
