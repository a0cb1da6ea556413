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
from typing import Any

import redis

from spark_trainer.metrics.frames import Frame
from spark_trainer.metrics.hub import StreamHub

logger = logging.getLogger(__name__)

CHANNEL_PREFIX = "sparktrainer:jobs:"
# Engine to engine: cancel requests and scheduler wake-ups (shortcuts only: every engine
# also finds the same work in the database on its next pass).
CONTROL_CHANNEL = "sparktrainer:control"

ControlHandler = Callable[[dict[str, Any]], None]


class EventBus(ABC):
    def __init__(self, hub: StreamHub) -> None:
        self.hub = hub
        self.on_control: ControlHandler | None = None

    @abstractmethod
    def publish_control(self, message: dict[str, Any]) -> None:
        """Sends a message to every API process's engine (this one's included)."""

    def _control(self, message: dict[str, Any]) -> None:
        if self.on_control is not None:
            try:
                self.on_control(message)
            except Exception:
                logger.exception("handling a control message failed")

    @abstractmethod
    def publish(self, job_id: str, frames: Sequence[Frame]) -> None:
        """Never raises: the points are accepted (and stored) whether or not live
        subscribers hear of them; a subscriber that misses them reads them back."""

    @abstractmethod
    def publish_end(self, job_id: str, end_payload: str) -> None: ...

    def available(self) -> bool:
        """Whether a publish would reach the other processes now."""
        return True

    @abstractmethod
    def start(self) -> None:
        """Begins delivering messages from other processes."""

    @abstractmethod
    def close(self) -> None:
        """Stops delivery."""


class LocalBus(EventBus):
    def publish_control(self, message: dict[str, Any]) -> None:
        self._control(message)

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
        # Set by a failed publish, cleared by the next successful ping.
        self._down = False

    def publish(self, job_id: str, frames: Sequence[Frame]) -> None:
        message = json.dumps({"frames": [[f.seq, f.data] for f in frames]})
        self._send(job_id, message)

    def publish_end(self, job_id: str, end_payload: str) -> None:
        self._send(job_id, json.dumps({"end": end_payload}))

    def _send(self, job_id: str, message: str) -> None:
        try:
            self.client.publish(CHANNEL_PREFIX + job_id, message)
        except redis.RedisError as exc:
            # What was published is already queued for storage; failing here would
            # answer an error for points that are then stored anyway (and stored twice
            # once the client retries). Marked down instead, so new work is refused.
            self._down = True
            logger.warning("redis bus: publish failed (%s)", exc, extra={"job_id": job_id})

    def available(self) -> bool:
        if not self._down:
            return True
        try:
            self.client.ping()
        except redis.RedisError:
            return False
        self._down = False
        return True

    def publish_control(self, message: dict[str, Any]) -> None:
        self.client.publish(CONTROL_CHANNEL, json.dumps(message))

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
                    self._pubsub.psubscribe(CHANNEL_PREFIX + "*")
                    self._pubsub.subscribe(CONTROL_CHANNEL)
                    subscribed = True
                message = self._pubsub.get_message(timeout=1.0)
            except redis.RedisError as exc:
                if self._stopping.is_set():
                    return
                logger.warning("redis bus: %s; retrying", exc)
                self._down = True
                subscribed = False
                self._stopping.wait(1.0)
                continue
            if message is not None and message.get("type") == "message":
                self._control(json.loads(message["data"]))
                continue
            if message is None or message.get("type") != "pmessage":
                continue
            channel = message["channel"]
            job_id = (channel.decode() if isinstance(channel, bytes) else channel).removeprefix(
                CHANNEL_PREFIX
            )
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
