"""In-process fan-out of job activity to the dashboard's event streams.

Each subscriber holds a small queue of encoded messages; a user sees their own jobs'
activity, an admin everyone's. A subscriber too slow to drain its queue loses the oldest
messages and is told so (``resync``), so it refetches what it shows instead of
holding memory on the server.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import deque
from typing import Any

QUEUE_LIMIT = 1_000


class Subscriber:
    def __init__(self, user_id: str, *, sees_all: bool) -> None:
        self.user_id = user_id
        self.sees_all = sees_all
        self.messages: deque[str] = deque()
        self.overflowed = False
        self.ready = asyncio.Event()

    def _put(self, message: str) -> None:
        if len(self.messages) >= QUEUE_LIMIT:
            self.messages.clear()
            self.overflowed = True
        self.messages.append(message)
        self.ready.set()

    def take(self) -> tuple[list[str], bool]:
        """The waiting messages, and whether some were dropped before them."""
        messages, overflowed = list(self.messages), self.overflowed
        self.messages.clear()
        self.overflowed = False
        self.ready.clear()
        return messages, overflowed


class ActivityHub:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: set[Subscriber] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def subscribe(self, user_id: str, *, sees_all: bool) -> Subscriber:
        subscriber = Subscriber(user_id, sees_all=sees_all)
        with self._lock:
            self._subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        with self._lock:
            self._subscribers.discard(subscriber)

    def publish(self, change: dict[str, Any]) -> None:
        """From any thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        message = json.dumps(change, separators=(",", ":"))
        owner = change.get("owner_id")
        with self._lock:
            targets = [s for s in self._subscribers if s.sees_all or s.user_id == owner]
        for subscriber in targets:
            loop.call_soon_threadsafe(subscriber._put, message)
