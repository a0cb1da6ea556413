"""The runtime's queries: the queue, nodes, allocations, and jobs a node supervises."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, func, select, update
from sqlalchemy.orm import Session

from spark_trainer.models import GpuAllocation, Job, JobStatus, Node, NodeState
from spark_trainer.models.job import queue_order_by


class RuntimeRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def pending_queue(self) -> Sequence[Row[str, int, datetime, int, str, str]]:
        """Pending jobs in the queue order (``models.job.QUEUE_ORDER``), with the owner and
        name the activity events of their pending reasons carry."""
        return self.session.execute(
            select(Job.id, Job.priority, Job.created_at, Job.gpu_count, Job.owner_id, Job.name)
            .where(Job.status == JobStatus.PENDING)
            .order_by(*queue_order_by())
        ).all()

    def live_nodes(self, now: datetime, stale_after: float) -> dict[str, list[int]]:
        """Node name → its GPU indices, for nodes that are up and heartbeating."""
        rows = self.session.execute(
            select(Node.name, Node.gpus).where(
                Node.state == NodeState.UP,
                Node.heartbeat_at >= now - timedelta(seconds=stale_after),
            )
        ).all()
        return {row.name: [int(gpu["index"]) for gpu in row.gpus] for row in rows}

    def stale_nodes(self, now: datetime, stale_after: float) -> list[str]:
        return list(
            self.session.scalars(
                select(Node.name).where(Node.heartbeat_at < now - timedelta(seconds=stale_after))
            )
        )

    def mark_lost(self, nodes: Sequence[str]) -> None:
        self.session.execute(
            update(Node)
            .where(Node.name.in_(nodes), Node.state == NodeState.UP)
            .values(state=NodeState.LOST)
        )

    def largest_node(self) -> int:
        return self.session.scalar(select(func.max(Node.gpu_count))) or 0

    def allocated(self) -> dict[str, set[int]]:
        held: dict[str, set[int]] = {}
        for node, gpu in self.session.execute(select(GpuAllocation.node, GpuAllocation.gpu_index)):
            held.setdefault(node, set()).add(gpu)
        return held

    def running_on(self, node: str) -> Sequence[Job]:
        return self.session.scalars(
            select(Job).where(Job.status == JobStatus.RUNNING, Job.node == node)
        ).all()

    def running_on_nodes(
        self, nodes: Sequence[str]
    ) -> Sequence[Row[str, str | None, int, int, dict[str, Any] | None, datetime | None]]:
        return self.session.execute(
            select(
                Job.id,
                Job.node,
                Job.restarts,
                Job.max_retries,
                Job.handle,
                Job.cancel_requested_at,
            ).where(Job.status == JobStatus.RUNNING, Job.node.in_(nodes))
        ).all()

    def running_here(self, node: str, job_ids: Collection[str]) -> set[str]:
        """Which of ``job_ids`` are running on ``node``."""
        return set(
            self.session.scalars(
                select(Job.id).where(
                    Job.id.in_(job_ids), Job.status == JobStatus.RUNNING, Job.node == node
                )
            )
        )

    def lost_here(self, node: str) -> Sequence[Row[str, dict[str, Any], dict[str, Any] | None]]:
        """Lost attempts' handles left for ``node`` to stop (see ``Job.lost_handle``), each
        with its job's current handle."""
        rows = self.session.execute(
            select(Job.id, Job.lost_handle, Job.handle).where(Job.lost_handle.is_not(None))
        ).all()
        return [row for row in rows if row.lost_handle.get("node") == node]

    def forget_lost_handle(self, job_id: str) -> None:
        self.session.execute(update(Job).where(Job.id == job_id).values(lost_handle=None))

    def orphan_allocations(self) -> list[str]:
        """Jobs holding GPUs although they are not running (a safety net: every status
        change away from running deletes them in its own transaction)."""
        return list(
            self.session.scalars(
                select(GpuAllocation.job_id)
                .join(Job, Job.id == GpuAllocation.job_id)
                .where(Job.status != JobStatus.RUNNING)
                .distinct()
            )
        )
