"""A pass run periodically on a thread of its own: the shape of every background loop in
the runtime that has no start-up step of its own (job-end delivery, leader-hosted loops)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

logger = logging.getLogger(__name__)


class PeriodicThread:
    """Runs ``work()`` every ``every`` seconds, or at once when woken, while ``when()``
    holds. An exception is logged and the next pass waits a whole interval."""

    def __init__(
        self,
        name: str,
        work: Callable[[], object],
        every: float,
        *,
        when: Callable[[], bool] = lambda: True,
    ) -> None:
        self.name = name
        self.work = work
        self.every = every
        self.when = when
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def stopping(self) -> bool:
        """Set once stop() is called: a long pass may end early."""
        return self._stopping.is_set()

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def wake(self) -> None:
        """Runs the next pass now rather than at the end of the interval."""
        self._wake.set()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self.every)
            self._wake.clear()
            if self._stopping.is_set() or not self.when():
                continue
            try:
                self.work()
            except Exception:
                logger.exception("background pass failed", extra={"loop": self.name})
                self._stopping.wait(self.every)
