"""The replica supervisor: one idempotent reconcile pass over the deployments' rows.

Each pass reads what the database says (desired replicas, each replica's job and its
status) plus one health check per running replica, and moves every deployment one step
towards what was asked: start missing replicas as jobs, restart dead ones after an
exponential backoff, drain and stop replicas scaled away, stop everything of a deployment
being deleted, and derive the deployment's status. Nothing lives only in memory: a pass
run twice, or by another process after this one died, does the same thing.

Side effects that the job engine makes in transactions of its own (cancelling a job) run
after the pass's transaction has committed; jobs are submitted inside it, so a pass that
rolls back starts nothing.
"""

from __future__ import annotations

import logging
import random
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from spark_trainer.deployments import backends, files
from spark_trainer.deployments.backends import Backend, ReplicaFiles
from spark_trainer.deployments.repository import DeploymentRepository
from spark_trainer.jobs import service as jobs_service
from spark_trainer.jobs.schemas import JobCreate
from spark_trainer.kit.time import utcnow
from spark_trainer.models import (
    Deployment,
    DeploymentReplica,
    DeploymentStatus,
    Job,
    JobKind,
    JobStatus,
    ModelVersion,
    ReplicaState,
    User,
)
from spark_trainer.runtime.engine import JobEngine
from spark_trainer.settings import Settings
from spark_trainer.storage.base import ArtifactStore

logger = logging.getLogger(__name__)

PASS_SECONDS = 0.5
HEALTH_TIMEOUT_SECONDS = 1.0
# A replica scaled away gets no new requests for this long (every proxy's route table
# refreshes within it) before its process is asked to stop; in-flight requests then
# finish during the process's graceful shutdown.
DRAIN_SECONDS = 1.5
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 60.0
# Exits in a row without ever passing a health check in between: the deployment fails.
CRASH_LOOP_LIMIT = 5


def backoff_seconds(failures: int) -> float:
    return float(min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, failures - 1)))


@dataclass
class _Effects:
    stop: list[str] = field(default_factory=list)
    submitted: bool = False


class ReplicaSupervisor:
    def __init__(
        self,
        settings: Settings,
        session_factory: sessionmaker[Session],
        jobs: JobEngine,
        artifacts: ArtifactStore,
    ) -> None:
        self.settings = settings
        self.session_factory = session_factory
        self.jobs = jobs
        self.artifacts = artifacts
        self.node = settings.node_name
        # Called after every pass (the proxy refreshes its routes from it).
        self.after_pass: list[Callable[[], None]] = []
        self._http = httpx.Client(timeout=HEALTH_TIMEOUT_SECONDS)
        self._probes = ThreadPoolExecutor(8, thread_name_prefix="replica-health")
        # One supervisor for all API processes: the scheduling leader's.
        self._loop = jobs.leader_loops.add(
            "deployments.replicas", self.run_pass, every=PASS_SECONDS
        )

    def wake(self) -> None:
        self._loop.wake()

    def close(self) -> None:
        """After the engine has stopped (and with it this supervisor's passes)."""
        self._probes.shutdown(wait=False)
        self._http.close()

    # --- one pass -------------------------------------------------------------------

    def run_pass(self) -> None:
        with self.session_factory() as session:
            repo = DeploymentRepository(session)
            deployments = {
                d.id: d
                for d in session.scalars(
                    select(Deployment).where(Deployment.id.in_(repo.active_ids()))
                )
            }
            replicas = repo.replicas(list(deployments))
            jobs = repo.jobs([r.job_id for r in replicas if r.job_id])
            targets = [
                (
                    r.id,
                    r.job_id,
                    r.port,
                    backends.HEALTH_PATHS[Backend(deployments[r.deployment_id].backend)],
                )
                for r in replicas
                if r.port is not None
                and r.job_id in jobs
                and jobs[r.job_id].status == JobStatus.RUNNING
            ]
        health = dict(self._probes.map(self._probe, targets))
        for deployment_id in deployments:
            try:
                self._reconcile(deployment_id, health)
            except StaleDataError:
                # Another process acted on the same replica first; the next pass sees it.
                logger.info("replica changed concurrently", extra={"deployment_id": deployment_id})
        for callback in self.after_pass:
            callback()

    def _probe(
        self, target: tuple[int, str | None, int | None, str]
    ) -> tuple[tuple[int, str | None], tuple[bool, str]]:
        replica_id, job_id, port, path = target
        try:
            response = self._http.get(f"http://{backends.LISTEN_HOST}:{port}{path}")
        except httpx.HTTPError as exc:
            return (replica_id, job_id), (False, type(exc).__name__)
        ok = response.status_code == 200
        return (replica_id, job_id), (ok, f"HTTP {response.status_code}")

    def _reconcile(
        self, deployment_id: str, health: dict[tuple[int, str | None], tuple[bool, str]]
    ) -> None:
        effects = _Effects()
        with self.session_factory.begin() as session:
            deployment = session.get(Deployment, deployment_id)
            if deployment is None or DeploymentStatus(deployment.status).is_final:
                return
            repo = DeploymentRepository(session)
            replicas = [
                r for r in repo.replicas([deployment_id]) if r.state != ReplicaState.STOPPED
            ]
            jobs = repo.jobs([r.job_id for r in replicas if r.job_id])
            now = utcnow()
            if deployment.status == DeploymentStatus.STOPPING:
                self._wind_down(deployment, replicas, jobs, effects, now, DeploymentStatus.STOPPED)
            else:
                self._steer(session, deployment, replicas, jobs, health, effects, now)
        for job_id in effects.stop:
            self._stop_job(job_id)
        if effects.submitted:
            self.jobs.wake()

    def _wind_down(
        self,
        deployment: Deployment,
        replicas: list[DeploymentReplica],
        jobs: dict[str, Job],
        effects: _Effects,
        now: datetime,
        final: DeploymentStatus,
    ) -> None:
        """Stops every replica; the deployment reaches ``final`` once all have exited."""
        running = 0
        for replica in replicas:
            job = jobs.get(replica.job_id) if replica.job_id else None
            if job is not None and not JobStatus(job.status).is_final:
                running += 1
                effects.stop.append(job.id)
            if final == DeploymentStatus.FAILED or job is None or JobStatus(job.status).is_final:
                # A failed deployment is final at once (no later pass looks at it): its
                # replicas are marked stopped while their jobs are being stopped.
                replica.state = ReplicaState.STOPPED
                replica.port = None  # the port goes back to the pool
                replica.reason = None
            else:
                replica.state = ReplicaState.DRAINING
                replica.reason = "stopping"
        if running == 0 or final == DeploymentStatus.FAILED:
            deployment.status = final
            deployment.stopped_at = now
            if final == DeploymentStatus.STOPPED:
                deployment.status_reason = "stopped by the owner"

    def _steer(
        self,
        session: Session,
        deployment: Deployment,
        replicas: list[DeploymentReplica],
        jobs: dict[str, Job],
        health: dict[tuple[int, str | None], tuple[bool, str]],
        effects: _Effects,
        now: datetime,
    ) -> None:
        backend = Backend(deployment.backend)
        desired = deployment.replicas
        taken = {r.slot for r in replicas}
        for slot in range(desired):
            if slot not in taken:
                replica = self._new_replica(session, deployment, slot)
                if replica is None:
                    deployment.status_reason = "no free port for a new replica"
                    continue
                replicas.append(replica)
        live: list[DeploymentReplica] = []
        for replica in replicas:
            job = jobs.get(replica.job_id) if replica.job_id else None
            alive = job is not None and not JobStatus(job.status).is_final
            if replica.slot >= desired and replica.state != ReplicaState.DRAINING:
                replica.state = ReplicaState.DRAINING
                replica.draining_since = now
                replica.reason = "scaled down: draining"
            if replica.state == ReplicaState.DRAINING:
                if not alive:
                    session.delete(replica)  # frees the slot and the port
                elif replica.draining_since and now - replica.draining_since >= timedelta(
                    seconds=DRAIN_SECONDS
                ):
                    assert job is not None
                    effects.stop.append(job.id)
                continue
            live.append(replica)
            if job is not None and not alive and replica.state != ReplicaState.RESTARTING:
                self._record_exit(replica, job, now)
                if replica.failures >= CRASH_LOOP_LIMIT:
                    deployment.status_reason = (
                        f"replica {replica.slot} exited {replica.failures} times in a row "
                        f"without becoming healthy; last: {replica.last_exit}"
                    )
                    self._wind_down(
                        deployment, replicas, jobs, effects, now, DeploymentStatus.FAILED
                    )
                    return
            if job is None or replica.state == ReplicaState.RESTARTING:
                if replica.restart_at is None or now >= replica.restart_at:
                    reason = self._launch(session, deployment, replica)
                    if reason is not None:
                        deployment.status_reason = reason
                        self._wind_down(
                            deployment, replicas, jobs, effects, now, DeploymentStatus.FAILED
                        )
                        return
                    effects.submitted = True
                continue
            if job.status == JobStatus.PENDING:
                replica.state = ReplicaState.STARTING
                replica.reason = job.pending_reason or "queued for GPUs"
                continue
            ok, detail = health.get((replica.id, replica.job_id), (False, "not checked yet"))
            replica.checked_at = now
            if ok:
                if replica.state != ReplicaState.HEALTHY:
                    replica.state = ReplicaState.HEALTHY
                    replica.healthy_since = now
                    replica.failures = 0
                    replica.reason = None
            elif replica.state in (ReplicaState.HEALTHY, ReplicaState.UNHEALTHY):
                replica.state = ReplicaState.UNHEALTHY
                replica.reason = f"failing its health check ({detail})"
            else:
                replica.state = ReplicaState.STARTING
                replica.reason = "loading the model"
                limit = backends.STARTUP_SECONDS[backend]
                if job.started_at and (now - job.started_at).total_seconds() > limit:
                    replica.reason = f"not healthy {limit:g} s after starting; stopping it"
                    effects.stop.append(job.id)
        self._derive_status(deployment, live, jobs, now)

    def _derive_status(
        self,
        deployment: Deployment,
        live: list[DeploymentReplica],
        jobs: dict[str, Job],
        now: datetime,
    ) -> None:
        desired = deployment.replicas
        healthy = sum(r.state == ReplicaState.HEALTHY for r in live)
        summary = f"{healthy} of {desired} replicas healthy"
        if healthy >= desired:
            deployment.status = DeploymentStatus.RUNNING
            deployment.ready_at = deployment.ready_at or now
            deployment.status_reason = None
        elif healthy > 0 and deployment.ready_at is not None:
            deployment.status = DeploymentStatus.RUNNING
            deployment.status_reason = summary
        elif any(r.job_id in jobs and jobs[r.job_id].status == JobStatus.RUNNING for r in live):
            deployment.status = DeploymentStatus.STARTING
            deployment.status_reason = summary
        else:
            deployment.status = DeploymentStatus.PENDING
            waiting = next((r.reason for r in live if r.reason), None)
            deployment.status_reason = waiting or summary

    def _record_exit(self, replica: DeploymentReplica, job: Job, now: datetime) -> None:
        replica.last_exit = job.status_reason or str(job.status)
        replica.last_exit_code = job.exit_code
        replica.last_exit_at = job.finished_at or now
        replica.failures += 1
        delay = backoff_seconds(replica.failures)
        replica.restart_at = now + timedelta(seconds=delay)
        replica.state = ReplicaState.RESTARTING
        replica.healthy_since = None
        replica.reason = f"exited ({replica.last_exit}); restarting in {delay:g} s"
        logger.info(
            "replica exited",
            extra={"job_id": job.id, "slot": replica.slot, "restart_in_s": delay},
        )

    def _new_replica(
        self, session: Session, deployment: Deployment, slot: int
    ) -> DeploymentReplica | None:
        used = DeploymentRepository(session).ports_in_use(self.node)
        low, high = self.settings.deployment_port_min, self.settings.deployment_port_max
        span = high - low + 1
        start = random.randrange(span)  # noqa: S311 - spreading, not security
        for step in range(span):
            port = low + (start + step) % span
            if port in used or not _bindable(port):
                continue
            replica = DeploymentReplica(
                deployment_id=deployment.id,
                slot=slot,
                node=self.node,
                port=port,
                state=ReplicaState.STARTING,
                restart_count=0,
                failures=0,
            )
            try:
                # The (node, port) unique key settles a race with another process.
                with session.begin_nested():
                    session.add(replica)
                    session.flush()
            except IntegrityError:
                continue
            return replica
        return None

    def _launch(
        self, session: Session, deployment: Deployment, replica: DeploymentReplica
    ) -> str | None:
        """Submits the replica's next process as a job; returns why it cannot, if so."""
        backend = Backend(deployment.backend)
        missing = backends.missing_executable(backend)
        if missing is not None:
            return f"{missing} is not installed on node {self.node}"
        owner = session.get_one(User, deployment.owner_id)
        assert replica.port is not None
        replica_files = self._files(session, deployment, replica.port)
        if backend == Backend.TRITON:
            backends.write_triton_repository(replica_files)
        job = jobs_service.submit(
            session,
            self.jobs,
            owner,
            JobCreate(
                name=f"{deployment.name}-replica-{replica.slot}",
                command=backends.command(backend, replica_files),
                gpu_count=deployment.gpu_count,
            ),
            kind=JobKind.REPLICA,
            parent_id=deployment.id,
        )
        # This pass wakes the scheduler itself once it has committed.
        session.info.pop("after_commit", None)
        if replica.job_id is not None:
            replica.restart_count += 1
        replica.job_id = job.id
        replica.state = ReplicaState.STARTING
        replica.restart_at = None
        replica.reason = "queued for GPUs"
        return None

    def _files(self, session: Session, deployment: Deployment, port: int) -> ReplicaFiles:
        model = session.get_one(ModelVersion, deployment.model_id)
        model_dir = files.materialize(
            self.artifacts, model, files.model_dir(self.settings, model.id)
        )
        base_dir = None
        if deployment.base_model is not None:
            base = session.get(ModelVersion, deployment.base_model)
            base_dir = (
                files.materialize(self.artifacts, base, files.model_dir(self.settings, base.id))
                if base is not None
                else Path(deployment.base_model)
            )
        return ReplicaFiles(
            model_dir=model_dir,
            base_model_dir=base_dir,
            served_name=deployment.name,
            port=port,
            gpu_count=deployment.gpu_count,
            work_dir=files.deployment_dir(self.settings, deployment.id),
        )

    def _stop_job(self, job_id: str) -> None:
        """Cancels a replica's job (SIGTERM: the server finishes in-flight requests)."""
        with self.session_factory() as session:
            row = session.execute(
                select(Job.status, Job.cancel_requested_at).where(Job.id == job_id)
            ).one_or_none()
        if row is None:
            return
        if row.status == JobStatus.PENDING:
            self.jobs.cancel_pending(job_id, "replica stopped by its deployment")
        elif row.status == JobStatus.RUNNING and row.cancel_requested_at is None:
            self.jobs.cancel_running(job_id)


def _bindable(port: int) -> bool:
    """Whether nothing on this machine listens on ``port`` (replicas listen on loopback)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((backends.LISTEN_HOST, port))
        except OSError:
            return False
    return True
