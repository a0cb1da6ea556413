"""The recipe's YAML configuration, checked as a whole before anything heavy is loaded.

Every key is declared here with its default; an unknown key is an error (a typo must not
silently fall back to a default), and every message names the key by its dotted path.

Plain dataclasses checked by hand rather than pydantic: the recipe runs on GPU machines
that have the training stack (torch, transformers, peft, PyYAML) but not SparkTrainer's
server dependencies.
"""

from __future__ import annotations

import dataclasses
import re
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from spark_trainer.recipes.text_lora.errors import RecipeError

DEFAULT_PROMPT_TEMPLATE = (
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n{output}"
)
DEFAULT_PROMPT_TEMPLATE_NO_INPUT = "### Instruction:\n{instruction}\n\n### Response:\n{output}"
DATASET_ID = re.compile(r"^ds-[0-9a-f]{16}$")

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


def _bounds(
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    min_length: int | None = None,
    pattern: re.Pattern[str] | None = None,
) -> dict[str, Any]:
    return {
        k: v
        for k, v in {
            "ge": ge,
            "gt": gt,
            "le": le,
            "lt": lt,
            "min_length": min_length,
            "pattern": pattern,
        }.items()
        if v is not None
    }


@dataclass(frozen=True, slots=True)
class DatasetConfig:
    path: str | None = None
    """A JSONL/JSON/text file, relative to the working directory."""
    id: str | None = field(default=None, metadata=_bounds(pattern=DATASET_ID))
    """A registered dataset (``ds-…``), fetched through the API with the job's token."""
    version: str = "latest"
    """The registered dataset's version (``v1.0.0``, … or ``latest``)."""
    format: Format = "auto"
    text_field: str = "text"
    messages_field: str = "messages"
    prompt_template: str = DEFAULT_PROMPT_TEMPLATE
    prompt_template_no_input: str = DEFAULT_PROMPT_TEMPLATE_NO_INPUT

    def check(self) -> None:
        if self.path and self.id:
            raise ValueError("give path or id, not both")


@dataclass(frozen=True, slots=True)
class LoraConfig:
    r: int = field(default=8, metadata=_bounds(ge=1, le=4096))
    alpha: int = field(default=16, metadata=_bounds(ge=1))
    dropout: float = field(default=0.05, metadata=_bounds(ge=0, lt=1))
    target_modules: list[str] | Literal["auto"] = "auto"
    bias: Literal["none", "all", "lora_only"] = "none"

    def check(self) -> None:
        return


@dataclass(frozen=True, slots=True)
class TrainingConfig:
    epochs: float = field(default=1.0, metadata=_bounds(gt=0))
    max_steps: int | None = field(default=None, metadata=_bounds(ge=1))
    """Overrides epochs."""
    batch_size: int = field(default=8, metadata=_bounds(ge=1))
    gradient_accumulation_steps: int = field(default=1, metadata=_bounds(ge=1))
    learning_rate: float = field(default=2e-4, metadata=_bounds(gt=0))
    lr_scheduler: Scheduler = "cosine"
    warmup_steps: int = field(default=0, metadata=_bounds(ge=0))
    warmup_ratio: float = field(default=0.0, metadata=_bounds(ge=0, lt=1))
    weight_decay: float = field(default=0.0, metadata=_bounds(ge=0))
    max_grad_norm: float = field(default=1.0, metadata=_bounds(gt=0))
    seed: int = 42
    precision: Precision = "auto"
    eval_split: float = field(default=0.0, metadata=_bounds(ge=0, lt=1))
    eval_steps: int | None = field(default=None, metadata=_bounds(ge=1))
    """Default: checkpoint_steps."""
    checkpoint_steps: int = field(default=100, metadata=_bounds(ge=1))
    checkpoint_limit: int = field(default=2, metadata=_bounds(ge=1))
    logging_steps: int = field(default=1, metadata=_bounds(ge=1))
    max_seq_length: int = field(default=512, metadata=_bounds(ge=8))
    packing: bool = False
    gradient_checkpointing: bool = False

    def check(self) -> None:
        if self.warmup_steps and self.warmup_ratio:
            raise ValueError("give warmup_steps or warmup_ratio, not both")


@dataclass(frozen=True, slots=True)
class OutputConfig:
    checkpoint_dir: str = "checkpoints"
    """Relative to the working directory; a re-run resumes from the latest."""
    merge: bool = False
    """Also save the merged model in merged/."""

    def check(self) -> None:
        return


@dataclass(frozen=True, slots=True)
class RecipeConfig:
    base_model: str = field(metadata=_bounds(min_length=1))
    """A local Hugging Face directory, a hub id, or a registered model-… id."""
    revision: str | None = None
    dataset: DatasetConfig = DatasetConfig()
    lora: LoraConfig = LoraConfig()
    training: TrainingConfig = TrainingConfig()
    output: OutputConfig = OutputConfig()

    def check(self) -> None:
        return

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class _Invalid(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def _type_name(kind: Any) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}
    return names.get(kind, getattr(kind, "__name__", str(kind)))


def _coerce(value: Any, kind: Any, key: str) -> Any:
    """``value`` as ``kind`` (a str/int/float/bool, a Literal, a list of str, a section or a
    union of those); raises ValueError with the message for key ``key``."""
    origin = get_origin(kind)
    if origin is Literal:
        if value in get_args(kind):
            return value
        choices = ", ".join(repr(c) for c in get_args(kind))
        raise ValueError(f"must be one of {choices}")
    if origin in (Union, types.UnionType):
        options = get_args(kind)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return _coerce(value, option, key)
            except ValueError as exc:
                errors.append(str(exc))
        raise ValueError(" or ".join(errors))
    if origin is list:
        (item,) = get_args(kind)
        if not isinstance(value, list):
            raise ValueError(f"must be a list of {_type_name(item)}s")
        try:
            return [_coerce(v, item, key) for v in value]
        except ValueError:
            raise ValueError(f"must be a list of {_type_name(item)}s") from None
    if dataclasses.is_dataclass(kind):
        return _section(kind, value, key)
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise ValueError("must be true or false")
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
            return int(value)
        raise ValueError("must be an integer")
    if kind is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            # PyYAML reads 2e-4 (no dot) as a string.
            try:
                return float(value)
            except ValueError:
                pass
        raise ValueError("must be a number")
    if kind is str:
        if isinstance(value, str):
            return value
        raise ValueError("must be a string")
    raise TypeError(f"unsupported config type {kind!r}")  # a programming error, not input


def _check_bounds(value: Any, bounds: dict[str, Any]) -> None:
    if value is None:
        return
    if "ge" in bounds and value < bounds["ge"]:
        raise ValueError(f"must be at least {bounds['ge']}")
    if "gt" in bounds and value <= bounds["gt"]:
        raise ValueError(f"must be greater than {bounds['gt']}")
    if "le" in bounds and value > bounds["le"]:
        raise ValueError(f"must be at most {bounds['le']}")
    if "lt" in bounds and value >= bounds["lt"]:
        raise ValueError(f"must be less than {bounds['lt']}")
    if "min_length" in bounds and len(value) < bounds["min_length"]:
        raise ValueError("must not be empty")
    if "pattern" in bounds and not bounds["pattern"].match(value):
        raise ValueError(f"must match {bounds['pattern'].pattern}")


def _section(kind: Any, data: Any, prefix: str) -> Any:
    """One dataclass section from its mapping, every problem in it collected."""
    if not isinstance(data, dict):
        raise ValueError("must be a mapping of keys")
    hints = get_type_hints(kind)
    declared = {f.name: f for f in dataclasses.fields(kind)}
    problems: list[str] = []
    values: dict[str, Any] = {}
    for key in data:
        if key not in declared:
            problems.append(f"unknown key '{prefix + '.' if prefix else ''}{key}'")
    for name, spec in declared.items():
        dotted = f"{prefix}.{name}" if prefix else name
        if name not in data:
            if spec.default is dataclasses.MISSING:
                problems.append(f"missing required key '{dotted}'")
            continue
        value = data[name]
        try:
            coerced = _coerce(value, hints[name], dotted)
            _check_bounds(coerced, dict(spec.metadata))
            values[name] = coerced
        except _Invalid as nested:
            problems.extend(nested.problems)
        except ValueError as exc:
            problems.append(f"key '{dotted}': {exc} (got {value!r})")
    if problems:
        raise _Invalid(problems)
    built = kind(**values)
    try:
        built.check()
    except ValueError as exc:
        raise _Invalid([f"key '{prefix or '(top level)'}': {exc}"]) from None
    return built


def parse_config(text: str, source: str) -> RecipeConfig:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RecipeError(f"{source}: not valid YAML: {exc}".replace("\n", " ")) from None
    if not isinstance(data, dict):
        raise RecipeError(f"{source}: must be a YAML mapping of keys (base_model, dataset, …)")
    try:
        config: RecipeConfig = _section(RecipeConfig, data, "")
    except _Invalid as exc:
        raise RecipeError(f"{source}: {'; '.join(exc.problems)}") from None
    return config


def load_config(path: Path) -> RecipeConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError(f"config file '{path}' not found (in {Path.cwd()})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"config file '{path}' cannot be read: {exc}") from None
    return parse_config(text, str(path))
