from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from spark_trainer.models.base import Base, TimestampMixin


class DeploymentStatus(StrEnum):
    PENDING = "pending"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"

    @property
    def is_final(self) -> bool:
        return self in (DeploymentStatus.STOPPED, DeploymentStatus.FAILED)


class ReplicaState(StrEnum):
    STARTING = "starting"  # its job is queued or its server is loading the model
    HEALTHY = "healthy"  # passes its health check; the proxy sends it requests
    UNHEALTHY = "unhealthy"  # running but failing its health check; taken out
    RESTARTING = "restarting"  # its process ended; a new one starts after the backoff
    DRAINING = "draining"  # scaled away: no new requests, then stopped
    STOPPED = "stopped"


class Deployment(TimestampMixin, Base):
    __tablename__ = "deployments"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    model_id: Mapped[str] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"))
    backend: Mapped[str] = mapped_column(String(32))
    # A LoRA adapter's base: the id of a registered model, or a directory on the node.
    base_model: Mapped[str | None] = mapped_column(Text, default=None)
    replicas: Mapped[int] = mapped_column(Integer)
    gpu_count: Mapped[int] = mapped_column(Integer)
    status: Mapped[DeploymentStatus] = mapped_column(
        String(16), default=DeploymentStatus.PENDING, index=True
    )
    status_reason: Mapped[str | None] = mapped_column(Text, default=None)
    # Set once every replica was healthy at the same time: later gaps read as degraded,
    # not as a deployment still starting.
    ready_at: Mapped[datetime | None] = mapped_column(default=None)
    stopped_at: Mapped[datetime | None] = mapped_column(default=None)


class DeploymentReplica(Base):
    """One replica slot of a deployment; its process is a job (``job_id``), replaced by a
    new job each time it is restarted."""

    __tablename__ = "deployment_replicas"
    __table_args__ = (
        UniqueConstraint("deployment_id", "slot"),
        # NULL ports (stopped replicas) never collide.
        UniqueConstraint("node", "port"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    deployment_id: Mapped[str] = mapped_column(
        ForeignKey("deployments.id", ondelete="CASCADE"), index=True
    )
    slot: Mapped[int] = mapped_column(Integer)
    node: Mapped[str] = mapped_column(String(255))
    port: Mapped[int | None] = mapped_column(Integer, default=None)
    job_id: Mapped[str | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="SET NULL"), default=None, index=True
    )
    state: Mapped[ReplicaState] = mapped_column(String(16), default=ReplicaState.STARTING)
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    restart_count: Mapped[int] = mapped_column(Integer, default=0)
    # Exits since the replica was last healthy: drives the backoff and the crash-loop limit.
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_exit: Mapped[str | None] = mapped_column(Text, default=None)
    last_exit_code: Mapped[int | None] = mapped_column(Integer, default=None)
    last_exit_at: Mapped[datetime | None] = mapped_column(default=None)
    restart_at: Mapped[datetime | None] = mapped_column(default=None)
    healthy_since: Mapped[datetime | None] = mapped_column(default=None)
    checked_at: Mapped[datetime | None] = mapped_column(default=None)
    draining_since: Mapped[datetime | None] = mapped_column(default=None)
    # Optimistic locking: two supervisor passes acting on one replica at once (two API
    # processes) cannot both start a process for it; the later flush fails and rolls back.
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012 - SQLAlchemy's hook


class DeploymentKey(TimestampMixin, Base):
    """A key that calls one deployment's endpoint and nothing else."""

    __tablename__ = "deployment_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    deployment_id: Mapped[str] = mapped_column(
        ForeignKey("deployments.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16))
    secret_digest: Mapped[str] = mapped_column(String(64), unique=True)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class DeploymentRequestCount(Base):
    """Requests an endpoint took in one wall-clock second, summed over API processes (each
    adds its own counts about once a second); ``requests_per_second`` is read from these."""

    __tablename__ = "deployment_request_counts"

    deployment_id: Mapped[str] = mapped_column(
        ForeignKey("deployments.id", ondelete="CASCADE"), primary_key=True
    )
    second: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    count: Mapped[int] = mapped_column(BigInteger)
