"""The job engine: the scheduler loop, the executor, and what happens when a job ends.

One engine runs in the API process in embedded mode. It is the only writer of job state
after submission: a scheduler thread places pending jobs on free GPUs (see
``scheduler.policy``), hands them to the executor after the placement is committed, and
records each exit the executor reports. On start it recovers what an earlier process left
behind, so no job stays ``running`` forever and no GPU stays held.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.orm import Session, sessionmaker

from spark_trainer.executor.base import ExitReport, LaunchError, LaunchSpec, ProcessHandle
from spark_trainer.executor.local import LocalExecutor
from spark_trainer.gpus.inventory import GpuInventory
from spark_trainer.identity.tokens import api_key_digest
from spark_trainer.jobs.states import change_status
from spark_trainer.kit.time import utcnow
from spark_trainer.metrics.bus import EventBus
from spark_trainer.metrics.frames import end_payload
from spark_trainer.metrics.pipeline import FileTailer, MetricsPipeline
from spark_trainer.models import DatasetVersion, Job, JobStatus
from spark_trainer.scheduler.policy import QueuedJob, schedule
from spark_trainer.settings import Settings
from spark_trainer.storage.base import ArtifactStore, BlobNotFound

logger = logging.getLogger(__name__)

JOB_TOKEN_PREFIX = "stj_"  # noqa: S105 - a prefix, not a secret
METRICS_FILE = "metrics.jsonl"
OUTPUT_DIR = "output"
WORK_DIR = "work"
# How often the scheduler looks even when nothing woke it (reservations age with time).
IDLE_PASS_SECONDS = 1.0
GPU_READING_TTL = 1.0


@dataclass(frozen=True, slots=True)
class _Started:
    job_id: str
    command: str
    environment: dict[str, str]
    working_dir: str | None
    timeout_seconds: int | None
    gpus: tuple[int, ...]
    dataset_path: Path | None


class JobEngine:
    def __init__(
        self,
        settings: Settings,
        session_factory: sessionmaker[Session],
        inventory: GpuInventory,
        bus: EventBus,
        pipeline: MetricsPipeline,
        artifacts: ArtifactStore,
    ) -> None:
        self.settings = settings
        self.session_factory = session_factory
        self.inventory = inventory
        self.bus = bus
        self.pipeline = pipeline
        self.artifacts = artifacts
        self.tailer = FileTailer(pipeline)
        self.executor = LocalExecutor(self._on_exit, kill_grace_seconds=settings.kill_grace_seconds)
        self.node = settings.node_name
        self.jobs_dir = settings.data_dir / "jobs"
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._allocations: dict[str, tuple[int, ...]] = {}
        self._finished: dict[str, threading.Event] = {}
        self._reasons: dict[str, str] = {}
        self._gpu_cache: tuple[float, dict[int, float]] = (0.0, {})
        pipeline.extra_values = self._gpu_util
        # Called with a job's id once it has completed successfully (model registration).
        self.completion_hooks: list[Callable[[str], None]] = []

    # --- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self.pipeline.start()
        self.tailer.start()
        self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stops scheduling and supervising. Job processes keep running for the next start."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.executor.shutdown()
        self.tailer.stop()
        self.pipeline.stop()

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        # Recovery comes first, and is retried: the API serves (and reports not ready)
        # while its database is unreachable, and scheduling starts once it is back.
        while not self._stopping.is_set():
            try:
                self.recover()
                break
            except Exception:
                logger.exception("recovering jobs failed; retrying")
                self._stopping.wait(2.0)
        while not self._stopping.is_set():
            self._wake.wait(IDLE_PASS_SECONDS)
            self._wake.clear()
            if self._stopping.is_set():
                return
            try:
                self.run_pass()
            except Exception:
                logger.exception("scheduler pass failed")
                self._stopping.wait(1.0)

    # --- scheduling -----------------------------------------------------------------

    def capacity(self) -> dict[str, int]:
        return {self.node: len(self.inventory.devices())}

    def run_pass(self) -> int:
        """One scheduling pass; returns how many jobs it started."""
        now = utcnow()
        with self.session_factory() as session:
            pending = session.execute(
                select(Job.id, Job.priority, Job.created_at, Job.gpu_count)
                .where(Job.status == JobStatus.PENDING)
                .order_by(Job.priority.desc(), Job.created_at, Job.id)
            ).all()
            held = session.execute(
                select(Job.gpus).where(Job.status == JobStatus.RUNNING, Job.node == self.node)
            ).scalars()
            used = {gpu for gpus in held for gpu in gpus}
        if not pending:
            return 0
        free = [d.index for d in self.inventory.devices() if d.index not in used]
        queue = [
            QueuedJob(
                id=row.id,
                priority=row.priority,
                created_at=row.created_at,
                gpu_count=row.gpu_count,
                waiting_seconds=(now - row.created_at).total_seconds(),
            )
            for row in pending
        ]
        decision = schedule(
            queue,
            {self.node: free},
            self.capacity(),
            reserve_after=self.settings.reserve_after_seconds,
        )
        self._record_reasons(decision.reasons)
        started = 0
        for placement in decision.placements:
            if self._start(placement.job_id, placement.gpus):
                started += 1
        return started

    def _record_reasons(self, reasons: dict[str, str]) -> None:
        changed = {job: why for job, why in reasons.items() if self._reasons.get(job) != why}
        if not changed:
            return
        jobs = cast(Table, Job.__table__)
        # One executemany: the first pass over a long queue explains thousands of jobs.
        with self.session_factory.begin() as session:
            session.connection().execute(
                update(jobs)
                .where(jobs.c.id == bindparam("job"), jobs.c.status == JobStatus.PENDING)
                .values(pending_reason=bindparam("why")),
                [{"job": job_id, "why": why} for job_id, why in changed.items()],
            )
        self._reasons = dict(reasons)

    def _start(self, job_id: str, gpus: tuple[int, ...]) -> bool:
        job_dir = self.jobs_dir / job_id
        token = JOB_TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self.session_factory.begin() as session:
            claimed = change_status(
                session,
                job_id,
                JobStatus.PENDING,
                JobStatus.RUNNING,
                node=self.node,
                gpus=list(gpus),
                job_dir=str(job_dir),
                ingest_token_digest=api_key_digest(token),
            )
            if not claimed:
                return False  # cancelled while this pass was deciding
            job = session.get_one(Job, job_id)
            dataset_hash = (
                session.scalar(
                    select(DatasetVersion.hash).where(DatasetVersion.id == job.dataset_version_id)
                )
                if job.dataset_version_id
                else None
            )
            started = _Started(
                job_id=job.id,
                command=job.command,
                environment=dict(job.environment),
                working_dir=job.working_dir,
                timeout_seconds=job.timeout_seconds,
                gpus=gpus,
                dataset_path=self.artifacts.local_path(dataset_hash) if dataset_hash else None,
            )
        # Committed: only now does a process start (a rolled-back placement starts nothing).
        with self._lock:
            self._allocations[job_id] = gpus
            self._finished[job_id] = threading.Event()
        try:
            handle = self._launch(started, job_dir, token)
        except (LaunchError, BlobNotFound) as exc:
            self._fail_launch(job_id, str(exc))
            return False
        with self.session_factory.begin() as session:
            session.execute(
                update(Job)
                .where(Job.id == job_id)
                .values(pid=handle.pid, process_started_at=handle.started_at)
            )
            cancelled_meanwhile = session.scalar(
                select(Job.cancel_requested_at).where(Job.id == job_id)
            )
        if cancelled_meanwhile is not None:
            # The cancel arrived while the process was being created, before the
            # executor knew of it; deliver it now.
            self.terminate(job_id)
        logger.info(
            "job started",
            extra={"job_id": job_id, "gpus": list(gpus), "pid": handle.pid, "node": self.node},
        )
        return True

    def _launch(self, job: _Started, job_dir: Path, token: str) -> ProcessHandle:
        output_dir = job_dir / OUTPUT_DIR
        output_dir.mkdir(parents=True, exist_ok=True)
        if job.working_dir is not None:
            working_dir = Path(job.working_dir)
        else:
            working_dir = job_dir / WORK_DIR
            working_dir.mkdir(exist_ok=True)
        metrics_file = job_dir / METRICS_FILE
        metrics_file.touch()
        self.tailer.follow(job.job_id, metrics_file)
        environment = job_environment(
            base=os.environ,
            requested=job.environment,
            job_id=job.job_id,
            gpus=job.gpus,
            output_dir=output_dir,
            metrics_file=metrics_file,
            api_url=self.settings.api_url,
            token=token,
        )
        if job.dataset_path is not None:
            # The store keeps blobs read-only; the job reads the dataset in place.
            environment["SPARKTRAINER_DATASET_PATH"] = str(job.dataset_path)
        return self.executor.launch(
            LaunchSpec(
                job_id=job.job_id,
                command=job.command,
                environment=environment,
                working_dir=working_dir,
                job_dir=job_dir,
                timeout_seconds=job.timeout_seconds,
            )
        )

    def _fail_launch(self, job_id: str, reason: str) -> None:
        self.tailer.drain(job_id)
        with self.session_factory.begin() as session:
            change_status(session, job_id, JobStatus.RUNNING, JobStatus.FAILED, reason)
        self._ended(job_id, JobStatus.FAILED, None, reason)

    # --- ending ---------------------------------------------------------------------

    def cancel_pending(self, job_id: str, reason: str) -> bool:
        with self.session_factory.begin() as session:
            cancelled = change_status(
                session, job_id, JobStatus.PENDING, JobStatus.CANCELLED, reason
            )
        if cancelled:
            self._ended(job_id, JobStatus.CANCELLED, None, reason)
        return cancelled

    def cancel_running(self, job_id: str) -> None:
        # Recorded before the signal goes out, so the exit reads as a cancel.
        with self.session_factory.begin() as session:
            session.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == JobStatus.RUNNING)
                .values(cancel_requested_at=utcnow())
            )
        self.terminate(job_id)

    def terminate(self, job_id: str) -> bool:
        return self.executor.terminate(job_id, self.settings.kill_grace_seconds)

    def wait_finished(self, job_id: str, timeout: float) -> bool:
        with self._lock:
            event = self._finished.get(job_id)
        return event.wait(timeout) if event is not None else True

    def _on_exit(self, report: ExitReport) -> None:
        self.tailer.drain(report.job_id)
        self.pipeline.forget(report.job_id)
        with self.session_factory.begin() as session:
            job = session.get(Job, report.job_id)
            if job is None or job.status != JobStatus.RUNNING:
                return
            status, reason = _outcome(job, report)
            change_status(
                session,
                job.id,
                JobStatus.RUNNING,
                status,
                reason,
                exit_code=report.exit_code,
                ingest_token_digest=None,
            )
        logger.info(
            "job ended",
            extra={"job_id": report.job_id, "status": str(status), "exit_code": report.exit_code},
        )
        self._ended(report.job_id, status, report.exit_code, reason)
        if status == JobStatus.COMPLETED:
            for hook in self.completion_hooks:
                try:
                    hook(report.job_id)
                except Exception:
                    # The job itself succeeded; a failing hook must not change that.
                    logger.exception("completion hook failed", extra={"job_id": report.job_id})

    def _ended(
        self, job_id: str, status: JobStatus, exit_code: int | None, reason: str | None
    ) -> None:
        with self._lock:
            self._allocations.pop(job_id, None)
            event = self._finished.pop(job_id, None)
        self.bus.publish_end(job_id, end_payload(status, exit_code, reason))
        if event is not None:
            event.set()
        self.wake()

    # --- recovery -------------------------------------------------------------------

    def recover(self) -> None:
        """Brings the database in line with the processes that actually exist on this node."""
        with self.session_factory() as session:
            running = session.scalars(
                select(Job).where(Job.status == JobStatus.RUNNING, Job.node == self.node)
            ).all()
            session.expunge_all()
        for job in running:
            if job.pid is None or job.process_started_at is None or job.job_dir is None:
                with self.session_factory.begin() as session:
                    change_status(
                        session,
                        job.id,
                        JobStatus.RUNNING,
                        JobStatus.PENDING,
                        "requeued: the server stopped before the job's process started",
                    )
                continue
            job_dir = Path(job.job_dir)
            with self._lock:
                self._allocations[job.id] = tuple(job.gpus)
                self._finished[job.id] = threading.Event()
            self.tailer.follow(job.id, job_dir / METRICS_FILE)
            timeout_at = (
                job.started_at.timestamp() + job.timeout_seconds
                if job.timeout_seconds is not None and job.started_at is not None
                else None
            )
            adopted = self.executor.adopt(
                job.id, ProcessHandle(job.pid, job.process_started_at), job_dir, timeout_at
            )
            logger.info(
                "recovered a running job",
                extra={"job_id": job.id, "adopted": adopted, "pid": job.pid},
            )
            if adopted and job.cancel_requested_at is not None:
                self.terminate(job.id)

    # --- GPU readings -----------------------------------------------------------------

    def _gpu_util(self, job_id: str) -> dict[str, float]:
        gpus = self._allocations.get(job_id)
        # A virtual GPU's zero readings come from no device: not a utilization to log.
        if not gpus or self.inventory.virtual:
            return {}
        stamp, cache = self._gpu_cache
        if time.monotonic() - stamp > GPU_READING_TTL:
            cache = {
                index: reading.utilization
                for index, reading in self.inventory.readings().items()
                if reading.utilization is not None
            }
            self._gpu_cache = (time.monotonic(), cache)
        readings = [cache[g] for g in gpus if g in cache]
        return {"gpu_util": round(sum(readings) / len(readings), 1)} if readings else {}


def job_environment(
    *,
    base: dict[str, str] | os._Environ[str],
    requested: dict[str, str],
    job_id: str,
    gpus: tuple[int, ...],
    output_dir: Path,
    metrics_file: Path,
    api_url: str,
    token: str,
) -> dict[str, str]:
    """The environment a job's command sees.

    The server's own ``SPARKTRAINER_*`` variables (secret key, database URL, admin
    password) never reach a job. The platform's variables win over what the user asked
    for: a job cannot choose its GPUs by setting ``CUDA_VISIBLE_DEVICES`` itself.
    """
    env = {k: v for k, v in base.items() if not k.startswith("SPARKTRAINER_")}
    env.update(requested)
    env.update(
        {
            "SPARKTRAINER_JOB_ID": job_id,
            "SPARKTRAINER_OUTPUT_DIR": str(output_dir),
            "SPARKTRAINER_METRICS_FILE": str(metrics_file),
            "SPARKTRAINER_API_URL": api_url,
            "SPARKTRAINER_JOB_TOKEN": token,
            # NVML numbers GPUs in PCI bus order; CUDA must use the same numbering.
            "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
            "CUDA_VISIBLE_DEVICES": ",".join(str(g) for g in gpus),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def _outcome(job: Job, report: ExitReport) -> tuple[JobStatus, str | None]:
    if report.timed_out:
        return JobStatus.FAILED, f"timed out after {job.timeout_seconds} s"
    if job.cancel_requested_at is not None:
        return JobStatus.CANCELLED, "cancelled by user"
    if report.exit_code == 0:
        return JobStatus.COMPLETED, None
    if report.exit_code is None:
        return JobStatus.FAILED, report.detail or "exit status unknown"
    if report.signal is not None:
        try:
            name = signal.Signals(report.signal).name
        except ValueError:
            name = f"signal {report.signal}"
        return JobStatus.FAILED, f"killed by signal {report.signal} ({name})"
    return JobStatus.FAILED, f"exited with code {report.exit_code}"
