"""The executor a server uses, chosen by ``SPARKTRAINER_EXECUTOR``."""

from __future__ import annotations

from spark_trainer.executor.base import Executor, ExitCallback
from spark_trainer.executor.fake import FakeExecutor
from spark_trainer.executor.local import LocalExecutor
from spark_trainer.settings import Settings


def build_executor(settings: Settings, on_exit: ExitCallback) -> Executor:
    if settings.executor == "fake":
        return FakeExecutor(on_exit, kill_grace_seconds=settings.kill_grace_seconds)
    # ``celery`` too: Celery only carries placements to a node's worker (executor.celery),
    # which runs each job with the same supervised runner as embedded mode.
    return LocalExecutor(on_exit, kill_grace_seconds=settings.kill_grace_seconds)
