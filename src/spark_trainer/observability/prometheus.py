"""``GET /metrics``: the cluster's state for Prometheus, read at scrape time.

Everything but the stream subscribers comes from the shared database, so any API process
answers for the whole cluster and counters survive restarts: queue depth by why jobs
wait, GPUs held per node, job starts and ends (from the recorded status transitions), and
dispatch latency: submission to the job's process started, which the process that starts
it records with the job (``Job.dispatch_seconds``, first attempt only), bucketed here.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session, sessionmaker

from spark_trainer.metrics.hub import StreamHub
from spark_trainer.models import GpuAllocation, Job, JobEvent, JobStatus, Node
from spark_trainer.scheduler.policy import NO_NODE_UP

FINAL = [str(JobStatus.COMPLETED), str(JobStatus.FAILED), str(JobStatus.CANCELLED)]
DISPATCH_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


def waiting_reason(pending_reason: str | None) -> str:
    """A pending job's reason (``scheduler.policy``) as a label of few values."""
    if pending_reason is None:
        return "not_yet_scheduled"
    if pending_reason == NO_NODE_UP:
        return "no_node_up"
    if "the largest node has" in pending_reason:
        return "no_node_large_enough"
    if "is reserved for" in pending_reason:
        return "node_reserved"
    if "largest free block" in pending_reason:
        return "gpus_busy"
    return "other"


class ClusterCollector(Collector):
    def __init__(self, session_factory: sessionmaker[Session], hub: StreamHub) -> None:
        self.session_factory = session_factory
        self.hub = hub

    def collect(self) -> Iterator[Metric]:
        queue = GaugeMetricFamily(
            "sparktrainer_queue_depth", "Pending jobs, by why they wait.", labels=["reason"]
        )
        allocated = GaugeMetricFamily(
            "sparktrainer_gpus_allocated", "GPUs held by running jobs, by node.", labels=["node"]
        )
        total = GaugeMetricFamily(
            "sparktrainer_gpus", "GPUs each registered node has.", labels=["node", "state"]
        )
        starts = CounterMetricFamily(
            "sparktrainer_job_starts", "Jobs placed on a node to run (each attempt)."
        )
        ends = CounterMetricFamily(
            "sparktrainer_job_ends", "Jobs that ended, by final status.", labels=["status"]
        )
        with self.session_factory() as session:
            dispatch = self._dispatch(session)
            depth: dict[str, int] = {}
            for reason, count in session.execute(
                select(Job.pending_reason, func.count())
                .where(Job.status == JobStatus.PENDING)
                .group_by(Job.pending_reason)
            ):
                label = waiting_reason(reason)
                depth[label] = depth.get(label, 0) + count
            held: dict[str, int] = {
                node: count
                for node, count in session.execute(
                    select(GpuAllocation.node, func.count()).group_by(GpuAllocation.node)
                )
            }
            nodes = session.execute(select(Node.name, Node.gpu_count, Node.state)).all()
            transitions: dict[str, int] = {
                status: count
                for status, count in session.execute(
                    select(JobEvent.to_status, func.count())
                    .where(JobEvent.to_status.in_([str(JobStatus.RUNNING), *FINAL]))
                    .group_by(JobEvent.to_status)
                )
            }
        for label, count in sorted(depth.items()):
            queue.add_metric([label], count)
        for node in nodes:
            allocated.add_metric([node.name], held.get(node.name, 0))
            total.add_metric([node.name, node.state], node.gpu_count)
        starts.add_metric([], transitions.get(str(JobStatus.RUNNING), 0))
        for status in FINAL:
            ends.add_metric([status], transitions.get(status, 0))
        subscribers = GaugeMetricFamily(
            "sparktrainer_stream_subscribers",
            "Live SSE and WebSocket subscribers of this API process.",
            value=self.hub.total_subscribers(),
        )
        yield from (queue, allocated, total, starts, ends, dispatch, subscribers)

    @staticmethod
    def _dispatch(session: Session) -> HistogramMetricFamily:
        """Every bucket in one pass over the jobs: cumulative counts, as Prometheus wants."""
        latency = Job.dispatch_seconds
        row = session.execute(
            select(
                func.count(latency),
                func.coalesce(func.sum(latency), 0.0),
                *(func.sum(case((latency <= bound, 1), else_=0)) for bound in DISPATCH_BUCKETS),
            ).where(latency.is_not(None))
        ).one()
        count, total, *within = row
        buckets = [
            (str(bound), int(n or 0)) for bound, n in zip(DISPATCH_BUCKETS, within, strict=True)
        ]
        buckets.append(("+Inf", int(count)))
        return HistogramMetricFamily(
            "sparktrainer_dispatch_latency_seconds",
            "Submission to the job's process started (first attempt), cluster-wide.",
            buckets=buckets,
            sum_value=float(total),
        )


def exposition(session_factory: sessionmaker[Session], hub: StreamHub) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ClusterCollector(session_factory, hub))
    return generate_latest(registry)
