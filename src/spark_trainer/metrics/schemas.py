"""The API's shape of a stored metric series, shared by job and experiment endpoints."""

from __future__ import annotations

from pydantic import Field

from spark_trainer.kit.schemas import Schema


class MetricSeries(Schema):
    name: str
    count: int = Field(description="Points stored in the requested range.")
    downsampled: bool
    steps: list[int]
    values: list[float]
    wall_times: list[float]
