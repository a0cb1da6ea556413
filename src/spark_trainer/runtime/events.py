"""Durable job-end events: an outbox written with every final status, and its handlers.

:func:`spark_trainer.runtime.states.change_status` writes one ``job_outbox`` row in the
same transaction as a job's final status, so an end is never committed without its event.
An :class:`EventDispatcher` thread delivers each event to every registered handler whose
kinds match, at least once: a handler runs in its own transaction, which also records the
delivery, so its database effects and the record of having run commit (or roll back)
together. A server killed mid-handler runs it again after restart; a handler must
therefore be idempotent in anything it does outside the database (files, messages).
A failing handler is retried with exponential backoff; other handlers and events go on.

Handlers run off the executor's threads, in whichever process owns the event: the process
supervising the job's node, or the scheduling leader for jobs that never reached a node
(and, as a fallback, for any event left undelivered for ``LEADER_FALLBACK_SECONDS``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import exists, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from spark_trainer.kit.time import utcnow
from spark_trainer.models import Job, JobOutbox, JobOutboxDelivery
from spark_trainer.runtime.periodic import PeriodicThread

logger = logging.getLogger(__name__)

POLL_SECONDS = 1.0
BATCH = 200
MAX_BACKOFF_SECONDS = 300.0
LEADER_FALLBACK_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class JobEnded:
    event_id: int
    job_id: str
    kind: str
    parent_id: str | None
    status: str
    exit_code: int | None
    reason: str | None


Handler = Callable[[Session, JobEnded], None]


@dataclass(frozen=True, slots=True)
class _Registered:
    name: str
    handler: Handler
    kinds: frozenset[str] | None


class HandlerRegistry:
    """Named job-end handlers. A name is the handler's identity in the delivery records:
    keep it stable, or already delivered events are delivered again under the new name."""

    def __init__(self) -> None:
        self._handlers: dict[str, _Registered] = {}

    def register(self, name: str, handler: Handler, *, kinds: Iterable[str] | None = None) -> None:
        """``kinds``: only events of jobs of these kinds (default: every kind)."""
        if name in self._handlers:
            raise ValueError(f"a job-end handler named {name!r} is already registered")
        self._handlers[name] = _Registered(name, handler, frozenset(kinds) if kinds else None)

    def handlers(self) -> list[_Registered]:
        return list(self._handlers.values())


class EventDispatcher:
    def __init__(
        self,
        session_factory: sessionmaker[Session],
        registry: HandlerRegistry,
        *,
        node: str | None,
        is_leader: Callable[[], bool],
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self.session_factory = session_factory
        self.registry = registry
        self.node = node
        self.is_leader = is_leader
        self.poll_seconds = poll_seconds
        self._thread = PeriodicThread("job-events", self.run_pass, poll_seconds)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._thread.stop()

    def wake(self) -> None:
        self._thread.wake()

    def run_pass(self) -> int:
        """Delivers what is due; returns how many deliveries succeeded."""
        delivered = 0
        for registered in self.registry.handlers():
            for event in self._due(registered):
                if self._thread.stopping:
                    return delivered
                delivered += self._deliver(registered, event)
        return delivered

    def _due(self, registered: _Registered) -> list[JobEnded]:
        now = utcnow()
        settled = exists().where(
            JobOutboxDelivery.event_id == JobOutbox.id,
            JobOutboxDelivery.handler == registered.name,
            or_(
                JobOutboxDelivery.delivered_at.is_not(None),
                JobOutboxDelivery.next_attempt_at > now,
            ),
        )
        mine = Job.node == self.node if self.node is not None else None
        if self.is_leader():
            fallback = or_(
                Job.node.is_(None),
                JobOutbox.created_at < now - timedelta(seconds=LEADER_FALLBACK_SECONDS),
            )
            owned = or_(mine, fallback) if mine is not None else None
        else:
            owned = mine
        if owned is None:
            return []
        query = (
            select(JobOutbox)
            .join(Job, Job.id == JobOutbox.job_id)
            .where(~settled, owned)
            .order_by(JobOutbox.id)
            .limit(BATCH)
        )
        if registered.kinds is not None:
            query = query.where(JobOutbox.kind.in_(registered.kinds))
        with self.session_factory() as session:
            rows = session.scalars(query).all()
        return [
            JobEnded(
                event_id=row.id,
                job_id=row.job_id,
                kind=row.kind,
                parent_id=row.parent_id,
                status=row.status,
                exit_code=row.exit_code,
                reason=row.reason,
            )
            for row in rows
        ]

    def _deliver(self, registered: _Registered, event: JobEnded) -> int:
        extra = {"job_id": event.job_id, "handler": registered.name, "event_id": event.event_id}
        try:
            with self.session_factory.begin() as session:
                registered.handler(session, event)
                delivery = session.get(JobOutboxDelivery, (event.event_id, registered.name))
                if delivery is None:
                    session.add(
                        JobOutboxDelivery(
                            event_id=event.event_id,
                            handler=registered.name,
                            delivered_at=utcnow(),
                            attempts=1,
                        )
                    )
                elif delivery.delivered_at is None:
                    delivery.delivered_at = utcnow()
                    delivery.attempts += 1
                    delivery.last_error = None
                else:
                    # Another process delivered it meanwhile; this run's effects roll back.
                    raise _AlreadyDelivered
        except (_AlreadyDelivered, IntegrityError):
            return 0
        except Exception as exc:
            logger.exception("job-end handler failed; it will be retried", extra=extra)
            self._record_failure(registered.name, event.event_id, f"{type(exc).__name__}: {exc}")
            return 0
        return 1

    def _record_failure(self, handler: str, event_id: int, error: str) -> None:
        try:
            with self.session_factory.begin() as session:
                delivery = session.get(JobOutboxDelivery, (event_id, handler))
                if delivery is None:
                    delivery = JobOutboxDelivery(event_id=event_id, handler=handler, attempts=0)
                    session.add(delivery)
                delivery.attempts += 1
                delivery.last_error = error[:2000]
                backoff = min(MAX_BACKOFF_SECONDS, 2.0 ** min(delivery.attempts, 16))
                delivery.next_attempt_at = utcnow() + timedelta(seconds=backoff)
        except Exception:
            logger.exception("recording a job-end handler failure failed")

    def undelivered(self) -> int:
        """(event, handler) pairs not yet delivered, in any process."""
        total = 0
        with self.session_factory() as session:
            for registered in self.registry.handlers():
                query = select(func.count(JobOutbox.id)).where(
                    ~exists().where(
                        JobOutboxDelivery.event_id == JobOutbox.id,
                        JobOutboxDelivery.handler == registered.name,
                        JobOutboxDelivery.delivered_at.is_not(None),
                    )
                )
                if registered.kinds is not None:
                    query = query.where(JobOutbox.kind.in_(registered.kinds))
                total += session.scalar(query) or 0
        return total


class _AlreadyDelivered(Exception):
    pass
