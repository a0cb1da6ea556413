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
# A user changed (disabled, role, tier, password, API key revoked): each process drops the
# user from its credential cache.
USERS_CHANNEL = "sparktrainer:users"
# Job activity (submits, status changes, pending reasons) for the dashboards' event streams.
ACTIVITY_CHANNEL = "sparktrainer:activity"


class EventBus(ABC):
    def __init__(self, hub: StreamHub) -> None:
        self.hub = hub
        self.on_control: ControlHandler | None = None
        # Called with the user's id when any process announces a change to that user.
        self.user_changed: list[Callable[[str], None]] = []
        # Called with each committed job activity event, from any process.
        self.activity: list[Callable[[dict[str, Any]], None]] = []

    def publish_user_changed(self, user_id: str) -> None:  # noqa: B027 - one process: no one
        """Tells the other API processes; this process has already acted on it."""

    @abstractmethod
    def publish_activity(self, change: dict[str, Any]) -> None:
        """Sends a committed job activity event to every API process (this one's included)."""

    def _activity(self, change: dict[str, Any]) -> None:
        for callback in self.activity:
            try:
                callback(change)
            except Exception:
                logger.exception("handling a job activity event failed")

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
    def publish_activity(self, change: dict[str, Any]) -> None:
        self._activity(change)

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
        self._pubsub = client.pubsub(ignore_subscribe_messages=True)
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

    def publish_activity(self, change: dict[str, Any]) -> None:
        try:
            self.client.publish(ACTIVITY_CHANNEL, json.dumps(change))
        except redis.RedisError as exc:
            # Committed already; dashboards refetch what they show when they reconnect.
            logger.warning("redis bus: job activity not announced: %s", exc)

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
                    self._pubsub.psubscribe(CHANNEL_PREFIX + "*")
                    self._pubsub.subscribe(CONTROL_CHANNEL, USERS_CHANNEL, ACTIVITY_CHANNEL)
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
            if message is None or message.get("type") not in ("message", "pmessage"):
                continue
            channel = message["channel"]
            channel = channel.decode() if isinstance(channel, bytes) else channel
            if channel == CONTROL_CHANNEL:
                self._control(json.loads(message["data"]))
                continue
            if channel == ACTIVITY_CHANNEL:
                self._activity(json.loads(message["data"]))
                continue
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
