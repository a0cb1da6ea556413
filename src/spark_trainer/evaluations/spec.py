"""What an evaluation job is told: the validated config and where its inputs lie.

The service resolves every id (model, datasets) to files in the artifact store while the
request is checked for ownership; the job then reads only paths, never the database.
"""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import BaseModel, Field

from spark_trainer.kit.benchmarks import Benchmark

RESULTS_FILE = "results.json"
PREDICTIONS_FILE = "predictions.jsonl"


class StoredFile(BaseModel):
    path: str = Field(description="Absolute path of the blob.")
    filename: str | None = None
    format: str | None = None


class ModelFiles(BaseModel):
    files: dict[str, str] = Field(description="Relative path in the model → blob path.")

    def materialize(self, directory: Path) -> Path:
        """Lays the model out as the directory ``from_pretrained`` expects, with links to
        the read-only blobs (no copy)."""
        for relative, blob in self.files.items():
            parts = PurePosixPath(relative).parts
            # Registered paths are normalised already; a path leaving the directory is
            # refused rather than trusted.
            if not parts or PurePosixPath(relative).is_absolute() or ".." in parts:
                raise ValueError(f"model file path '{relative}' is not a relative path")
            target = directory.joinpath(*parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_symlink() or target.exists():
                target.unlink()
            target.symlink_to(blob)
        return directory


class RunSpec(BaseModel):
    evaluation_id: str
    benchmark: Benchmark
    config: dict[str, Any]
    model: ModelFiles | None = None
    base_model: ModelFiles | None = None
    datasets: dict[str, StoredFile] = Field(default_factory=dict)
    endpoint_url: str | None = None
    endpoint_job_token: bool = Field(
        default=False,
        description="Send the job's SPARKTRAINER_JOB_TOKEN to the endpoint (a deployment's).",
    )

    def to_argument(self) -> str:
        return json.dumps(self.model_dump(mode="json"), separators=(",", ":"))


def output_dir() -> Path:
    """The job's output directory, or the working directory outside SparkTrainer."""
    return Path(os.environ.get("SPARKTRAINER_OUTPUT_DIR", "."))
