from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from spark_trainer.models import GpuAllocation, Job, Node


class GpuAllocationRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def holders(self, node: str | None = None) -> dict[tuple[str, int], tuple[str, str]]:
        """(node, GPU index) → (job id, owner id), from the allocation rows (of ``node``)."""
        query = select(GpuAllocation.node, GpuAllocation.gpu_index, Job.id, Job.owner_id).join(
            Job, Job.id == GpuAllocation.job_id
        )
        if node is not None:
            query = query.where(GpuAllocation.node == node)
        return {
            (row.node, row.gpu_index): (row.id, row.owner_id) for row in self.session.execute(query)
        }

    def nodes(self) -> Sequence[Node]:
        return self.session.scalars(select(Node).order_by(Node.name)).all()
