"""Job activity recorded inside a transaction and published only once it commits.

A change is added to its session with :func:`record`; a listener installed on the session
factory (:func:`publish_after_commit`) hands everything recorded to the event bus after
the commit and drops it on a rollback, so no subscriber ever hears of a change that did not
happen, and the transaction never waits on the bus.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from spark_trainer.kit.time import utcnow

logger = logging.getLogger(__name__)

_KEY = "spark_trainer.activity"


def record(
    session: Session,
    *,
    kind: str,
    job_id: str,
    owner_id: str,
    name: str,
    status: str,
    previous: str | None = None,
    reason: str | None = None,
    pending_reason: str | None = None,
) -> None:
    """``kind`` is ``job.submitted``, ``job.status`` or ``job.pending_reason``."""
    changes: list[dict[str, Any]] = session.info.setdefault(_KEY, [])
    changes.append(
        {
            "type": kind,
            "job_id": job_id,
            "owner_id": owner_id,
            "name": name,
            "status": status,
            "previous_status": previous,
            "reason": reason,
            "pending_reason": pending_reason,
            "at": utcnow().isoformat().replace("+00:00", "Z"),
        }
    )


def publish_after_commit(
    factory: sessionmaker[Session], publish: Callable[[dict[str, Any]], None]
) -> None:
    def committed(session: Session) -> None:
        for change in session.info.pop(_KEY, []):
            try:
                publish(change)
            except Exception:
                # Committed either way; a dashboard that misses it refreshes on reconnect.
                logger.exception("publishing a job activity event failed")

    def rolled_back(session: Session) -> None:
        session.info.pop(_KEY, None)

    event.listen(factory, "after_commit", committed)
    event.listen(factory, "after_rollback", rolled_back)
