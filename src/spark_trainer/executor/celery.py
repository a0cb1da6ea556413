"""Distributed mode's dispatch: placements travel to their node's worker through Celery.

The scheduling leader commits a placement (job ``running`` on a node, with its GPU rows),
then sends the task :data:`LAUNCH_TASK` with the job's id to the queue ``node.<name>``,
which only that node's ``sparktrainer worker`` consumes. The worker launches the job with
the local executor (the same supervised runner as embedded mode) and records everything
in the database; the message carries no state of its own.

Celery is the fast path, never the source of truth: a message lost with a Redis restart,
or never sent while the broker is down, only delays the launch until the worker's own
pass finds the placement in the database (within a second). Jobs therefore wait through
a broker outage rather than fail.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from celery import Celery

logger = logging.getLogger(__name__)

LAUNCH_TASK = "sparktrainer.launch"
# A broker that does not answer must not hold the dispatch thread (it retries nothing:
# the worker's pass is the retry).
BROKER_TIMEOUT_SECONDS = 2.0


def queue_for(node: str) -> str:
    return f"node.{node}"


def worker_hostname(node: str) -> str:
    """The Celery worker name of ``node`` (unique per node, so ping counts nodes)."""
    return f"sparktrainer@{node}"


def celery_app(broker_url: str) -> Celery:
    app = Celery("sparktrainer", broker=broker_url, set_as_current=False)
    app.conf.update(
        task_ignore_result=True,
        task_default_queue="node.unplaced",
        # A launch is quick and idempotent (a compare-and-set on the job row): no
        # prefetch backlog, and an unacknowledged message is simply redelivered.
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=BROKER_TIMEOUT_SECONDS,
        broker_transport_options={
            "socket_timeout": BROKER_TIMEOUT_SECONDS,
            "socket_connect_timeout": BROKER_TIMEOUT_SECONDS,
        },
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        worker_send_task_events=False,
    )
    return app


class CeleryDispatcher:
    """Sends launch tasks off the scheduler's thread, in placement order."""

    def __init__(self, app: Celery) -> None:
        self.app = app
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="celery-dispatch")

    def dispatch(self, job_id: str, node: str) -> None:
        self._pool.submit(self._send, job_id, node)

    def _send(self, job_id: str, node: str) -> None:
        try:
            self.app.send_task(LAUNCH_TASK, args=[job_id], queue=queue_for(node), retry=False)
        except Exception as exc:
            logger.warning(
                "sending a launch task failed; the node's own pass will launch the job: %s",
                exc,
                extra={"job_id": job_id, "node": node},
            )

    def answering_nodes(self, expected: int, timeout: float = 1.0) -> set[str]:
        """The nodes whose worker answers a Celery ping; empty if the broker does not answer.

        Returns once ``expected`` workers replied; waits ``timeout`` only when fewer are alive.
        """
        try:
            with self.app.connection_for_write() as connection:
                # Once, not with the worker's endless reconnection policy.
                connection.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT_SECONDS)
            replies = self.app.control.ping(timeout=timeout, limit=expected or None)
        except Exception:
            return set()
        prefix = worker_hostname("")
        return {
            hostname.removeprefix(prefix)
            for reply in replies
            for hostname in reply
            if hostname.startswith(prefix)
        }

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
