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
import time
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
