"""Per-user request limits over the ``limits`` library.

Counters in this process's memory in embedded mode; Redis storage once
``SPARKTRAINER_REDIS_URL`` is set, so the limit holds across every API process that shares
that Redis.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

from limits import RateLimitItem, RateLimitItemPerSecond
from limits.errors import StorageError
from limits.storage import RedisStorage, Storage

from spark_trainer.errors import ServiceUnavailable


@dataclass(frozen=True, slots=True)
class RateLimitResult:
    allowed: bool
    limit: int
    remaining: int
    reset_time: float

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(math.ceil(self.reset_time)),
        }

    def retry_after(self) -> str:
        """Whole seconds until the window resets, for the Retry-After header."""
        return str(max(1, math.ceil(self.reset_time - time.time())))


class LocalWindows:
    """Fixed-window counters in this process's memory, as limits' ``MemoryStorage`` keeps
    them (a window starts at a key's first hit), without its timer thread: that storage
    starts a thread to expire keys on nearly every hit, which cost about 7 % of an
    authenticated read's CPU in a py-spy profile. Expired windows are replaced on their
    key's next hit and swept when the table grows."""

    SWEEP_AT = 10_000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # key → [window end (Unix time), hits]
        self._windows: dict[str, list[float]] = {}

    def incr(self, key: str, expiry: float) -> tuple[int, float]:
        """Counts one hit; answers the count in the key's window and the window's end."""
        now = time.time()
        with self._lock:
            window = self._windows.get(key)
            if window is None or window[0] <= now:
                if len(self._windows) >= self.SWEEP_AT:
                    self._windows = {k: w for k, w in self._windows.items() if w[0] > now}
                window = self._windows[key] = [now + expiry, 0]
            window[1] += 1
            return int(window[1]), window[0]


class RateLimiter:
    def __init__(self, storage: Storage | LocalWindows, window_seconds: int = 60) -> None:
        self.storage = storage
        self._window = window_seconds
        self._items: dict[int, RateLimitItem] = {}

    @classmethod
    def from_url(cls, redis_url: str | None, window_seconds: int = 60) -> RateLimiter:
        if redis_url is None:
            return cls(LocalWindows(), window_seconds)
        return cls(
            RedisStorage(redis_url, key_prefix="sparktrainer-ratelimit", wrap_exceptions=True),
            window_seconds,
        )

    def _item(self, per_minute: int) -> RateLimitItem:
        item = self._items.get(per_minute)
        if item is None:
            item = self._items[per_minute] = RateLimitItemPerSecond(per_minute, self._window)
        return item

    def hit(self, scope: str, identity: str, per_minute: int) -> RateLimitResult:
        item = self._item(per_minute)
        key = item.key_for(scope, identity)
        if isinstance(self.storage, LocalWindows):
            count, reset_time = self.storage.incr(key, item.get_expiry())
        else:
            try:
                # The fixed window's counting, as FixedWindowRateLimiter.hit does it, but
                # keeping the count the increment answers (one atomic INCR+EXPIRE on
                # Redis): reading it back in a second call would let concurrent requests
                # see each other's hits, and two of them the same Remaining.
                count = self.storage.incr(key, item.get_expiry())
                reset_time = self.storage.get_expiry(key)
            except StorageError as exc:
                # Failing closed: without its store the limit cannot be enforced.
                raise ServiceUnavailable("Rate limiter storage is unavailable") from exc
        return RateLimitResult(
            allowed=count <= per_minute,
            limit=per_minute,
            remaining=max(0, per_minute - count),
            reset_time=reset_time,
        )
