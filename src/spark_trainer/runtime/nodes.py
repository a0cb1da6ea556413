"""This process's node in the ``nodes`` table: registration and heartbeats.

A process that runs jobs (an embedded ``serve``, a distributed mode's ``worker``)
registers its node with its GPU inventory and heartbeats while it runs, with or without
GPUs: one without is a CPU node, where jobs that need no GPU run. The scheduling leader
places jobs on nodes whose heartbeat is fresh. A distributed mode's API process runs no
jobs and registers nothing. Submissions are checked against every registered node (a node
that is down now may come back).

A node marked lost (it stopped heartbeating, say cut off from the database while its job
processes ran on) has had its jobs failed or requeued and its GPUs handed out again: before
its heartbeat makes it up again, ``before_rejoin`` stops whatever of those jobs still runs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from spark_trainer.gpus.inventory import GpuInventory
from spark_trainer.kit.time import utcnow
from spark_trainer.models import Node, NodeState

logger = logging.getLogger(__name__)


class NodeHeartbeat:
    def __init__(
        self,
        session_factory: sessionmaker[Session],
        inventory: GpuInventory,
        name: str,
        *,
        interval: float,
        runs_jobs: bool = True,
        before_rejoin: Callable[[], None] | None = None,
    ) -> None:
        self.session_factory = session_factory
        self.runs_jobs = runs_jobs
        self.before_rejoin = before_rejoin
        self.inventory = inventory
        self.name = name
        self.interval = interval
        self._last = 0.0

    def beat(self, *, force: bool = False) -> None:
        """Registers or refreshes the node row, at most every ``interval`` seconds."""
        if not self.runs_jobs or (not force and time.monotonic() - self._last < self.interval):
            return
        if self.before_rejoin is not None:
            with self.session_factory() as session:
                state = session.scalar(select(Node.state).where(Node.name == self.name))
            if state == NodeState.LOST:
                logger.warning("this node was marked lost; stopping its settled jobs")
                self.before_rejoin()
        devices = self.inventory.devices()
        gpus = [
            {"index": d.index, "name": d.name, "uuid": d.uuid, "memory_total": d.memory_total}
            for d in devices
        ]
        with self.session_factory.begin() as session:
            node = session.get(Node, self.name)
            if node is None:
                session.add(
                    Node(
                        name=self.name,
                        gpus=gpus,
                        gpu_count=len(devices),
                        state=NodeState.UP,
                        heartbeat_at=utcnow(),
                    )
                )
            else:
                node.gpus = gpus
                node.gpu_count = len(devices)
                node.state = NodeState.UP
                node.heartbeat_at = utcnow()
        self._last = time.monotonic()

    def mark_down(self) -> None:
        if not self.runs_jobs:
            return
        try:
            with self.session_factory.begin() as session:
                node = session.get(Node, self.name)
                if node is not None:
                    node.state = NodeState.DOWN
        except Exception:
            logger.exception("marking the node down failed")
