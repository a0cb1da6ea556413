from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from spark_trainer.kit.schemas import InputSchema, Schema, UTCDatetime
from spark_trainer.metrics.schemas import MetricSeries
from spark_trainer.models import JobStatus

Goal = Literal["minimize", "maximize"]
MAX_TAGS = 64


def _check_tags(tags: dict[str, str]) -> dict[str, str]:
    if len(tags) > MAX_TAGS:
        raise ValueError(f"at most {MAX_TAGS} tags")
    for key, value in tags.items():
        if not key or len(key) > 128 or len(value) > 512:
            raise ValueError("tag keys are 1-128 characters, values at most 512")
    return tags


class ExperimentCreate(InputSchema):
    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=10_000)
    tags: dict[str, str] = Field(default_factory=dict)
    metric_goals: dict[str, Goal] = Field(
        default_factory=dict,
        description='Which value of a metric is a run\'s best, e.g. {"accuracy": '
        '"maximize"}. Metrics not named here are minimized.',
    )

    _tags = field_validator("tags")(_check_tags)


class ExperimentRead(Schema):
    id: str
    name: str
    description: str | None
    tags: dict[str, str]
    metric_goals: dict[str, Goal]
    owner_id: str
    created_at: UTCDatetime
    updated_at: UTCDatetime


class ExperimentDetail(ExperimentRead):
    run_count: int
    runs_by_status: dict[str, int]


class MetricSummaryRead(Schema):
    latest: float
    latest_step: int
    best: float = Field(description="The minimum or maximum, as the experiment's goal says.")
    min: float
    max: float
    count: int


class RunRead(Schema):
    id: str = Field(description="The run's job id.")
    name: str
    status: JobStatus
    params: dict[str, str] = Field(description="The environment the run was submitted with.")
    command: str
    gpu_count: int
    created_at: UTCDatetime
    started_at: UTCDatetime | None
    finished_at: UTCDatetime | None
    duration_seconds: float | None
    exit_code: int | None
    metrics: dict[str, MetricSummaryRead]


class RunSeries(Schema):
    job_id: str
    name: str = Field(description="The run's job name.")
    status: JobStatus
    metrics: list[MetricSeries]


class ExperimentMetrics(Schema):
    experiment_id: str
    runs: list[RunSeries]
