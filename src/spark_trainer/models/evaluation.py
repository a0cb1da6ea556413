from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from spark_trainer.kit.benchmarks import Benchmark
from spark_trainer.models.base import Base, TimestampMixin


class Evaluation(TimestampMixin, Base):
    """One benchmark run of one model version, executed by one job.

    ``status`` follows the job's until the result collector records the outcome; only
    then is it ``completed`` (with ``results``) or the job's failure.
    """

    __tablename__ = "evaluations"
    __table_args__ = (
        Index("ix_evaluations_owner_created", "owner_id", "created_at"),
        # The leaderboard's partition: best completed result per model and benchmark.
        Index("ix_evaluations_board", "status", "benchmark", "model_id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    model_id: Mapped[str] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), index=True
    )
    benchmark: Mapped[Benchmark] = mapped_column(String(16))
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    job_id: Mapped[str | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="SET NULL"), default=None, index=True
    )
    status: Mapped[str] = mapped_column(String(16), default="pending")
    status_reason: Mapped[str | None] = mapped_column(Text, default=None)
    results: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    # The benchmark's primary score, copied out of ``results`` so the leaderboard can
    # rank in SQL: MMLU accuracy, COCO AP (CIDEr for captions), safety refusal rate.
    score: Mapped[float | None] = mapped_column(Float, default=None)
    score_name: Mapped[str | None] = mapped_column(String(32), default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
