"""Hyperparameter studies. Optuna's own tables live apart (see ``studies.storage``); these
hold what SparkTrainer adds: the trial template, each trial's job and its outcome."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from spark_trainer.models.base import Base, TimestampMixin


class StudyStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE_STUDY_STATUSES = (StudyStatus.PENDING, StudyStatus.RUNNING)


class TrialState(StrEnum):
    """Optuna's names for a trial's state, as told to Optuna."""

    RUNNING = "RUNNING"
    COMPLETE = "COMPLETE"
    PRUNED = "PRUNED"
    FAIL = "FAIL"


class Study(TimestampMixin, Base):
    __tablename__ = "hpo_studies"
    __table_args__ = (
        Index("ix_hpo_studies_owner_created", "owner_id", "created_at"),
        Index("ix_hpo_studies_status", "status"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    objective: Mapped[str] = mapped_column(String(16))
    search_space: Mapped[dict[str, Any]] = mapped_column(JSON)
    n_trials: Mapped[int] = mapped_column(Integer)
    parallelism: Mapped[int] = mapped_column(Integer)
    # The trial job's template: the command with @@name@@ placeholders and job settings.
    command: Mapped[str] = mapped_column(Text)
    metric: Mapped[str] = mapped_column(String(128))
    metric_value: Mapped[str] = mapped_column(String(8))
    gpu_count: Mapped[int] = mapped_column(Integer)
    environment: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    timeout_seconds: Mapped[int | None] = mapped_column(Integer, default=None)
    experiment_id: Mapped[str | None] = mapped_column(
        ForeignKey("experiments.id", ondelete="SET NULL"), default=None
    )
    dataset_id: Mapped[str | None] = mapped_column(String(40), default=None)
    # Pinned at creation, so every trial reads the same data.
    dataset_version: Mapped[str | None] = mapped_column(String(32), default=None)
    sampler: Mapped[str] = mapped_column(String(16))
    seed: Mapped[int | None] = mapped_column(BigInteger, default=None)
    pruner: Mapped[str] = mapped_column(String(16))
    pruner_startup_trials: Mapped[int] = mapped_column(Integer)
    pruner_warmup_steps: Mapped[int] = mapped_column(Integer)

    status: Mapped[StudyStatus] = mapped_column(String(16), default=StudyStatus.PENDING)
    status_reason: Mapped[str | None] = mapped_column(Text, default=None)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    # Optuna's evaluator, recomputed by the controller as trials complete.
    parameter_importance: Mapped[dict[str, float] | None] = mapped_column(JSON, default=None)


class StudyTrial(Base):
    """Links an Optuna trial to the job that runs it."""

    __tablename__ = "hpo_trials"

    study_id: Mapped[str] = mapped_column(
        ForeignKey("hpo_studies.id", ondelete="CASCADE"), primary_key=True
    )
    number: Mapped[int] = mapped_column(Integer, primary_key=True)
    optuna_trial_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[TrialState] = mapped_column(String(16), default=TrialState.RUNNING)
    value: Mapped[float | None] = mapped_column(Float, default=None)
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    # The last step whose value was handed to the pruner.
    reported_step: Mapped[int] = mapped_column(BigInteger, default=-1)
    # Whether Optuna has been told this trial's final state: the outcome is recorded here
    # first (by any process), and the controller on the scheduling leader tells Optuna.
    optuna_told: Mapped[bool] = mapped_column(Boolean, default=False)
