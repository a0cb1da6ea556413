"""What a metric point may hold, checked at every way in (HTTP and the metrics file).

A point the database cannot store (a step past BIGINT, a NUL in a name on PostgreSQL)
would otherwise be accepted and fail later in the writer, for every job's batch.
"""

from __future__ import annotations

import math

from spark_trainer.kit.pagination import MAX_INT64
from spark_trainer.kit.text import find_control_character

MAX_NAME_LENGTH = 128
# Steps are stored as BIGINT on both databases.
MAX_STEP = MAX_INT64
RESERVED_NAMES = frozenset({"step"})


def name_problem(name: object) -> str | None:
    """Why ``name`` cannot be a metric name, or None."""
    if not isinstance(name, str) or not name or len(name) > MAX_NAME_LENGTH:
        return f"metric names must be 1-{MAX_NAME_LENGTH} characters"
    bad = find_control_character(name, name=True)
    if bad is not None:
        return f"metric name {name!r} must not contain control characters (found {bad})"
    if name in RESERVED_NAMES:
        return f"'{name}' is reserved; pass it as the point's step"
    return None


def value_problem(name: str, value: object) -> str | None:
    """Why ``value`` cannot be the value of metric ``name``, or None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"metric '{name}' must be a number"
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        return f"metric '{name}' must be a finite number"
    return None


def step_problem(step: object) -> str | None:
    if step is None:
        return None
    if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step <= MAX_STEP:
        return f"'step' must be an integer from 0 to {MAX_STEP}"
    return None


def time_problem(ts: object) -> str | None:
    if ts is None:
        return None
    if isinstance(ts, bool) or not isinstance(ts, int | float):
        return "'ts' must be a number (Unix time)"
    try:
        finite = math.isfinite(float(ts))
    except OverflowError:
        finite = False
    return None if finite else "'ts' must be a finite number (Unix time)"
