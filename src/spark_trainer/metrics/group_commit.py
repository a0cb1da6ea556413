"""Group commit for metrics POSTs: concurrent requests' points stored in one transaction.

A request hands its points to :meth:`GroupCommit.submit` and waits; one writer thread takes
every request queued meanwhile, authorizes each against its job's state (one query for the
whole group), numbers and publishes the accepted points, stores them in one transaction
and only then answers each request. A 200 therefore still means "stored", while the
database sees one job-state read and one commit per group instead of per request.

There is no timer: a group is whatever arrived while the previous one was being stored, so
a lone request waits for nothing but its own commit, and under load the groups grow by
themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from spark_trainer.errors import ServiceUnavailable, SparkTrainerError
from spark_trainer.metrics.frames import Frame
from spark_trainer.metrics.rows import Batch

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class IngestState:
    """What a metrics POST is checked against: read for the whole group at once."""

    status: str
    owner_id: str
    token_digest: str | None


# Raises the request's SparkTrainerError when its job (None: no such job) refuses it.
Authorize = Callable[[IngestState | None], None]
Outcome = list[Frame] | SparkTrainerError


@dataclass(frozen=True, slots=True)
class Submission:
    job_id: str
    # Empty: the request is only authorized (it is answered an error either way).
    points: Batch
    authorize: Authorize


@dataclass(frozen=True, slots=True)
class _Waiting:
    submission: Submission
    future: asyncio.Future[list[Frame]]
    loop: asyncio.AbstractEventLoop


class GroupCommit:
    def __init__(self, store_group: Callable[[Sequence[Submission]], list[Outcome]]) -> None:
        # Never raises: answers each submission its frames or its client's error.
        self._store_group = store_group
        self._lock = threading.Lock()
        self._queue: list[_Waiting] = []
        self._wake = threading.Event()
        self._running = False
        self._thread: threading.Thread | None = None

    async def submit(self, submission: Submission) -> list[Frame]:
        """Waits until the points are stored (or refused); answers their frames."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Frame]] = loop.create_future()
        with self._lock:
            if not self._running:
                raise ServiceUnavailable("Metric storage is not running; retry shortly")
            self._queue.append(_Waiting(submission, future, loop))
        self._wake.set()
        return await future

    def start(self) -> None:
        with self._lock:
            self._running = True
        self._thread = threading.Thread(target=self._run, name="metrics-commit", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Answers every request queued so far, then stops; later ones are refused."""
        with self._lock:
            self._running = False
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            self._wake.wait()
            with self._lock:
                self._wake.clear()
                group, self._queue = self._queue, []
                running = self._running
            if group:
                self._answer(group)
            elif not running:
                return

    def _answer(self, group: list[_Waiting]) -> None:
        try:
            outcomes = self._store_group([w.submission for w in group])
        except Exception:  # the store answers errors itself; this is a last resort
            logger.exception("storing a group of metrics POSTs failed")
            outcomes = [ServiceUnavailable("Metric points were not stored; retry") for _ in group]
        # One wake-up per event loop for the whole group, not one per request.
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Waiting, Outcome]]] = {}
        for waiting, outcome in zip(group, outcomes, strict=True):
            by_loop.setdefault(waiting.loop, []).append((waiting, outcome))
        for loop, answers in by_loop.items():
            # A loop that has closed has nobody waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, answers)


def _resolve(answers: list[tuple[_Waiting, Outcome]]) -> None:
    for waiting, outcome in answers:
        if waiting.future.done():  # the client went away
            continue
        if isinstance(outcome, SparkTrainerError):
            waiting.future.set_exception(outcome)
        else:
            waiting.future.set_result(outcome)
