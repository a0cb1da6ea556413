from __future__ import annotations

import shlex

from spark_trainer.executor.base import Executor, ExitCallback
from spark_trainer.executor.local import LocalExecutor
from tests.executor.conformance import GRACE, ExecutorConformance


class TestLocalExecutor(ExecutorConformance):
    def make(self, on_exit: ExitCallback) -> Executor:
        return LocalExecutor(on_exit, kill_grace_seconds=GRACE)

    def exits(self, code: int) -> str:
        return f"exit {code}"

    def sleeps(self, seconds: float) -> str:
        return f"sleep {seconds}"

    def ignores_sigterm_and_sleeps(self, seconds: float) -> str:
        return f"trap '' TERM; sleep {seconds}"

    def prints(self, text: str) -> str:
        return f"echo {shlex.quote(text)}"

    def unlaunchable(self) -> str:
        return "echo a\x00b"  # Popen refuses a NUL byte
