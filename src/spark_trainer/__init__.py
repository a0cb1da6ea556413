"""SparkTrainer: a self-hosted platform that queues, runs and tracks GPU training jobs."""

__version__ = "0.1.0"
