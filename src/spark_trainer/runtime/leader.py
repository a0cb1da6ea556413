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
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from spark_trainer.kit.time import utcnow
from spark_trainer.models import Lease
from spark_trainer.runtime.periodic import PeriodicThread

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


class LeaderLoops:
    """Periodic domain work hosted on the scheduling leader, so exactly one API process
    does it however many share the database.

    A feature whose reconcile pass must not run in every process (the deployments'
    replica supervisor, the evaluations' result collector, an HPO study controller)
    registers it before ``AppContext.start``::

        loop = ctx.jobs.leader_loops.add("hpo.studies", controller.run_pass, every=1.0)
        ...
        loop.wake()  # after a change, to pass now rather than within `every`

    ``work()`` runs on a thread of its own every ``every`` seconds while this process
    holds the scheduler lease (see :class:`LeaderLease`), and not at all otherwise. It
    must be a pass over database state that is idempotent and safe to interrupt: when
    the leader dies, the next leader runs it within the lease's TTL plus ``every``, and
    for an instant around a lease change two processes may both run it, so it must
    still use compare-and-set (or row versions) for every change it makes. An exception
    is logged and the pass retried after ``every``. ``wake()`` only shortens the wait of
    this process's loop: a wake in a follower does nothing, the leader's next pass comes
    within ``every`` anyway.
    """

    def __init__(self, is_leader: Callable[[], bool]) -> None:
        self.is_leader = is_leader
        self._loops: dict[str, PeriodicThread] = {}
        self._started = False

    def add(self, name: str, work: Callable[[], object], *, every: float) -> PeriodicThread:
        if name in self._loops:
            raise ValueError(f"a leader loop named {name!r} is already registered")
        loop = PeriodicThread(name, work, every, when=self.is_leader)
        self._loops[name] = loop
        if self._started:
            loop.start()
        return loop

    def start(self) -> None:
        self._started = True
        for loop in self._loops.values():
            loop.start()

    def stop(self) -> None:
        self._started = False
        for loop in self._loops.values():
            loop.stop()
