"""The recipe's YAML configuration, checked as a whole before anything heavy is loaded.

Every key is declared here with its default; an unknown key is an error (a typo must not
silently fall back to a default), and every message names the key by its dotted path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from spark_trainer.recipes.text_lora.errors import RecipeError

DEFAULT_PROMPT_TEMPLATE = (
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n{output}"
)
DEFAULT_PROMPT_TEMPLATE_NO_INPUT = "### Instruction:\n{instruction}\n\n### Response:\n{output}"

Format = Literal["auto", "text", "instruction", "chat"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]
Scheduler = Literal[
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False, frozen=True)


class DatasetConfig(_Section):
    path: str | None = Field(
        default=None,
        description="A JSONL/JSON/text file; relative to the working directory. Default: the "
        "job's SPARKTRAINER_DATASET_PATH (submit the job with dataset_id).",
    )
    format: Format = "auto"
    text_field: str = "text"
    messages_field: str = "messages"
    prompt_template: str = DEFAULT_PROMPT_TEMPLATE
    prompt_template_no_input: str = DEFAULT_PROMPT_TEMPLATE_NO_INPUT


class LoraConfig(_Section):
    r: int = Field(default=8, ge=1, le=4096)
    alpha: int = Field(default=16, ge=1)
    dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: list[str] | Literal["auto"] = "auto"
    bias: Literal["none", "all", "lora_only"] = "none"


class TrainingConfig(_Section):
    epochs: float = Field(default=1.0, gt=0)
    max_steps: int | None = Field(default=None, ge=1, description="Overrides epochs.")
    batch_size: int = Field(default=8, ge=1)
    gradient_accumulation_steps: int = Field(default=1, ge=1)
    learning_rate: float = Field(default=2e-4, gt=0)
    lr_scheduler: Scheduler = "cosine"
    warmup_steps: int = Field(default=0, ge=0)
    warmup_ratio: float = Field(default=0.0, ge=0, lt=1)
    weight_decay: float = Field(default=0.0, ge=0)
    max_grad_norm: float = Field(default=1.0, gt=0)
    seed: int = 42
    precision: Precision = "auto"
    eval_split: float = Field(default=0.0, ge=0, lt=1)
    eval_steps: int | None = Field(default=None, ge=1, description="Default: checkpoint_steps.")
    checkpoint_steps: int = Field(default=100, ge=1)
    checkpoint_limit: int = Field(default=2, ge=1)
    logging_steps: int = Field(default=1, ge=1)
    max_seq_length: int = Field(default=512, ge=8)
    packing: bool = False
    gradient_checkpointing: bool = False

    @model_validator(mode="after")
    def _one_warmup(self) -> TrainingConfig:
        if self.warmup_steps and self.warmup_ratio:
            raise ValueError("give warmup_steps or warmup_ratio, not both")
        return self


class OutputConfig(_Section):
    checkpoint_dir: str = Field(
        default="checkpoints",
        description="Relative to the working directory; a re-run resumes from the latest.",
    )
    merge: bool = Field(default=False, description="Also save the merged model in merged/.")


class RecipeConfig(_Section):
    base_model: str = Field(
        min_length=1,
        description="A local Hugging Face directory, a hub id, or a registered model-… id.",
    )
    revision: str | None = None
    dataset: DatasetConfig = DatasetConfig()
    lora: LoraConfig = LoraConfig()
    training: TrainingConfig = TrainingConfig()
    output: OutputConfig = OutputConfig()


def _describe(error: Any) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "(top level)"
    kind = error["type"]
    if kind == "missing":
        return f"missing required key '{key}'"
    if kind == "extra_forbidden":
        return f"unknown key '{key}'"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"key '{key}': {message} (got {error['input']!r})"


def parse_config(text: str, source: str) -> RecipeConfig:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RecipeError(f"{source}: not valid YAML: {exc}".replace("\n", " ")) from None
    if not isinstance(data, dict):
        raise RecipeError(f"{source}: must be a YAML mapping of keys (base_model, dataset, …)")
    try:
        return RecipeConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(_describe(e) for e in exc.errors())
        raise RecipeError(f"{source}: {problems}") from None


def load_config(path: Path) -> RecipeConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError(f"config file '{path}' not found (in {Path.cwd()})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"config file '{path}' cannot be read: {exc}") from None
    return parse_config(text, str(path))
