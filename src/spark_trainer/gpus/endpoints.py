"""``GET /api/gpus`` and ``GET /api/metrics``."""

from __future__ import annotations

from spark_trainer.deps import Context, CurrentUser, DbSession
from spark_trainer.gpus.repository import GpuAllocationRepository
from spark_trainer.gpus.schemas import GpuRead, SystemMetricsRead, gpu_rows
from spark_trainer.routing import api_router
from spark_trainer.system.metrics import system_snapshot

router = api_router(tags=["gpus"])


# Plain ``def`` handlers: NVML and psutil block briefly, so they run in the thread pool.
@router.get("/api/gpus", response_model=list[GpuRead], summary="The GPUs of every node")
def list_gpus(user: CurrentUser, ctx: Context, session: DbSession) -> list[GpuRead]:
    repo = GpuAllocationRepository(session)
    # Which job holds a GPU is shown to that job's owner (and admins); others see it taken.
    holders = {
        key: job_id if user.is_admin or owner_id == user.id else None
        for key, (job_id, owner_id) in repo.holders().items()
    }
    return gpu_rows(ctx.gpu_inventory, ctx.settings.node_name, repo.nodes(), holders)


@router.get(
    "/api/metrics", response_model=SystemMetricsRead, summary="CPU, memory, disk and network use"
)
def system_metrics(user: CurrentUser, ctx: Context) -> SystemMetricsRead:
    return SystemMetricsRead.model_validate(system_snapshot(ctx.settings.data_dir))
