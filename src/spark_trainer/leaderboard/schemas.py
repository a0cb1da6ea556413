from __future__ import annotations

from pydantic import Field

from spark_trainer.kit.schemas import Schema, UTCDatetime
from spark_trainer.models import Benchmark

# The CSV's header, in this order: the same columns as a JSON row.
COLUMNS = (
    "rank",
    "model_id",
    "model_name",
    "model_version",
    "benchmark",
    "metric",
    "score",
    "evaluation_id",
    "evaluated_at",
)


class LeaderboardRow(Schema):
    rank: int = Field(description="Position in the requested order, from 1.")
    model_id: str
    model_name: str
    model_version: int
    benchmark: Benchmark
    metric: str = Field(description="accuracy (MMLU), AP or CIDEr (COCO), refusal_rate.")
    score: float
    evaluation_id: str = Field(description="The evaluation that gave the best score.")
    evaluated_at: UTCDatetime


class Leaderboard(Schema):
    items: list[LeaderboardRow]
    total: int
