from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ColumnElement,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UnaryExpression,
    and_,
    or_,
)
from sqlalchemy.orm import InstrumentedAttribute, Mapped, mapped_column

from spark_trainer.models.base import Base, TimestampMixin


class JobStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})


class JobKind(StrEnum):
    """What a job is for; the domain that submitted it reads its end events by kind."""

    TRAINING = "training"
    TRIAL = "trial"
    REPLICA = "replica"
    EVALUATION = "evaluation"


class Job(TimestampMixin, Base):
    __tablename__ = "jobs"
    __table_args__ = (
        # The scheduler's queue order, and the "N jobs ahead" count.
        Index("ix_jobs_queue", "status", "priority", "created_at"),
        Index("ix_jobs_owner_created", "owner_id", "created_at"),
        # The admin's job list and an experiment's runs, newest first: read in index
        # order instead of sorting every matching row for each page.
        Index("ix_jobs_created", "created_at", "id"),
        Index("ix_jobs_experiment_created", "experiment_id", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    command: Mapped[str] = mapped_column(Text)
    gpu_count: Mapped[int] = mapped_column(Integer)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    environment: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    working_dir: Mapped[str | None] = mapped_column(Text, default=None)
    timeout_seconds: Mapped[int | None] = mapped_column(Integer, default=None)
    experiment_id: Mapped[str | None] = mapped_column(
        ForeignKey("experiments.id", ondelete="SET NULL"), default=None
    )
    dataset_version_id: Mapped[str | None] = mapped_column(
        ForeignKey("dataset_versions.id", ondelete="SET NULL"), default=None
    )
    # The name the job's output is registered under when it completes; default: its name.
    model_name: Mapped[str | None] = mapped_column(String(200), default=None)
    kind: Mapped[str] = mapped_column(String(32), default=JobKind.TRAINING)
    # The study, deployment or evaluation the job belongs to (no foreign key: any of them).
    parent_id: Mapped[str | None] = mapped_column(String(40), default=None, index=True)
    params: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)

    status: Mapped[JobStatus] = mapped_column(String(16), default=JobStatus.PENDING)
    status_reason: Mapped[str | None] = mapped_column(Text, default=None)
    pending_reason: Mapped[str | None] = mapped_column(Text, default=None)
    exit_code: Mapped[int | None] = mapped_column(Integer, default=None)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    cancel_requested_at: Mapped[datetime | None] = mapped_column(default=None)

    node: Mapped[str | None] = mapped_column(String(255), default=None)
    gpus: Mapped[list[int]] = mapped_column(JSON, default=list)
    job_dir: Mapped[str | None] = mapped_column(Text, default=None)
    ingest_token_digest: Mapped[str | None] = mapped_column(String(64), default=None)
    # What the executor needs to find the job's process again (local: pid and start time).
    # SQL NULL for None (not JSON null): the engine finds unlaunched jobs by `handle IS NULL`.
    handle: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), default=None)
    # Requeues after the job's node was lost (opt-in), and how many happened so far.
    max_retries: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    restarts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The handle of an attempt lost with its node, plus that node's name ("node"): the node
    # stops the process when it comes back, whatever the job has become since.
    lost_handle: Mapped[dict[str, Any] | None] = mapped_column(
        JSON(none_as_null=True), default=None
    )
    # Submission to the first attempt's process started (the /metrics histogram).
    dispatch_seconds: Mapped[float | None] = mapped_column(Float, default=None)

    # Metrics bookkeeping, committed with the points themselves so ingestion resumes
    # exactly where it stopped after a restart.
    metrics_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    metrics_offset: Mapped[int] = mapped_column(BigInteger, default=0)
    # The highest sequence number any writer has reserved (see metrics.pipeline).
    metrics_seq_reserved: Mapped[int] = mapped_column(BigInteger, default=0)


class JobEvent(Base):
    """One recorded status transition."""

    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime]


class MetricPoint(Base):
    """One metric value. A logged point such as {"step": 3, "loss": .4, "lr": 1e-4} becomes
    one row per name sharing a ``seq``, the event id its stream message carries."""

    __tablename__ = "metric_points"
    # The natural key: a point sent again (a retried POST) is the same step and value, and
    # is stored once; a different value at a step already logged is a new point.
    __table_args__ = (
        Index("ix_metric_points_series", "job_id", "name", "step", "value", unique=True),
    )

    # On PostgreSQL, statement-level triggers enforce this key instead (migration 0024).
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    step: Mapped[int] = mapped_column(BigInteger)
    value: Mapped[float] = mapped_column(Float)
    wall_time: Mapped[float] = mapped_column(Float)


class GpuAllocation(Base):
    """One GPU held by one running job. The primary key is the GPU, so the database itself
    refuses a second holder, whichever process places the job."""

    __tablename__ = "gpu_allocations"

    node: Mapped[str] = mapped_column(String(255), primary_key=True)
    gpu_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    allocated_at: Mapped[datetime]


class JobOutbox(Base):
    """A job's end, written in the same transaction as its final status (an outbox), and
    delivered to every registered handler at least once."""

    __tablename__ = "job_outbox"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    parent_id: Mapped[str | None] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(16))
    exit_code: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]


class JobOutboxDelivery(Base):
    """Where one handler stands with one outbox event."""

    __tablename__ = "job_outbox_deliveries"

    event_id: Mapped[int] = mapped_column(
        ForeignKey("job_outbox.id", ondelete="CASCADE"), primary_key=True
    )
    handler: Mapped[str] = mapped_column(String(100), primary_key=True)
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=None)


# The queue order, written once: higher priority first, then earlier submission (FIFO),
# then id. The scheduler reads the queue in it and a pending job counts the jobs ahead by
# it; ``scheduler.policy`` takes the queue already in this order. (column, descending)
QUEUE_ORDER: tuple[tuple[str, bool], ...] = (
    ("priority", True),
    ("created_at", False),
    ("id", False),
)


def queue_order_by() -> list[UnaryExpression[Any] | InstrumentedAttribute[Any]]:
    """``ORDER BY`` terms for :data:`QUEUE_ORDER`."""
    terms: list[UnaryExpression[Any] | InstrumentedAttribute[Any]] = []
    for name, descending in QUEUE_ORDER:
        column: InstrumentedAttribute[Any] = getattr(Job, name)
        terms.append(column.desc() if descending else column)
    return terms


def ahead_in_queue(job: Job | Mapping[str, Any]) -> ColumnElement[bool]:
    """Jobs before ``job`` in :data:`QUEUE_ORDER` (a lexicographic comparison); ``job`` is
    a row or a read path's dict of its fields."""
    before: list[ColumnElement[bool]] = []
    tied: list[ColumnElement[bool]] = []
    for name, descending in QUEUE_ORDER:
        column: InstrumentedAttribute[Any] = getattr(Job, name)
        value = job[name] if isinstance(job, Mapping) else getattr(job, name)
        before.append(and_(*tied, column > value if descending else column < value))
        tied.append(column == value)
    return or_(*before)
