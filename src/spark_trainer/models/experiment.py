from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from spark_trainer.kit.time import utcnow
from spark_trainer.models.base import Base, TimestampMixin


class Experiment(TimestampMixin, Base):
    """A named group of runs (jobs) to compare."""

    __tablename__ = "experiments"
    __table_args__ = (UniqueConstraint("owner_id", "name"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text, default=None)
    tags: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    # metric name → "minimize" | "maximize": which value of a metric is a run's best.
    metric_goals: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class MetricSummary(Base):
    """Per job and metric: the latest, smallest and largest value, kept up to date as
    points are stored, so comparing runs never scans their history."""

    __tablename__ = "metric_summaries"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    latest: Mapped[float]
    latest_step: Mapped[int] = mapped_column(BigInteger)
    latest_seq: Mapped[int] = mapped_column(BigInteger)
    min: Mapped[float]
    max: Mapped[float]
    count: Mapped[int] = mapped_column(BigInteger)
