from __future__ import annotations

from typing import Any

from pydantic import Field

from spark_trainer.kit.schemas import InputSchema, Schema, UTCDatetime
from spark_trainer.models import Benchmark


class EvaluationCreate(InputSchema):
    model_id: str = Field(max_length=40)
    benchmark: Benchmark
    config: dict[str, Any] = Field(
        default_factory=dict, description="The benchmark's options (see the README)."
    )


class EvaluationRead(Schema):
    id: str
    model_id: str
    benchmark: Benchmark
    status: str = Field(
        description="pending, running, completed, failed or cancelled, like a job's; "
        "completed once the results are recorded."
    )
    results: dict[str, Any] | None
    config: dict[str, Any]
    score: float | None = Field(
        description="The primary score: MMLU overall accuracy, COCO AP (CIDEr for "
        "captions), safety refusal rate on harmful probes."
    )
    score_name: str | None
    job_id: str | None
    status_reason: str | None
    questions_done: int | None = Field(description="Progress reported by the job.")
    questions_total: int | None
    owner_id: str
    created_at: UTCDatetime
    finished_at: UTCDatetime | None
