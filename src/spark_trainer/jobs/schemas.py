from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, field_validator

from spark_trainer.kit.schemas import InputSchema, Schema, UTCDatetime
from spark_trainer.metrics import rules
from spark_trainer.metrics.schemas import MetricSeries
from spark_trainer.models import JobStatus

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_ENV_ENTRIES = 256


class JobCreate(InputSchema):
    name: str = Field(min_length=1, max_length=200)
    command: str = Field(min_length=1, max_length=100_000, description="Run with /bin/sh -c.")
    gpu_count: int = Field(
        default=1, ge=0, le=1024, strict=True, description="Whole GPUs, all on one node."
    )
    priority: int = Field(
        default=0,
        ge=-1000,
        le=1000,
        strict=True,
        description="Higher runs first; FIFO within a priority.",
    )
    environment: dict[str, str] = Field(
        default_factory=dict,
        description="Extra environment variables. CUDA_VISIBLE_DEVICES and SPARKTRAINER_* are "
        "set by the platform from the allocation and cannot be overridden.",
    )
    experiment_id: str | None = Field(
        default=None, max_length=40, description="Make the job a run of this experiment."
    )
    dataset_id: str | None = Field(
        default=None,
        max_length=40,
        description="A dataset to read: its file's path is given to the job, read-only, as "
        "SPARKTRAINER_DATASET_PATH.",
    )
    dataset_version: str | None = Field(
        default=None,
        max_length=32,
        description='Which version of dataset_id ("v1.2.0"); default: the latest, pinned '
        "at submission.",
    )
    model_name: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$",
        description="Register the files the job writes to SPARKTRAINER_OUTPUT_DIR under this "
        "model name when it completes; default: the job's name.",
    )
    timeout_seconds: int | None = Field(
        default=None,
        ge=1,
        le=365 * 24 * 3600,
        strict=True,
        description="Kill and fail the job after this.",
    )
    max_retries: int = Field(
        default=0,
        ge=0,
        le=10,
        strict=True,
        description="How many times to requeue the job (same id, a fresh attempt) when its "
        "node is lost while it runs; 0: it fails as lost.",
    )
    working_dir: str | None = Field(
        default=None,
        max_length=4096,
        description="Absolute directory the command starts in; default: a fresh directory "
        "of the job's own.",
    )

    @field_validator("environment")
    @classmethod
    def _valid_environment(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > MAX_ENV_ENTRIES:
            raise ValueError(f"at most {MAX_ENV_ENTRIES} variables")
        for key, item in value.items():
            if not _ENV_NAME.match(key):
                raise ValueError(f"'{key}' is not a valid variable name")
            if "\x00" in item:
                raise ValueError(f"'{key}' contains a NUL byte")
        return value

    @field_validator("working_dir")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).is_absolute():
            raise ValueError("must be an absolute path")
        return value


class JobEventRead(Schema):
    from_status: JobStatus | None
    to_status: JobStatus
    reason: str | None
    at: UTCDatetime


class JobRead(Schema):
    id: str
    name: str
    status: JobStatus
    gpu_count: int
    created_at: UTCDatetime
    priority: int
    command: str
    environment: dict[str, str]
    experiment_id: str | None
    dataset_version_id: str | None
    model_name: str | None
    timeout_seconds: int | None
    working_dir: str | None
    owner_id: str
    started_at: UTCDatetime | None
    finished_at: UTCDatetime | None
    exit_code: int | None
    status_reason: str | None = Field(
        description="Why the job ended as it did (exit code, signal, timeout, cancel)."
    )
    pending_reason: str | None = Field(description="Why a pending job is still waiting.")
    gpus: list[int] = Field(description="GPU indices allocated to the job on its node.")
    node: str | None
    max_retries: int = Field(description="Requeues allowed after its node is lost.")
    restarts: int = Field(description="Times it was requeued after its node was lost.")


class JobDetail(JobRead):
    events: list[JobEventRead] = Field(description="Every status transition, oldest first.")


MetricName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=rules.MAX_NAME_LENGTH,
        pattern=r"^[^\x00-\x1f\x7f-\x9f]+$",
        description="No control characters; 'step' is reserved.",
    ),
]
FiniteNumber = Annotated[float, Field(strict=True, allow_inf_nan=False)]


class MetricPointIn(InputSchema):
    step: int | None = Field(
        default=None,
        ge=0,
        le=rules.MAX_STEP,
        strict=True,
        description="Default: one more than the job's previous step.",
    )
    metrics: dict[MetricName, FiniteNumber] = Field(min_length=1)
    ts: FiniteNumber | None = Field(default=None, description="Unix time; default: when received.")


def _as_decoded(point: object) -> object:
    return point


class MetricsIngest(BaseModel):
    # Documented as MetricPointIn, validated by the handler (metrics.pipeline.parse_points)
    # with the same rules: as models, 5,000 points cost more to validate than to store, and
    # so did InputSchema's walk over every string of the body (parse_points checks names).
    model_config = ConfigDict(extra="forbid")

    points: list[
        Annotated[MetricPointIn, PlainValidator(_as_decoded, json_schema_input_type=MetricPointIn)]
    ] = Field(min_length=1, max_length=10_000)


class MetricsAccepted(Schema):
    accepted: int
    last_seq: int


class MetricsHistory(Schema):
    job_id: str
    last_seq: int = Field(description="Resume a stream after this event id (`?after=`).")
    metrics: list[MetricSeries]
