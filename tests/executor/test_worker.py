"""The executor a ``sparktrainer worker`` runs jobs with passes the conformance suite."""

from __future__ import annotations

from pathlib import Path

from spark_trainer.executor.base import Executor, ExitCallback
from spark_trainer.runtime.executors import build_executor
from spark_trainer.settings import Settings
from tests.executor.conformance import GRACE
from tests.executor.test_local import TestLocalExecutor


class TestWorkerExecutor(TestLocalExecutor):
    def make(self, on_exit: ExitCallback) -> Executor:
        settings = Settings(
            executor="celery",
            data_dir=Path("/nonexistent-and-unused"),
            database_url="postgresql+psycopg://unused/unused",
            redis_url="redis://unused:6379/0",
            kill_grace_seconds=GRACE,
        )
        return build_executor(settings, on_exit)
