"""The search space and the trial command template: checking them, and turning them into
Optuna distributions and concrete commands.

Placeholders are ``@@name@@``: ``@@`` means nothing to POSIX shells and is not valid Python
outside a string, so a template never has to escape its own ``{}``, ``${}`` or ``%``.
"""

from __future__ import annotations

import json
import math
import re
import shlex
from collections.abc import Mapping
from typing import Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from spark_trainer.errors import ValidationFailed
from spark_trainer.studies.schemas import MAX_PARAMETERS, CategoricalParam, FloatParam, IntParam

ParamSpecs = Mapping[str, FloatParam | IntParam | CategoricalParam]

PARAMETER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
PLACEHOLDER = re.compile(r"@@([A-Za-z0-9_.\-]*)@@")
# A grid larger than this is a mistake rather than a search.
MAX_GRID_POINTS = 100_000


def check_search_space(space: ParamSpecs) -> None:
    if not space:
        raise ValidationFailed("search_space must name at least one parameter")
    if len(space) > MAX_PARAMETERS:
        raise ValidationFailed(f"search_space has more than {MAX_PARAMETERS} parameters")
    for name, spec in space.items():
        field = f"search_space.{name}"
        if not PARAMETER_NAME.match(name):
            raise ValidationFailed(
                f"{field}: parameter names are letters, digits and _, not starting with a digit"
            )
        if isinstance(spec, CategoricalParam):
            if not spec.choices:
                raise ValidationFailed(f"{field}.choices must not be empty")
            continue
        if not (math.isfinite(spec.low) and math.isfinite(spec.high)):
            raise ValidationFailed(f"{field}: low and high must be finite numbers")
        if spec.low > spec.high:
            raise ValidationFailed(f"{field}.low must be <= high")
        if spec.log and spec.low <= 0:
            raise ValidationFailed(f"{field}.low must be > 0 when log is true")
        if isinstance(spec, FloatParam):
            if spec.step is not None and not (math.isfinite(spec.step) and spec.step > 0):
                raise ValidationFailed(f"{field}.step must be > 0")
            if spec.step is not None and spec.log:
                raise ValidationFailed(f"{field}: step and log cannot be used together")
        else:
            if spec.step < 1:
                raise ValidationFailed(f"{field}.step must be >= 1")
            if spec.log and spec.step != 1:
                raise ValidationFailed(f"{field}: step must be 1 when log is true")


def distributions(space: ParamSpecs) -> dict[str, BaseDistribution]:
    result: dict[str, BaseDistribution] = {}
    for name, spec in space.items():
        if isinstance(spec, CategoricalParam):
            result[name] = CategoricalDistribution(spec.choices)
        elif isinstance(spec, FloatParam):
            result[name] = FloatDistribution(spec.low, spec.high, log=spec.log, step=spec.step)
        else:
            result[name] = IntDistribution(spec.low, spec.high, log=spec.log, step=spec.step)
    return result


def grid(space: ParamSpecs) -> dict[str, list[Any]]:
    """Every value of every parameter, for the grid sampler (which needs a finite space)."""
    result: dict[str, list[Any]] = {}
    for name, spec in space.items():
        if isinstance(spec, CategoricalParam):
            result[name] = list(spec.choices)
        elif isinstance(spec, IntParam):
            result[name] = list(range(spec.low, spec.high + 1, spec.step))
        elif spec.step is not None:
            count = math.floor((spec.high - spec.low) / spec.step + 1e-9) + 1
            result[name] = [spec.low + i * spec.step for i in range(min(count, MAX_GRID_POINTS))]
        else:
            raise ValidationFailed(
                f"search_space.{name}: the grid sampler needs a step for float parameters"
            )
    return result


def grid_size(space: ParamSpecs) -> int:
    size = 1
    for values in grid(space).values():
        size *= len(values)
        if size > MAX_GRID_POINTS:
            break
    return size


def check_command(command: str, space: ParamSpecs) -> None:
    for name in PLACEHOLDER.findall(command):
        if name not in space:
            known = ", ".join(sorted(space))
            raise ValidationFailed(
                f"command: placeholder @@{name}@@ names no parameter of the search space ({known})"
            )


def render_command(command: str, params: Mapping[str, Any]) -> str:
    return PLACEHOLDER.sub(lambda m: shlex.quote(format_value(params[m.group(1)])), command)


def format_value(value: Any) -> str:
    """How a value looks in a command: strings as they are, everything else as JSON
    (``true``, ``null``, ``0.0001``, ``64``), which Python's ``float``/``int`` parse back."""
    return value if isinstance(value, str) else json.dumps(value)
