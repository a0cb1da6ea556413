from __future__ import annotations

from spark_trainer.executor.base import Executor, ExitCallback
from spark_trainer.executor.fake import FakeExecutor
from tests.executor.conformance import GRACE, ExecutorConformance


class TestFakeExecutor(ExecutorConformance):
    def make(self, on_exit: ExitCallback) -> Executor:
        return FakeExecutor(on_exit, kill_grace_seconds=GRACE)

    def exits(self, code: int) -> str:
        return f"exit {code}"

    def sleeps(self, seconds: float) -> str:
        return f"sleep {seconds}"

    def ignores_sigterm_and_sleeps(self, seconds: float) -> str:
        return f"trap; sleep {seconds}"

    def prints(self, text: str) -> str:
        return f"echo {text}"

    def unlaunchable(self) -> str:
        return "no-such-program --flag"
