from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

from spark_trainer.executor.base import Executor, ExitCallback, LaunchError, LaunchSpec
from spark_trainer.executor.local import LocalExecutor
from tests.executor.conformance import GRACE, ExecutorConformance, Reports


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

    def test_a_launch_that_never_starts_its_command_fails_in_time(
        self,
        executor: Executor,
        reports: Reports,
        spec: Callable[..., LaunchSpec],
        tmp_path: Path,
    ) -> None:
        # An interpreter that hangs before the shim closes its barrier, as on entering a
        # working directory on a stuck network mount.
        pid_file = tmp_path / "hung.pid"
        hangs = tmp_path / "hanging-python"
        hangs.write_text(f"#!/bin/sh\necho $$ > {pid_file}\nexec sleep 60\n")
        hangs.chmod(0o755)
        assert isinstance(executor, LocalExecutor)
        executor.start_timeout_seconds = 1.0
        started = time.monotonic()
        with pytest.raises(LaunchError, match=r"did not start within 1 s"):
            executor.launch(replace(spec("hung", self.sleeps(30)), python=str(hangs)))
        assert time.monotonic() - started < 10
        assert not psutil.pid_exists(int(pid_file.read_text()))  # killed and reaped
        assert executor.running() == set()
        time.sleep(0.3)
        assert reports.items == []  # a failed launch is the caller's to record, not an exit
