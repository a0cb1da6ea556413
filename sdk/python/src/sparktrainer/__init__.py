"""SparkTrainer's Python SDK.

Inside a training job: ``sparktrainer.log({"loss": 0.45}, step=100)`` (standard library
only). From anywhere: ``from sparktrainer import SparkTrainerClient``; the client and its
dependencies (httpx, pydantic) load on first use of that name, not on ``import sparktrainer``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sparktrainer.tracking import flush, log

if TYPE_CHECKING:
    from sparktrainer.client import (
        AsyncSparkTrainerClient,
        JobEnd,
        MetricPoint,
        RetryPolicy,
        SparkTrainerClient,
    )

__version__ = "0.1.0"
__all__ = [
    "AsyncSparkTrainerClient",
    "JobEnd",
    "MetricPoint",
    "RetryPolicy",
    "SparkTrainerClient",
    "__version__",
    "flush",
    "log",
]

_LAZY = {"AsyncSparkTrainerClient", "JobEnd", "MetricPoint", "RetryPolicy", "SparkTrainerClient"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from sparktrainer import client

        return getattr(client, name)
    raise AttributeError(f"module 'sparktrainer' has no attribute {name!r}")
