from __future__ import annotations

from pydantic import Field

from spark_trainer.kit.schemas import InputSchema, Schema, UTCDatetime

TAG_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$"


class TagRequest(InputSchema):
    tag: str = Field(pattern=TAG_PATTERN, description="e.g. production, staging, best")


class RegisterFromJob(InputSchema):
    job_id: str = Field(max_length=40)
    name: str | None = Field(
        default=None, pattern=NAME_PATTERN, description="Default: the job's model name."
    )
    description: str | None = Field(default=None, max_length=10_000)


class ModelFileRead(Schema):
    path: str
    size: int
    hash: str = Field(description="md5 of the file's bytes")


class JobRef(Schema):
    id: str
    name: str
    status: str


class ExperimentRef(Schema):
    id: str
    name: str


class DatasetVersionRef(Schema):
    dataset_id: str
    name: str
    version: str
    hash: str


class Lineage(Schema):
    job: JobRef | None
    experiment: ExperimentRef | None
    dataset: DatasetVersionRef | None


class ModelRead(Schema):
    id: str
    name: str
    version: int
    description: str | None
    owner_id: str
    tags: list[str]
    source_job_id: str | None
    experiment_id: str | None
    dataset_version_id: str | None
    metrics: dict[str, float] = Field(description="The source run's final metric values.")
    total_size: int
    file_count: int
    created_at: UTCDatetime


class EvaluationRef(Schema):
    id: str
    benchmark: str
    status: str = Field(description="completed once results are recorded; see the evaluation.")
    score_name: str | None = Field(description="accuracy, AP, CIDEr or refusal_rate")
    score: float | None = Field(description="The headline score of a completed evaluation.")
    created_at: UTCDatetime
    finished_at: UTCDatetime | None


class ModelDetail(ModelRead):
    files: list[ModelFileRead]
    lineage: Lineage
    evaluations: list[EvaluationRef] = Field(
        description="The model's evaluations, newest first (at most 50), with headline scores."
    )
