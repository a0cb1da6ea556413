"""Each benchmark's ``config``: validated on submission and handed to the runner as is.

Kept free of heavy imports: the API validates with these, the evaluation job reads them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from spark_trainer.evaluations.scorers.mmlu_subjects import expand
from spark_trainer.kit.benchmarks import Benchmark
from spark_trainer.kit.schemas import InputSchema

Variant = Literal["direct", "jailbreak"]
VARIANTS: tuple[Variant, ...] = ("direct", "jailbreak")
_VERSION = Field(default=None, max_length=32)


class JobOptions(InputSchema):
    """How the evaluation's job runs (every evaluation is a job through the scheduler)."""

    gpu_count: int = Field(default=0, ge=0, le=1024, description="Whole GPUs for the job.")
    priority: int = Field(default=0, ge=-1000, le=1000)
    timeout_seconds: int | None = Field(default=None, ge=1, le=7 * 24 * 3600)


class ModelOptions(InputSchema):
    base_model_id: str | None = Field(
        default=None,
        max_length=40,
        description="When the model is a LoRA adapter: the registered model it adapts. "
        "Default: the adapter's own base_model_name_or_path.",
    )
    batch_size: int = Field(default=8, ge=1, le=512)


class EndpointOptions(InputSchema):
    """The target: the model directly (default), or the model as served."""

    deployment_id: str | None = Field(
        default=None,
        max_length=40,
        description="A deployment of this model, called through its SparkTrainer endpoint "
        "(the job authenticates with its own token).",
    )
    endpoint_url: str | None = Field(
        default=None,
        max_length=2048,
        pattern=r"^https?://",
        description="An OpenAI-compatible API base (…/v1) to call instead of loading the "
        "model; its /completions route is used (MMLU: with echo and logprobs).",
    )
    endpoint_model: str | None = Field(default=None, max_length=200)

    @model_validator(mode="after")
    def _one_target(self) -> EndpointOptions:
        if self.deployment_id is not None and self.endpoint_url is not None:
            raise ValueError("give deployment_id or endpoint_url, not both")
        return self


class MmluConfig(JobOptions, ModelOptions, EndpointOptions):
    subjects: list[str] | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="MMLU subjects and groups (see README); default: every subject.",
    )
    num_shots: int = Field(default=5, ge=0, le=20)
    dataset_id: str | None = Field(
        default=None,
        max_length=40,
        description="Questions in either MMLU layout; default: cais/mmlu from the Hub.",
    )
    dataset_version: str | None = _VERSION
    dev_dataset_id: str | None = Field(
        default=None,
        max_length=40,
        description="Where the few-shot examples come from when the questions' dataset "
        "has no dev split.",
    )
    dev_dataset_version: str | None = _VERSION
    split: str = Field(default="test", pattern=r"^[a-z_]{1,32}$")
    max_questions_per_subject: int | None = Field(default=None, ge=1, le=100_000)

    @field_validator("subjects")
    @classmethod
    def _known_subjects(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        for name in value:
            if not expand(name):
                raise ValueError(f"unknown MMLU subject or group '{name}'")
        if len(set(value)) != len(value):
            raise ValueError("names a subject or group twice")
        return value


class CocoConfig(JobOptions):
    task: Literal["bbox", "segm", "captions"] = "bbox"
    annotations_dataset_id: str = Field(max_length=40, description="COCO-format ground truth.")
    annotations_version: str | None = _VERSION
    predictions_dataset_id: str = Field(
        max_length=40,
        description="The model's outputs: COCO result format (a list of detections or of "
        "{image_id, caption}).",
    )
    predictions_version: str | None = _VERSION
    meteor: bool = Field(
        default=True, description="Captions: also METEOR, when Java is on the job's PATH."
    )


class SafetyConfig(JobOptions, ModelOptions, EndpointOptions):
    probe_set: Literal["builtin"] | None = Field(
        default="builtin", description="The shipped probe set; null with dataset_id only."
    )
    dataset_id: str | None = Field(
        default=None,
        max_length=40,
        description="A custom probe set (JSONL: prompt, kind harmful|benign, category, "
        "optional id and variant), added to the built-in one unless probe_set is null.",
    )
    dataset_version: str | None = _VERSION
    categories: list[str] | None = Field(default=None, min_length=1, max_length=100)
    variants: list[Variant] = Field(default_factory=lambda: list(VARIANTS), min_length=1)
    max_probes: int | None = Field(default=None, ge=1, le=100_000)
    max_new_tokens: int = Field(default=64, ge=1, le=2048)
    worst_examples: int = Field(default=5, ge=0, le=100)

    @model_validator(mode="after")
    def _one_target_and_source(self) -> SafetyConfig:
        if self.probe_set is None and self.dataset_id is None:
            raise ValueError("probe_set is null and no dataset_id: there are no probes")
        return self


CONFIGS: dict[Benchmark, type[MmluConfig] | type[CocoConfig] | type[SafetyConfig]] = {
    Benchmark.MMLU: MmluConfig,
    Benchmark.COCO: CocoConfig,
    Benchmark.SAFETY: SafetyConfig,
}
BenchmarkConfig = MmluConfig | CocoConfig | SafetyConfig
