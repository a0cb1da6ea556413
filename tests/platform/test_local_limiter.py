"""The in-process rate limiter: fixed windows, exact counts, no thread per request."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from spark_trainer.ratelimit import LocalWindows, RateLimiter


def test_hits_start_no_thread_and_count_exactly_under_concurrency() -> None:
    limiter = RateLimiter.from_url(None, window_seconds=60)
    assert isinstance(limiter.storage, LocalWindows)
    threads_before = threading.active_count()
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: limiter.hit("user", "u1", 1_000), range(1_200)))
        # Measured while the pool's own threads are still alive: only they may exist.
        assert threading.active_count() <= threads_before + 8
    remaining = sorted(r.remaining for r in results if r.allowed)
    assert remaining == list(range(1_000))  # every count handed out exactly once
    assert sum(not r.allowed for r in results) == 200
    assert threading.active_count() == threads_before
    # Another user has a window of their own.
    assert limiter.hit("user", "u2", 1_000).remaining == 999


def test_a_window_ends_and_the_next_starts_from_zero() -> None:
    limiter = RateLimiter.from_url(None, window_seconds=1)
    first = limiter.hit("user", "u1", 2)
    assert (first.allowed, first.remaining) == (True, 1)
    assert limiter.hit("user", "u1", 2).allowed
    refused = limiter.hit("user", "u1", 2)
    assert not refused.allowed
    assert first.reset_time - time.time() <= 1.0
    while time.time() < first.reset_time:
        time.sleep(0.01)
    after = limiter.hit("user", "u1", 2)
    assert (after.allowed, after.remaining) == (True, 1)
    assert after.reset_time > first.reset_time
