"""Which process schedules: the holder of the ``scheduler`` lease row.

Any number of API processes share the database; exactly one at a time holds the lease and
places jobs. The holder renews it every pass; when it stops (killed, partitioned, its
database connection gone) the lease expires after ``ttl`` seconds and the next process to
try takes it. A lease row, not a PostgreSQL advisory lock, so the same code serves SQLite
(several processes on one host) and PostgreSQL. Expiry is judged on each process's clock:
processes sharing a database are assumed to keep their clocks in sync (NTP).

Takeover time after the leader dies: at most ``ttl`` plus one pass interval.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from spark_trainer.kit.time import utcnow
from spark_trainer.models import Lease

logger = logging.getLogger(__name__)

SCHEDULER_LEASE = "scheduler"


class LeaderLease:
    def __init__(
        self, session_factory: sessionmaker[Session], *, ttl: float, name: str = SCHEDULER_LEASE
    ) -> None:
        self.session_factory = session_factory
        self.ttl = ttl
        self.name = name
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._held_until = 0.0  # monotonic

    @property
    def held(self) -> bool:
        return time.monotonic() < self._held_until

    def refresh(self) -> bool:
        """Takes or renews the lease if possible; True while this process holds it.

        Renewal writes at most every third of the TTL, so frequent passes stay cheap.
        """
        if self.held and self._held_until - time.monotonic() > self.ttl * 2 / 3:
            return True
        started = time.monotonic()
        now = utcnow()
        expires = now + timedelta(seconds=self.ttl)
        try:
            with self.session_factory.begin() as session:
                taken = session.execute(
                    update(Lease)
                    .where(
                        Lease.name == self.name,
                        or_(Lease.holder == self.holder, Lease.expires_at < now),
                    )
                    .values(holder=self.holder, expires_at=expires)
                ).rowcount  # type: ignore[attr-defined]
                if not taken and session.get(Lease, self.name) is None:
                    session.add(Lease(name=self.name, holder=self.holder, expires_at=expires))
                    session.flush()
                    taken = 1
        except IntegrityError:
            taken = 0  # another process created the row first
        was_held = self.held
        # Counted from before the write, so this process never believes it holds the lease
        # longer than the row says.
        self._held_until = started + self.ttl if taken else 0.0
        if taken and not was_held:
            logger.info("became the scheduling leader", extra={"holder": self.holder})
        elif was_held and not taken:
            logger.warning("lost the scheduling lease", extra={"holder": self.holder})
        return bool(taken)

    def release(self) -> None:
        if not self.held:
            return
        self._held_until = 0.0
        try:
            with self.session_factory.begin() as session:
                session.execute(
                    update(Lease)
                    .where(Lease.name == self.name, Lease.holder == self.holder)
                    .values(expires_at=utcnow())
                )
        except Exception:
            logger.exception("releasing the scheduling lease failed; it expires by itself")


class LeaderLoop:
    """Runs ``step`` on a thread of its own, every ``interval`` seconds or when woken,
    only while ``is_leader()`` says this process holds the scheduling lease.

    For work that must happen in one process at a time (a controller asking a sampler for
    the next trial, say). Lease handover takes up to the lease's TTL, so a step must still
    tolerate having run in the previous leader moments before: it reads its state from the
    database each time rather than keeping it in memory.
    """

    def __init__(
        self,
        name: str,
        step: Callable[[], None],
        *,
        is_leader: Callable[[], bool],
        interval: float,
    ) -> None:
        self.name = name
        self.step = step
        self.is_leader = is_leader
        self.interval = interval
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
            self._thread = None

    def wake(self) -> None:
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stopping.is_set() or not self.is_leader():
                continue
            try:
                self.step()
            except Exception:
                logger.exception("leader loop step failed", extra={"loop": self.name})
                self._stopping.wait(1.0)
