"""The job engine: placement, supervision, reconciliation and what happens when a job ends.

Every API process runs one engine; they share the database and coordinate only through it
(and, when configured, Redis messages that make things faster, never correct):

- **Placement** happens on the scheduling leader only (see ``runtime.leader``): it reads
  the queue, the live nodes and the GPU allocation rows, runs ``scheduler.policy`` and
  commits each placement with its allocation rows; the database's key on (node, GPU)
  refuses a GPU held twice.
- **Supervision** happens on each node's own process (every process that runs jobs
  registers its node, a CPU node when it has no GPUs): it launches the jobs placed on its
  node through its executor, records each exit, delivers cancel requests (a bus message,
  and a periodic look at ``cancel_requested_at``), and reconciles: a job ``running`` on
  this node that the executor does not supervise is adopted, which reports its exit if it
  is gone, so an exit that failed to record is recorded on the next pass.
- The leader also settles jobs on nodes that stopped heartbeating and GPU rows left by
  ended jobs.
- Job ends go to the outbox (``runtime.states``); ``runtime.events`` delivers them.

Every status change is a compare-and-set, so two actors never both win a transition.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from spark_trainer.activity.record import record
from spark_trainer.executor.base import Executor, ExitReport, Handle, LaunchSpec
from spark_trainer.gpus.inventory import GpuInventory
from spark_trainer.identity.tokens import api_key_digest
from spark_trainer.kit.time import utcnow
from spark_trainer.metrics.bus import EventBus
from spark_trainer.metrics.frames import end_payload
from spark_trainer.metrics.pipeline import FileTailer, MetricsPipeline
from spark_trainer.models import DatasetVersion, Job, JobStatus
from spark_trainer.runtime.environment import JobUser, job_environment, prepare_job_dir
from spark_trainer.runtime.events import EventDispatcher, HandlerRegistry
from spark_trainer.runtime.executors import build_executor
from spark_trainer.runtime.jobfiles import (
    HANDLE_FILE,
    JOB_TOKEN_PREFIX,
    METRICS_FILE,
    OUTPUT_DIR,
    REASON_FILE,
    WORK_DIR,
)
from spark_trainer.runtime.leader import LeaderLease, LeaderLoops
from spark_trainer.runtime.nodes import NodeHeartbeat
from spark_trainer.runtime.repository import RuntimeRepository
from spark_trainer.runtime.states import change_status, free_gpus
from spark_trainer.scheduler.policy import QueuedJob, schedule
from spark_trainer.settings import Settings
from spark_trainer.storage.base import ArtifactStore

logger = logging.getLogger(__name__)

# How often the loop looks even when nothing woke it (reservations age with time, cancel
# requests recorded by other processes must be seen, leases renewed).
IDLE_PASS_SECONDS = 1.0
RECONCILE_SECONDS = 2.0
GPU_READING_TTL = 1.0
MAX_REASON_CHARS = 500
CANCEL_POLL_SECONDS = 0.05
LOST_PREFIX = "lost: "
# How long a node marked lost waits for its superseded jobs' processes to exit (SIGKILL,
# so about at once) before it heartbeats itself up again.
REJOIN_WAIT_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class _Started:
    job_id: str
    command: str
    environment: dict[str, str]
    working_dir: str | None
    timeout_seconds: int | None
    gpus: tuple[int, ...]
    dataset_path: Path | None
    created_at: datetime


class JobEngine:
    def __init__(
        self,
        settings: Settings,
        session_factory: sessionmaker[Session],
        inventory: GpuInventory,
        bus: EventBus,
        pipeline: MetricsPipeline,
        artifacts: ArtifactStore,
        handlers: HandlerRegistry | None = None,
        *,
        schedules: bool = True,
        runs_jobs: bool = True,
        on_placed: Callable[[str, str], None] | None = None,
    ) -> None:
        self.settings = settings
        # Distributed mode: a worker node supervises only (never the leader), an API
        # process runs no jobs (no node of its own), and the leader hands each placement
        # to ``on_placed`` (job id, node) once it is committed (the Celery dispatch; the
        # node's own pass is the fallback).
        self.schedules = schedules
        self.on_placed = on_placed
        self.session_factory = session_factory
        self.inventory = inventory
        self.bus = bus
        self.pipeline = pipeline
        self.artifacts = artifacts
        self.tailer = FileTailer(pipeline)
        self.executor: Executor = build_executor(settings, self._on_exit)
        self.node = settings.node_name
        self.jobs_dir = settings.data_dir / "jobs"
        self.job_user = JobUser.from_settings(settings)
        self.lease = LeaderLease(session_factory, ttl=settings.leader_lease_seconds)
        # Domain loops that run on the scheduling leader only (see LeaderLoops).
        self.leader_loops = LeaderLoops(lambda: self.lease.held)
        self.heartbeat = NodeHeartbeat(
            session_factory,
            inventory,
            self.node,
            interval=settings.node_heartbeat_seconds,
            runs_jobs=runs_jobs,
            before_rejoin=lambda: self.stop_superseded(REJOIN_WAIT_SECONDS),
        )
        self.handlers = handlers or HandlerRegistry()
        self.events = EventDispatcher(
            session_factory,
            self.handlers,
            node=self.node if self.heartbeat.runs_jobs else None,
            is_leader=lambda: self.lease.held,
        )
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._allocations: dict[str, tuple[int, ...]] = {}
        self._finished: dict[str, threading.Event] = {}
        # Jobs this process has begun launching, is supervising or is recording the exit
        # of: reconciliation leaves them alone.
        self._owned: set[str] = set()
        self._cancel_sent: set[str] = set()
        self._reasons: dict[str, str] = {}
        self._last_reconcile = 0.0
        self._job_user_ready = False
        self._gpu_cache: tuple[float, dict[int, float]] = (0.0, {})
        pipeline.extra_values = self._gpu_util
        bus.on_control = self._on_control

    # --- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        self._prepare_job_user()
        self._stopping.clear()
        self.pipeline.start()
        self.tailer.start()
        self.events.start()
        self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)
        self._thread.start()
        self.leader_loops.start()

    def stop(self) -> None:
        """Stops scheduling and supervising. Job processes keep running for the next start."""
        self.leader_loops.stop()
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.events.stop()
        self.executor.shutdown()
        self.tailer.stop()
        self.pipeline.stop()
        self.lease.release()

    def wake(self) -> None:
        self._wake.set()

    def _prepare_job_user(self) -> None:
        with self._lock:
            if self._job_user_ready:
                return
            self._job_user_ready = True
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        # Protected first: the check runs as the job user inside the protected layout.
        self.job_user.protect_data_dir(
            self.settings.data_dir, self.jobs_dir, self.settings.sqlite_path
        )
        self.job_user = self.job_user.checked(self.settings.data_dir, self.jobs_dir)

    def wake_scheduler(self) -> None:
        """After a submit: wakes this process and, through the bus, the leader elsewhere."""
        self._wake.set()
        self._publish_control({"wake": True})

    def _loop(self) -> None:
        # Recovery comes first and is retried: the API serves (and reports not ready)
        # while its database is unreachable, and scheduling starts once it is back.
        while not self._stopping.is_set():
            try:
                self.recover()
                break
            except Exception:
                logger.exception("recovering jobs failed; retrying")
                self._stopping.wait(2.0)
        while not self._stopping.is_set():
            try:
                self.run_pass()
            except Exception:
                logger.exception("scheduler pass failed")
                self._stopping.wait(1.0)
            self._wake.wait(IDLE_PASS_SECONDS)
            self._wake.clear()

    def run_pass(self) -> int:
        """One pass of everything this process does; returns how many jobs it started."""
        self.heartbeat.beat()
        started = 0
        if self.schedules and self.lease.refresh():
            started += self._place()
        started += self._launch_placed()
        self._deliver_cancels()
        if time.monotonic() - self._last_reconcile >= RECONCILE_SECONDS:
            self.reconcile()
            self._last_reconcile = time.monotonic()
        return started

    def capacity(self) -> int:
        """The most GPUs any registered node has (or this one, before it has registered)."""
        with self.session_factory() as session:
            registered = RuntimeRepository(session).largest_node()
        return max(registered, len(self.inventory.devices()))

    # --- placement (leader) --------------------------------------------------------------

    def _place(self) -> int:
        now = utcnow()
        with self.session_factory() as session:
            repo = RuntimeRepository(session)
            pending = repo.pending_queue()
            if not pending:
                return 0
            nodes = repo.live_nodes(now, self.settings.node_stale_seconds)
            held = repo.allocated()
        free = {
            node: [gpu for gpu in gpus if gpu not in held.get(node, set())]
            for node, gpus in nodes.items()
        }
        # Positional and unpacked: this runs once per pending job on every pass (10,000
        # jobs: a third of the pass's own time went into building them by name).
        queue = [
            QueuedJob(job_id, priority, created_at, gpu_count, (now - created_at).total_seconds())
            for job_id, priority, created_at, gpu_count, _, _ in pending
        ]
        decision = schedule(
            queue,
            free,
            {node: len(gpus) for node, gpus in nodes.items()},
            reserve_after=self.settings.reserve_after_seconds,
        )
        self._record_reasons(decision.reasons, {row[0]: (row[4], row[5]) for row in pending})
        started = 0
        remote = False
        for placement in decision.placements:
            if placement.node == self.node and self.heartbeat.runs_jobs:
                started += self._start(placement.job_id, placement.gpus)
            elif self._assign(placement.job_id, placement.node, placement.gpus):
                remote = True
                if self.on_placed is not None:
                    self.on_placed(placement.job_id, placement.node)
        if remote and self.on_placed is None:
            self._publish_control({"placed": True})
        return started

    def _record_reasons(self, reasons: dict[str, str], owners: dict[str, tuple[str, str]]) -> None:
        """Writes what changed of the pending jobs' reasons, and tells the dashboards.

        ``owners``: job → (owner, name) as the pass read the queue. Re-reading them after the
        update cost a query per 500 jobs (2.2 s of a 10,000-job first pass on PostgreSQL); a
        job that left the queue since is not updated (the status guard), and its event only
        makes a dashboard refresh what it shows.
        """
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
            for job_id, why in changed.items():
                owner_id, name = owners[job_id]
                record(
                    session,
                    kind="job.pending_reason",
                    job_id=job_id,
                    owner_id=owner_id,
                    name=name,
                    status=JobStatus.PENDING,
                    pending_reason=why,
                )
        self._reasons = dict(reasons)

    def _assign(self, job_id: str, node: str, gpus: tuple[int, ...]) -> bool:
        """Places a job on another node; that node's process launches it."""
        try:
            with self.session_factory.begin() as session:
                return change_status(
                    session,
                    job_id,
                    JobStatus.PENDING,
                    JobStatus.RUNNING,
                    node=node,
                    gpus=list(gpus),
                )
        except IntegrityError:
            logger.warning(
                "a GPU was already allocated; placement skipped", extra={"job_id": job_id}
            )
            return False

    # --- launching (the job's node) ------------------------------------------------------

    def _start(self, job_id: str, gpus: tuple[int, ...]) -> int:
        """Places a job on this node and launches it at once."""
        job_dir = self.jobs_dir / job_id
        token = JOB_TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self._lock:
            self._owned.add(job_id)
        try:
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
                started = self._started(session, job_id, gpus) if claimed else None
        except IntegrityError:
            started = None
        if started is None:
            with self._lock:
                self._owned.discard(job_id)
            return 0  # cancelled while this pass was deciding, or a GPU was taken
        return self._launch(started, job_dir, token)

    def launch_placed(self) -> int:
        """Launches jobs the leader (in another process) placed on this node."""
        return self._launch_placed()

    def _launch_placed(self) -> int:
        """Launches jobs the leader (in another process) placed on this node."""
        if not self.heartbeat.runs_jobs:
            return 0
        with self.session_factory() as session:
            waiting = session.execute(
                select(Job.id, Job.gpus).where(
                    Job.status == JobStatus.RUNNING,
                    Job.node == self.node,
                    Job.handle.is_(None),
                    Job.job_dir.is_(None),
                )
            ).all()
        launched = 0
        for row in waiting:
            with self._lock:
                if row.id in self._owned:
                    continue
                self._owned.add(row.id)
            job_dir = self.jobs_dir / row.id
            token = JOB_TOKEN_PREFIX + secrets.token_urlsafe(32)
            with self.session_factory.begin() as session:
                claimed = session.execute(
                    update(Job)
                    .where(Job.id == row.id, Job.status == JobStatus.RUNNING, Job.job_dir.is_(None))
                    .values(job_dir=str(job_dir), ingest_token_digest=api_key_digest(token))
                ).rowcount  # type: ignore[attr-defined]
                started = self._started(session, row.id, tuple(row.gpus)) if claimed else None
            if started is None:
                with self._lock:
                    self._owned.discard(row.id)
                continue
            launched += self._launch(started, job_dir, token)
        return launched

    def _started(self, session: Session, job_id: str, gpus: tuple[int, ...]) -> _Started:
        job = session.get_one(Job, job_id)
        dataset_hash = (
            session.scalar(
                select(DatasetVersion.hash).where(DatasetVersion.id == job.dataset_version_id)
            )
            if job.dataset_version_id
            else None
        )
        return _Started(
            job_id=job.id,
            command=job.command,
            environment=dict(job.environment),
            working_dir=job.working_dir,
            timeout_seconds=job.timeout_seconds,
            gpus=gpus,
            dataset_path=self.artifacts.local_path(dataset_hash) if dataset_hash else None,
            created_at=job.created_at,
        )

    def _launch(self, started: _Started, job_dir: Path, token: str) -> int:
        # Committed: only now does a process start (a rolled-back placement starts nothing).
        job_id = started.job_id
        with self._lock:
            self._allocations[job_id] = started.gpus
            self._finished[job_id] = threading.Event()
        try:
            handle = self._spawn(started, job_dir, token)
        except Exception as exc:
            # Whatever the reason (a LaunchError, a missing dataset blob, a bad working
            # directory), the job fails with it and its GPUs go back.
            reason = str(exc) or type(exc).__name__
            logger.warning("job failed to launch", extra={"job_id": job_id, "reason": reason})
            self._fail_launch(job_id, f"launch failed: {reason}")
            return 0
        # Across machines this includes clock skew: keep node clocks in sync (NTP).
        dispatch = max(0.0, (utcnow() - started.created_at).total_seconds())
        with self.session_factory.begin() as session:
            session.execute(
                update(Job)
                .where(Job.id == job_id)
                .values(
                    handle=handle.to_json(),
                    # The first attempt's only: a requeue is not a submission.
                    dispatch_seconds=func.coalesce(Job.dispatch_seconds, dispatch),
                )
            )
            cancelled_meanwhile = session.scalar(
                select(Job.cancel_requested_at).where(Job.id == job_id)
            )
        if cancelled_meanwhile is not None:
            # The cancel arrived while the process was being created, before the
            # executor knew of it; deliver it now.
            self._terminate(job_id)
        logger.info(
            "job started",
            extra={"job_id": job_id, "gpus": list(started.gpus), "node": self.node},
        )
        return 1

    def _spawn(self, job: _Started, job_dir: Path, token: str) -> Handle:
        self._prepare_job_user()  # done by start(); here for passes run without it
        output_dir = job_dir / OUTPUT_DIR
        work_dir = job_dir / WORK_DIR
        metrics_file = job_dir / METRICS_FILE
        prepare_job_dir(job_dir, (output_dir, work_dir), metrics_file, self.job_user)
        working_dir = Path(job.working_dir) if job.working_dir is not None else work_dir
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
            allow=self.settings.job_env_allowlist,
            home=work_dir if self.job_user.switches else None,
            python=self.job_user.python,
        )
        environment["SPARKTRAINER_REASON_FILE"] = str(job_dir / REASON_FILE)
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
                uid=self.job_user.uid,
                gid=self.job_user.gid,
                python=self.job_user.python,
                # Before the database has it, and before the command starts: what a
                # restarted node finds the process by if it stopped in between.
                on_started=partial(_write_handle, self.handle_file(job.job_id)),
            )
        )

    def _fail_launch(self, job_id: str, reason: str) -> None:
        with contextlib.suppress(Exception):
            self.tailer.drain(job_id)
        with self.session_factory.begin() as session:
            change_status(
                session,
                job_id,
                JobStatus.RUNNING,
                JobStatus.FAILED,
                reason,
                ingest_token_digest=None,
            )
        self._ended(job_id, JobStatus.FAILED, None, reason)

    # --- cancel -----------------------------------------------------------------------

    def cancel_pending(self, job_id: str, reason: str) -> bool:
        with self.session_factory.begin() as session:
            cancelled = change_status(
                session, job_id, JobStatus.PENDING, JobStatus.CANCELLED, reason
            )
        if cancelled:
            self._ended(job_id, JobStatus.CANCELLED, None, reason)
        return cancelled

    def cancel_running(self, job_id: str) -> None:
        """Records the request, then delivers it to whichever process supervises the job.

        Recorded first, so the exit reads as a cancel wherever it is observed; the
        supervising process also finds the request on its next pass if the message is lost.
        """
        with self.session_factory.begin() as session:
            session.execute(
                update(Job)
                .where(
                    Job.id == job_id,
                    Job.status == JobStatus.RUNNING,
                    Job.cancel_requested_at.is_(None),
                )
                .values(cancel_requested_at=utcnow())
            )
        if not self._terminate(job_id):
            self._publish_control({"cancel": job_id})

    def _terminate(self, job_id: str) -> bool:
        sent = self.executor.terminate(job_id, self.settings.kill_grace_seconds)
        if sent:
            with self._lock:
                self._cancel_sent.add(job_id)
        return sent

    def _deliver_cancels(self) -> None:
        if not self.heartbeat.runs_jobs:
            return
        with self.session_factory() as session:
            requested = session.scalars(
                select(Job.id).where(
                    Job.status == JobStatus.RUNNING,
                    Job.node == self.node,
                    Job.cancel_requested_at.is_not(None),
                )
            ).all()
        for job_id in requested:
            with self._lock:
                if job_id in self._cancel_sent:
                    continue
            self._terminate(job_id)

    def wait_ended(self, job_id: str, timeout: float) -> None:
        """Waits until the job has a final status or ``timeout`` passes.

        Holds no database connection while waiting: each look is a short session of its
        own, and a job supervised here is waited on without the database at all.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            local = self._finished.get(job_id)
        if local is not None:
            local.wait(timeout)
            return
        while time.monotonic() < deadline:
            with self.session_factory() as session:
                status = session.scalar(select(Job.status).where(Job.id == job_id))
            if status is None or JobStatus(status).is_final:
                return
            time.sleep(CANCEL_POLL_SECONDS)

    def _on_control(self, message: dict[str, Any]) -> None:
        """A message from another process's engine (through the bus)."""
        job_id = message.get("cancel")
        if isinstance(job_id, str):
            self._terminate(job_id)
        if message.get("wake") or message.get("placed"):
            self.wake()

    def _publish_control(self, message: dict[str, Any]) -> None:
        try:
            self.bus.publish_control(message)
        except Exception as exc:
            # Only a shortcut: the periodic pass finds the same work in the database.
            logger.warning("publishing a control message failed: %s", exc)

    # --- ending ---------------------------------------------------------------------

    def _on_exit(self, report: ExitReport) -> None:
        with self._lock:
            self._owned.add(report.job_id)
        try:
            self._record_exit(report)
        finally:
            with self._lock:
                self._owned.discard(report.job_id)

    def _record_exit(self, report: ExitReport) -> None:
        try:
            self.tailer.drain(report.job_id)
            self.pipeline.forget(report.job_id)
        except Exception:
            # Metrics must not keep a job running: what could not be stored now is read
            # again from the file's stored offset if the job is ever re-adopted.
            logger.exception("draining a job's metrics failed", extra={"job_id": report.job_id})
        with self.session_factory.begin() as session:
            job = session.get(Job, report.job_id)
            if job is None or job.status != JobStatus.RUNNING or job.node != self.node:
                # Settled elsewhere: failed or requeued as lost with this node (then
                # stopped here, see stop_superseded), or cancelled while pending.
                self._forget(report.job_id)
                return
            status, reason = _outcome(job, report)
            if status == JobStatus.FAILED and reason is not None and job.job_dir is not None:
                reason = _with_job_reason(reason, Path(job.job_dir))
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

    def _forget(self, job_id: str) -> threading.Event | None:
        with self._lock:
            self._allocations.pop(job_id, None)
            self._cancel_sent.discard(job_id)
            return self._finished.pop(job_id, None)

    def _ended(
        self, job_id: str, status: JobStatus, exit_code: int | None, reason: str | None
    ) -> None:
        event = self._forget(job_id)
        try:
            self.bus.publish_end(job_id, end_payload(status, exit_code, reason))
        except Exception as exc:
            # The status is committed; streams read it from the database when they resync.
            logger.warning("publishing a job's end failed: %s", exc, extra={"job_id": job_id})
        if event is not None:
            event.set()
        self.events.wake()
        if self.schedules:
            self.wake()
        else:
            # A worker node: the freed GPUs are the leader's (in an API process) to fill.
            self.wake_scheduler()

    # --- recovery and reconciliation -----------------------------------------------------

    def handle_file(self, job_id: str) -> Path:
        """Where this node records a job's handle when it launches it: beside the job's
        directory, not in it (see ``_write_handle``)."""
        return self.jobs_dir / f"{job_id}.{HANDLE_FILE}"

    def recorded_handle(self, job_id: str) -> Handle | None:
        """The handle this node wrote when it launched the job, before the database had
        it: the one trace of a process whose worker died in between."""
        return _read_handle(self.handle_file(job_id))

    def recover(self) -> None:
        """At start: requeues jobs placed here whose process never started, and records the
        handle of those that started just before the server stopped."""
        if not self.heartbeat.runs_jobs:
            return
        with self.session_factory() as session:
            never_recorded = session.scalars(
                select(Job.id).where(
                    Job.status == JobStatus.RUNNING,
                    Job.node == self.node,
                    Job.handle.is_(None),
                )
            ).all()
        for job_id in never_recorded:
            handle = self.recorded_handle(job_id)
            with self.session_factory.begin() as session:
                if handle is not None:
                    # Started, then the server stopped before recording it: the
                    # reconcile pass below adopts the process (or records its exit).
                    session.execute(
                        update(Job).where(Job.id == job_id).values(handle=handle.to_json())
                    )
                    continue
                change_status(
                    session,
                    job_id,
                    JobStatus.RUNNING,
                    JobStatus.PENDING,
                    "requeued: the server stopped before the job's process started",
                    job_dir=None,
                    handle=None,
                )
        self.reconcile()

    def reconcile(self) -> None:
        """Settles differences between the database and reality.

        On this node: every job ``running`` here that the executor does not supervise is
        adopted (the executor reports its exit at once if the process is gone). On the
        leader: jobs on nodes that stopped heartbeating fail as lost, and GPU rows of
        jobs that are no longer running are deleted.
        """
        if self.heartbeat.runs_jobs:
            self.stop_superseded()
            self._reconcile_node()
        if self.lease.held:
            self._reconcile_cluster()

    def _reconcile_node(self) -> None:
        with self.session_factory() as session:
            running = RuntimeRepository(session).running_on(self.node)
            session.expunge_all()
        supervised = self.executor.running()
        for job in running:
            with self._lock:
                if job.id in self._owned or job.id in supervised:
                    continue
                self._owned.add(job.id)
            try:
                self._adopt(job)
            finally:
                with self._lock:
                    self._owned.discard(job.id)

    def _adopt(self, job: Job) -> None:
        if job.handle is None or job.job_dir is None:
            return  # being launched by this process's own pass (never started: recover)
        job_dir = Path(job.job_dir)
        with self._lock:
            self._allocations[job.id] = tuple(job.gpus)
            self._finished.setdefault(job.id, threading.Event())
        self.tailer.follow(job.id, job_dir / METRICS_FILE)
        timeout_at = (
            job.started_at.timestamp() + job.timeout_seconds
            if job.timeout_seconds is not None and job.started_at is not None
            else None
        )
        adopted = self.executor.adopt(job.id, Handle.from_json(job.handle), job_dir, timeout_at)
        logger.info("adopted a running job", extra={"job_id": job.id, "alive": adopted})
        if adopted and job.cancel_requested_at is not None:
            self._terminate(job.id)

    def stop_superseded(self, wait_seconds: float = 0.0) -> None:
        """Stops processes supervised here whose jobs no longer run on this node.

        They were failed or requeued as lost while this node could not reach the database
        (a network partition): their GPUs may be someone else's now. With
        ``wait_seconds``, waits (that long at most) for their exits to be seen, so that a
        requeued job placed here again is never confused with its stopped attempt.
        """
        supervised = self.executor.running()
        if not supervised:
            return
        with self.session_factory() as session:
            ours = RuntimeRepository(session).running_here(self.node, supervised)
        superseded = supervised - ours
        for job_id in superseded:
            logger.warning(
                "stopping a job settled as lost while this node was away",
                extra={"job_id": job_id},
            )
            self.executor.terminate(job_id, 0.0)
        deadline = time.monotonic() + wait_seconds
        while superseded & self.executor.running() and time.monotonic() < deadline:
            time.sleep(CANCEL_POLL_SECONDS)

    def _reconcile_cluster(self) -> None:
        now = utcnow()
        with self.session_factory() as session:
            repo = RuntimeRepository(session)
            stale = repo.stale_nodes(now, self.settings.node_stale_seconds)
            lost = repo.running_on_nodes(stale) if stale else []
            orphans = repo.orphan_allocations()
        for row in lost:
            lost_why = f"node {row.node} stopped heartbeating"
            if row.restarts < row.max_retries and row.cancel_requested_at is None:
                self._requeue_lost(row.id, row.node, row.handle, row.restarts, lost_why)
                continue
            reason = LOST_PREFIX + lost_why
            with self.session_factory.begin() as session:
                ended = change_status(session, row.id, JobStatus.RUNNING, JobStatus.FAILED, reason)
            if ended:
                logger.warning("job lost with its node", extra={"job_id": row.id})
                self._ended(row.id, JobStatus.FAILED, None, reason)
        if orphans:
            with self.session_factory.begin() as session:
                free_gpus(session, orphans)
        if stale:
            with self.session_factory.begin() as session:
                RuntimeRepository(session).mark_lost(stale)

    def _requeue_lost(
        self,
        job_id: str,
        node: str | None,
        handle: dict[str, Any] | None,
        restarts: int,
        why: str,
    ) -> None:
        """Back to the queue, same id, for a fresh attempt; its lost process is left to its
        node to stop when it returns (``lost_handle``)."""
        reason = f"requeued: {why} (restart {restarts + 1})"
        with self.session_factory.begin() as session:
            requeued = change_status(
                session,
                job_id,
                JobStatus.RUNNING,
                JobStatus.PENDING,
                reason,
                restarts=Job.restarts + 1,
                # The node alone when its worker died before recording the handle: the
                # node still has the handle file it wrote first (``recorded_handle``).
                lost_handle={"node": node, **(handle or {})},
                ingest_token_digest=None,
            )
        if not requeued:
            return
        # The recorded handle of the lost attempt must not be adopted by the next one's
        # node if that node restarts before launching it.
        with contextlib.suppress(OSError):
            self.handle_file(job_id).unlink()
        logger.warning("job requeued after its node was lost", extra={"job_id": job_id})
        self.wake()

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


def _with_job_reason(reason: str, job_dir: Path) -> str:
    """``reason`` followed by the first line the job wrote to its reason file, if any."""
    try:
        with (job_dir / REASON_FILE).open(encoding="utf-8", errors="replace") as handle:
            text = handle.readline(MAX_REASON_CHARS).strip()
    except OSError:
        return reason
    text = "".join(c for c in text if c.isprintable())
    return f"{reason}: {text}" if text else reason


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


def _write_handle(path: Path, handle: Handle) -> None:
    # Beside the job's directory, not in it: the job's user owns that one, and a forged
    # handle would have the server adopt (and later signal) a process of its choosing.
    staging = path.with_name(f".{path.name}.part")
    staging.write_text(json.dumps(handle.to_json()), encoding="utf-8")
    staging.replace(path)


def _read_handle(path: Path) -> Handle | None:
    try:
        return Handle.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError):
        return None
