from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, BigInteger, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

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


class Job(TimestampMixin, Base):
    __tablename__ = "jobs"
    __table_args__ = (
        # The scheduler's queue order, and the "N jobs ahead" count.
        Index("ix_jobs_queue", "status", "priority", "created_at"),
        Index("ix_jobs_owner_created", "owner_id", "created_at"),
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
        ForeignKey("experiments.id", ondelete="SET NULL"), default=None, index=True
    )
    dataset_version_id: Mapped[str | None] = mapped_column(
        ForeignKey("dataset_versions.id", ondelete="SET NULL"), default=None
    )
    # The name the job's output is registered under when it completes; default: its name.
    model_name: Mapped[str | None] = mapped_column(String(200), default=None)

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
    pid: Mapped[int | None] = mapped_column(Integer, default=None)
    # With the pid, tells a live process from an unrelated one that reused its pid.
    process_started_at: Mapped[float | None] = mapped_column(Float, default=None)
    ingest_token_digest: Mapped[str | None] = mapped_column(String(64), default=None)

    # Metrics bookkeeping, committed with the points themselves so ingestion resumes
    # exactly where it stopped after a restart.
    metrics_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    metrics_offset: Mapped[int] = mapped_column(BigInteger, default=0)


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
    __table_args__ = (Index("ix_metric_points_series", "job_id", "name", "step", "value"),)

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    step: Mapped[int] = mapped_column(BigInteger)
    value: Mapped[float] = mapped_column(Float)
    wall_time: Mapped[float] = mapped_column(Float)
