"""How stream messages travel between processes.

:class:`LocalBus` hands them straight to this process's :class:`StreamHub` (embedded mode).
:class:`RedisBus` publishes them on Redis pub/sub; every API process runs one listener that
feeds its own hub, so a subscriber on any process sees the points of a job that logs to
another.
"""

from __future__ import annotations

import json
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

import redis

from spark_trainer.metrics.frames import Frame
from spark_trainer.metrics.hub import StreamHub

logger = logging.getLogger(__name__)

CHANNEL_PREFIX = "sparktrainer:jobs:"
# A user changed (disabled, role, tier, password, API key revoked): each process drops the
# user from its credential cache.
USERS_CHANNEL = "sparktrainer:users"


class EventBus(ABC):
    def __init__(self, hub: StreamHub) -> None:
        self.hub = hub
        # Called with the user's id when any process announces a change to that user.
        self.user_changed: list[Callable[[str], None]] = []

    def publish_user_changed(self, user_id: str) -> None:  # noqa: B027 - one process: no one
        """Tells the other API processes; this process has already acted on it."""

    @abstractmethod
    def publish(self, job_id: str, frames: Sequence[Frame]) -> None: ...

    @abstractmethod
    def publish_end(self, job_id: str, end_payload: str) -> None: ...

    @abstractmethod
    def start(self) -> None:
        """Begins delivering messages from other processes."""

    @abstractmethod
    def close(self) -> None:
        """Stops delivery."""


class LocalBus(EventBus):
    def publish(self, job_id: str, frames: Sequence[Frame]) -> None:
        self.hub.publish(job_id, frames)

    def publish_end(self, job_id: str, end_payload: str) -> None:
        self.hub.finish(job_id, end_payload)

    def start(self) -> None:
        """Nothing to listen to: every publisher is in this process."""

    def close(self) -> None:
        """Nothing to stop."""


class RedisBus(EventBus):
    def __init__(self, hub: StreamHub, client: redis.Redis) -> None:
        super().__init__(hub)
        self.client = client
        self._pubsub = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def publish(self, job_id: str, frames: Sequence[Frame]) -> None:
        message = json.dumps({"frames": [[f.seq, f.data] for f in frames]})
        self.client.publish(CHANNEL_PREFIX + job_id, message)

    def publish_end(self, job_id: str, end_payload: str) -> None:
        self.client.publish(CHANNEL_PREFIX + job_id, json.dumps({"end": end_payload}))

    def publish_user_changed(self, user_id: str) -> None:
        try:
            self.client.publish(USERS_CHANNEL, user_id)
        except redis.RedisError as exc:
            # The change is committed; other processes see it when their entry expires.
            logger.warning("redis bus: user change not announced: %s", exc)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._listen, name="redis-bus", daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        subscribed = False
        while not self._stopping.is_set():
            try:
                if not subscribed:
                    # (Re)subscribing here, not in start(): an API process must come up,
                    # and report not ready, while Redis is down.
                    self._pubsub.psubscribe(CHANNEL_PREFIX + "*", USERS_CHANNEL)
                    subscribed = True
                message = self._pubsub.get_message(timeout=1.0)
            except redis.RedisError as exc:
                if self._stopping.is_set():
                    return
                logger.warning("redis bus: %s; retrying", exc)
                subscribed = False
                self._stopping.wait(1.0)
                continue
            if message is None or message.get("type") != "pmessage":
                continue
            channel = message["channel"]
            channel = channel.decode() if isinstance(channel, bytes) else channel
            if channel == USERS_CHANNEL:
                data = message["data"]
                user_id = data.decode() if isinstance(data, bytes) else data
                for callback in self.user_changed:
                    callback(user_id)
                continue
            job_id = channel.removeprefix(CHANNEL_PREFIX)
            payload = json.loads(message["data"])
            if "end" in payload:
                self.hub.finish(job_id, payload["end"])
            else:
                self.hub.publish(job_id, [Frame.of(seq, data) for seq, data in payload["frames"]])

    def close(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=3)
        self._pubsub.close()
