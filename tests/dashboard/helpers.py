"""Reading the activity stream from a thread while the test drives the API."""

from __future__ import annotations

import json
import threading
from typing import Any

from fastapi.testclient import TestClient


class EventReader:
    """Reads ``GET /api/events/stream`` on a thread of its own, collecting the messages."""

    def __init__(self, client: TestClient, token: str) -> None:
        self.client = client
        self.token = token
        self.events: list[dict[str, Any]] = []
        self.subscribed = threading.Event()
        self.status_code: int | None = None
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)

    def __enter__(self) -> EventReader:
        self._thread.start()
        assert self.subscribed.wait(10), "the event stream did not open"
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=20)

    def _read(self) -> None:
        with self.client.stream(
            "GET", "/api/events/stream", params={"access_token": self.token}
        ) as response:
            self.status_code = response.status_code
            buffer = ""
            for chunk in response.iter_text():
                buffer += chunk
                if buffer.startswith("retry:"):
                    self.subscribed.set()
                *blocks, buffer = buffer.split("\n\n")
                for block in blocks:
                    for line in block.splitlines():
                        if line.startswith("data: "):
                            with self._changed:
                                self.events.append(json.loads(line[6:]))
                                self._changed.notify_all()
                if self._stop.is_set():
                    return

    def wait_for(self, predicate: Any, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Waits until ``predicate(events)`` holds; answers the events so far."""
        with self._changed:
            if not self._changed.wait_for(lambda: predicate(self.events), timeout):
                raise AssertionError(f"events never matched; got {self.events}")
            return list(self.events)
