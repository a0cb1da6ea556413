from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from spark_trainer.kit.schemas import InputSchema, Schema, UTCDatetime
from spark_trainer.models import JobStatus, StudyStatus, TrialState

Objective = Literal["minimize", "maximize"]
Choice = str | int | float | bool | None
MAX_PARAMETERS = 64
MAX_CHOICES = 1000


class FloatParam(InputSchema):
    type: Literal["float"]
    low: float
    high: float
    log: bool = Field(default=False, description="Sample on a log scale (low must be > 0).")
    step: float | None = Field(default=None, description="Discretize: low, low+step, ….")


class IntParam(InputSchema):
    type: Literal["int"]
    low: int
    high: int
    step: int = 1
    log: bool = False


class CategoricalParam(InputSchema):
    type: Literal["categorical"]
    choices: list[Choice] = Field(max_length=MAX_CHOICES)


ParamSpec = Annotated[FloatParam | IntParam | CategoricalParam, Field(discriminator="type")]


class StudyCreate(InputSchema):
    name: str = Field(min_length=1, max_length=160)
    objective: Objective = "minimize"
    search_space: dict[str, ParamSpec] = Field(
        description="Parameter name → distribution: float (low, high, log, step), int (low, "
        "high, step, log) or categorical (choices)."
    )
    n_trials: int = Field(ge=1, le=10_000, description="Trials to run in all.")
    parallelism: int = Field(default=1, ge=1, le=256, description="Trials running at once.")
    command: str = Field(
        min_length=1,
        max_length=100_000,
        description="Each trial's command (/bin/sh -c). `@@name@@` is replaced by the trial's "
        "value of parameter `name`, shell-quoted; the trial also gets its parameters as JSON "
        "in SPARKTRAINER_TRIAL_PARAMS and its number in SPARKTRAINER_TRIAL_NUMBER.",
    )
    metric: str = Field(
        default="loss",
        min_length=1,
        max_length=128,
        description="The metric (reported with sparktrainer.log) that is the objective.",
    )
    metric_value: Literal["last", "best"] = Field(
        default="last",
        description="Which reported value counts: the last one, or the best one by objective.",
    )
    gpu_count: int = Field(default=1, ge=0, le=1024, description="GPUs per trial.")
    sampler: Literal["tpe", "random", "grid", "cmaes"] = "tpe"
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1, description="Sampler seed.")
    pruner: Literal["none", "median", "hyperband"] = "none"
    pruner_startup_trials: int = Field(
        default=5, ge=0, le=10_000, description="Median pruner: trials that finish unpruned first."
    )
    pruner_warmup_steps: int = Field(
        default=0, ge=0, description="Median pruner: steps of a trial that are never pruned."
    )
    experiment_id: str | None = Field(
        default=None,
        max_length=40,
        description="Run the trials in this experiment; default: one made for the study.",
    )
    dataset_id: str | None = Field(default=None, max_length=40)
    dataset_version: str | None = Field(
        default=None, max_length=32, description="Default: the latest, pinned at creation."
    )
    environment: dict[str, str] = Field(default_factory=dict)
    timeout_seconds: int | None = Field(
        default=None, ge=1, le=365 * 24 * 3600, description="Per trial."
    )


class TrialRead(Schema):
    number: int
    state: TrialState = Field(description="Optuna's state: RUNNING, COMPLETE, PRUNED or FAIL.")
    params: dict[str, Any]
    value: float | None
    reason: str | None = Field(description="Why a trial failed or was pruned.")
    job_id: str
    job_status: JobStatus
    started_at: UTCDatetime | None
    finished_at: UTCDatetime | None


class StudyRead(Schema):
    id: str
    name: str
    status: StudyStatus
    status_reason: str | None
    objective: Objective
    metric: str
    n_trials: int = Field(description="Trials finished so far (complete, pruned or failed).")
    n_trials_requested: int
    parallelism: int
    best_value: float | None
    best_params: dict[str, Any] | None
    experiment_id: str | None
    optuna_study_name: str = Field(description="The study's name in Optuna's storage.")
    owner_id: str
    created_at: UTCDatetime
    started_at: UTCDatetime | None
    finished_at: UTCDatetime | None


class StudyDetail(StudyRead):
    search_space: dict[str, Any]
    sampler: str
    pruner: str
    trials: list[TrialRead]
    parameter_importance: dict[str, float] | None = Field(
        description="Optuna's fANOVA importance of each parameter, once enough trials completed."
    )
