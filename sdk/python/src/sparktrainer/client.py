"""The SparkTrainer API client: ``SparkTrainerClient`` (blocking) and its asyncio twin.

Imported on first use of ``sparktrainer.SparkTrainerClient``, so a training script's
``import sparktrainer`` never pays for httpx or pydantic.
"""

from sparktrainer._async.client import AsyncSparkTrainerClient
from sparktrainer._async.streams import AsyncLogStream, AsyncMetricStream
from sparktrainer._common import JobEnd, MetricPoint, RetryPolicy
from sparktrainer._sync.client import SparkTrainerClient
from sparktrainer._sync.streams import LogStream, MetricStream

__all__ = [
    "AsyncLogStream",
    "AsyncMetricStream",
    "AsyncSparkTrainerClient",
    "JobEnd",
    "LogStream",
    "MetricPoint",
    "MetricStream",
    "RetryPolicy",
    "SparkTrainerClient",
]
