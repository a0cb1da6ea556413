"""A node's agent: registers the node, heartbeats, runs the jobs placed on it.

A node without GPUs is a CPU node: it runs the jobs that need none (``gpu_count`` 0).

It is the job engine without scheduling (the leader among the API processes places jobs)
and without HTTP, plus a Celery worker consuming ``node.<name>``: each launch task makes
the engine launch the placements waiting for this node at once. The engine's own pass
finds the same placements in the database every second, so a lost or unsent message only
delays a launch. Everything a job produces reaches the API processes through the shared
database (status, metrics, job-end events) and Redis pub/sub (live metrics, job ends,
cancel requests); its logs are files under ``SPARKTRAINER_DATA_DIR/jobs/<id>/``, which
the API processes read at the same path (a shared mount, see the README).
"""

from __future__ import annotations

import contextlib
import logging
from datetime import timedelta
from typing import Any

import redis
from sqlalchemy import select

from spark_trainer.context import job_end_handlers
from spark_trainer.datadir import secure_data_dir
from spark_trainer.db.engine import make_engine, make_session_factory
from spark_trainer.executor.base import Handle
from spark_trainer.executor.celery import LAUNCH_TASK, celery_app, queue_for, worker_hostname
from spark_trainer.executor.local import kill_group_if_alive
from spark_trainer.gpus.inventory import build_inventory
from spark_trainer.kit.time import utcnow
from spark_trainer.metrics.bus import RedisBus
from spark_trainer.metrics.hub import StreamHub
from spark_trainer.metrics.pipeline import MetricsPipeline
from spark_trainer.models import Job, JobStatus
from spark_trainer.runtime.engine import LOST_PREFIX, JobEngine
from spark_trainer.runtime.repository import RuntimeRepository
from spark_trainer.settings import Settings
from spark_trainer.storage.local import LocalArtifactStore

logger = logging.getLogger(__name__)

# Launches are short (a process is spawned, a row updated): a few threads are plenty.
CELERY_THREADS = 4
# How far back a restarted worker looks for lost jobs whose processes may still run here.
LOST_LOOKBACK_DAYS = 7


class WorkerNode:
    def __init__(self, settings: Settings) -> None:
        broker = settings.effective_broker_url
        assert broker is not None, "checked by Settings.shared_services_problem"
        secure_data_dir(settings)
        self.settings = settings
        self.db = make_engine(settings)
        session_factory = make_session_factory(self.db)
        assert settings.redis_url is not None, "checked by Settings.shared_services_problem"
        self.redis = redis.Redis.from_url(
            settings.redis_url, socket_timeout=2, socket_connect_timeout=2
        )
        # Nobody subscribes here; the hub only satisfies the bus.
        self.bus = RedisBus(StreamHub(), self.redis)
        self.inventory = build_inventory(settings)
        artifacts = LocalArtifactStore(settings.artifacts_root)
        self.engine = JobEngine(
            settings,
            session_factory,
            self.inventory,
            self.bus,
            MetricsPipeline(self.db, self.bus),
            artifacts,
            job_end_handlers(artifacts),
            schedules=False,
        )
        self.celery = celery_app(broker)
        self.celery.task(name=LAUNCH_TASK, ignore_result=True)(self._launch_task)

    @property
    def name(self) -> str:
        return self.settings.node_name

    def _launch_task(self, job_id: str) -> None:
        # The id only names the message: every placement waiting here is launched.
        self.engine.launch_placed()

    def run(self) -> None:
        """Runs until SIGTERM or SIGINT (Celery's warm shutdown), then marks the node down.

        Job processes keep running: a worker started again on this node adopts them.
        """
        if not self.inventory.devices():
            logger.warning(
                "node %r has no GPUs: it runs jobs that need none (gpu_count 0); on a machine "
                "without GPUs, SPARKTRAINER_GPUS sets a virtual inventory",
                self.name,
            )
        self.stop_lost_jobs()
        self.bus.start()
        self.engine.heartbeat.beat(force=True)
        self.engine.start()
        logger.info(
            "worker started",
            extra={"node": self.name, "gpus": len(self.inventory.devices())},
        )
        worker: Any = self.celery.Worker(
            hostname=worker_hostname(self.name),
            queues=[queue_for(self.name)],
            pool="threads",
            concurrency=CELERY_THREADS,
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
            loglevel=self.settings.log_level,
            quiet=True,
        )
        try:
            worker.start()
        finally:
            self.stop()

    def stop_lost_jobs(self) -> None:
        """Kills what is left of attempts lost while this worker was away: jobs failed as
        lost, and jobs requeued after their attempt here was lost.

        Their GPUs were freed and may be given to other jobs: a process of theirs still
        running here must not keep using them.
        """
        with self.engine.session_factory() as session:
            lost = session.execute(
                select(Job.id, Job.handle).where(
                    Job.node == self.name,
                    Job.status == JobStatus.FAILED,
                    Job.status_reason.startswith(LOST_PREFIX),
                    Job.finished_at >= utcnow() - timedelta(days=LOST_LOOKBACK_DAYS),
                )
            ).all()
            # Attempts lost here whose jobs were requeued (and may run elsewhere now).
            requeued = RuntimeRepository(session).lost_here(self.name)
        attempts: list[tuple[str, dict[str, Any] | None, dict[str, Any] | None]] = [
            (job_id, handle, None) for job_id, handle in lost
        ]
        attempts += [(job_id, lost_handle, handle) for job_id, lost_handle, handle in requeued]
        for job_id, recorded, current in attempts:
            handle = self._lost_attempt(job_id, recorded, current)
            if handle is None:
                continue
            if kill_group_if_alive(handle):
                logger.warning("stopped a lost job's leftover processes", extra={"job_id": job_id})
            # A requeued job placed here again: recovery must not take the lost attempt's
            # handle, left beside its directory, for the new attempt's.
            if self.engine.recorded_handle(job_id) == handle:
                with contextlib.suppress(OSError):
                    self.engine.handle_file(job_id).unlink()
        if requeued:
            with self.engine.session_factory.begin() as session:
                repo = RuntimeRepository(session)
                for job_id, _, _ in requeued:
                    repo.forget_lost_handle(job_id)

    def _lost_attempt(
        self, job_id: str, recorded: dict[str, Any] | None, current: dict[str, Any] | None
    ) -> Handle | None:
        """A lost attempt's handle as the database has it; else, when the worker died
        between starting the process and recording it, the handle file it wrote first,
        unless that file is the job's ``current`` attempt's (placed here again since)."""
        if recorded and "executor" in recorded:
            return Handle.from_json(recorded)
        found = self.engine.recorded_handle(job_id)
        if found is None or (current is not None and found == Handle.from_json(current)):
            return None
        return found

    def stop(self) -> None:
        self.engine.stop()
        self.engine.heartbeat.mark_down()
        self.bus.close()
        self.inventory.close()
        self.redis.close()
        self.db.dispose()
