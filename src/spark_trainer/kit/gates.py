"""Per-key concurrency caps (concurrent uploads per user)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager


class ConcurrencyGate:
    """At most ``limit`` holders per key at once, in this process.

    A cap on work in progress, not stored state: a restarted process starts with none in
    progress, which is the truth.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._held: Counter[str] = Counter()

    @contextmanager
    def hold(self, key: str) -> Iterator[bool]:
        """Yields whether a place was free; a place taken is given back on exit."""
        with self._lock:
            admitted = self._held[key] < self.limit
            if admitted:
                self._held[key] += 1
        try:
            yield admitted
        finally:
            if admitted:
                with self._lock:
                    self._held[key] -= 1
                    if not self._held[key]:
                        del self._held[key]
