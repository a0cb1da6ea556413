from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from spark_trainer.models import GpuAllocation, Job


class GpuAllocationRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def holders(self, node: str) -> dict[int, tuple[str, str]]:
        """GPU index → (job id, owner id), from the allocation rows of ``node``."""
        rows = self.session.execute(
            select(GpuAllocation.gpu_index, Job.id, Job.owner_id)
            .join(Job, Job.id == GpuAllocation.job_id)
            .where(GpuAllocation.node == node)
        ).all()
        return {row.gpu_index: (row.id, row.owner_id) for row in rows}
