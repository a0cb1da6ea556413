"""The scheduling policy, as a pure function of the queue and the free GPUs.

Rules, in order:

1. The queue is ordered by priority (higher first), then submission time (FIFO), then id
   (``models.job.QUEUE_ORDER``; the caller passes the queue in that order).
2. Each job, in that order, is placed on one node that has ``gpu_count`` free GPUs (a gang:
   all of a job's GPUs on one node). Among nodes that fit, the one with the fewest free GPUs
   wins (best fit), which keeps large free blocks intact for large jobs.
3. Backfill: a job that does not fit yet does not block the queue; later, smaller jobs may
   use GPUs it cannot use.
4. No starvation: once a blocked job has waited ``reserve_after`` seconds it *reserves* a
   node (the one that can hold it with the most GPUs already free). Jobs after it in the
   queue may not start on that node, so its free GPUs only grow as running jobs end, until
   it fits. Jobs ahead of it (higher priority) are unaffected.
5. A job that needs no GPU (``gpu_count`` 0: data preparation, CPU evaluation) fits any up
   node, including one without GPUs (a CPU node), and no reservation holds it back: it
   takes nothing a reserved node is saving up. With no node up at all, every job waits
   with the reason ``NO_NODE_UP``.

Nothing here touches the database or the clock: the scheduler service feeds it snapshots,
which keeps it fast (10,000 pending jobs are one linear pass) and easy to test.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

NO_NODE_UP = "no node is up"


@dataclass(frozen=True, slots=True)
class QueuedJob:
    id: str
    priority: int
    created_at: datetime
    gpu_count: int
    waiting_seconds: float


@dataclass(frozen=True, slots=True)
class Placement:
    job_id: str
    node: str
    gpus: tuple[int, ...]


@dataclass(slots=True)
class Decision:
    placements: list[Placement] = field(default_factory=list)
    # Why each job that stays pending is waiting, by job id.
    reasons: dict[str, str] = field(default_factory=dict)


def schedule(
    queue: Sequence[QueuedJob],
    free: Mapping[str, Sequence[int]],
    capacity: Mapping[str, int],
    *,
    reserve_after: float,
) -> Decision:
    """Decides which queued jobs start now and where.

    ``queue`` must already be in the queue order (``models.job.QUEUE_ORDER``). ``free``
    maps each up node to its free GPU indices; ``capacity`` to its total GPU count.
    """
    decision = Decision()
    if not capacity:
        decision.reasons = dict.fromkeys((job.id for job in queue), NO_NODE_UP)
        return decision
    available = {node: sorted(gpus) for node, gpus in free.items()}
    reserved_by: dict[str, QueuedJob] = {}
    largest_node = max(capacity.values())

    for job in queue:
        if job.gpu_count > largest_node:
            decision.reasons[job.id] = (
                f"needs {_gpus(job.gpu_count)}; the largest node has {largest_node}"
            )
            continue
        node = _best_fit(job, available, reserved_by)
        if node is not None:
            gpus = tuple(available[node][: job.gpu_count])
            available[node] = available[node][job.gpu_count :]
            decision.placements.append(Placement(job.id, node, gpus))
            continue
        decision.reasons[job.id] = _why_waiting(job, available, reserved_by)
        if job.waiting_seconds >= reserve_after:
            target = _reservation_target(job, available, capacity, reserved_by)
            if target is not None:
                reserved_by[target] = job
                decision.reasons[job.id] += f"; it has reserved node {target}"
    return decision


def _best_fit(
    job: QueuedJob, available: Mapping[str, list[int]], reserved_by: Mapping[str, QueuedJob]
) -> str | None:
    # A job without GPUs takes nothing a reservation is saving up.
    fits = [
        node
        for node, gpus in available.items()
        if len(gpus) >= job.gpu_count and (job.gpu_count == 0 or node not in reserved_by)
    ]
    return min(fits, key=lambda node: (len(available[node]), node)) if fits else None


def _reservation_target(
    job: QueuedJob,
    available: Mapping[str, list[int]],
    capacity: Mapping[str, int],
    reserved_by: Mapping[str, QueuedJob],
) -> str | None:
    candidates = [
        node
        for node, total in capacity.items()
        if total >= job.gpu_count and node not in reserved_by
    ]
    return max(candidates, key=lambda n: (len(available.get(n, ())), n)) if candidates else None


def _why_waiting(
    job: QueuedJob, available: Mapping[str, list[int]], reserved_by: Mapping[str, QueuedJob]
) -> str:
    largest_free = max((len(g) for g in available.values()), default=0)
    blocking = [
        (node, holder)
        for node, holder in reserved_by.items()
        if len(available.get(node, ())) >= job.gpu_count
    ]
    if blocking:
        node, holder = blocking[0]
        return (
            f"needs {_gpus(job.gpu_count)}; node {node} has them free but is reserved for "
            f"{holder.id} (priority {holder.priority}), which has waited longer"
        )
    return f"needs {_gpus(job.gpu_count)}; the largest free block is {largest_free}"


def _gpus(count: int) -> str:
    return f"{count} GPU" if count == 1 else f"{count} GPUs"
