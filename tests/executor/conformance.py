"""The executor contract (``executor/base.py``), as one suite every executor passes.

In the style of optuna's ``StorageTestCase``: the tests live in a base class that knows
nothing of any implementation; each executor's test module subclasses it, providing how
to build the executor and how to write a few commands in its terms.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from spark_trainer.executor.base import (
    Executor,
    ExitCallback,
    ExitReport,
    Handle,
    LaunchError,
    LaunchSpec,
)

GRACE = 0.5


class Reports:
    """Collects on_exit calls, so a test can wait for one and check there is only one."""

    def __init__(self) -> None:
        self.items: list[ExitReport] = []
        self._changed = threading.Condition()

    def __call__(self, report: ExitReport) -> None:
        with self._changed:
            self.items.append(report)
            self._changed.notify_all()

    def wait(self, job_id: str, timeout: float = 20.0) -> ExitReport:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not any(r.job_id == job_id for r in self.items):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no exit reported for {job_id}")
                self._changed.wait(left)
        # The contract says exactly one: give a stray second report time to show up.
        time.sleep(0.2)
        found = [r for r in self.items if r.job_id == job_id]
        assert len(found) == 1, found
        return found[0]


class ExecutorConformance(ABC):
    @abstractmethod
    def make(self, on_exit: ExitCallback) -> Executor: ...

    @abstractmethod
    def exits(self, code: int) -> str: ...

    @abstractmethod
    def sleeps(self, seconds: float) -> str: ...

    @abstractmethod
    def ignores_sigterm_and_sleeps(self, seconds: float) -> str: ...

    @abstractmethod
    def prints(self, text: str) -> str: ...

    @abstractmethod
    def unlaunchable(self) -> str: ...

    @pytest.fixture
    def reports(self) -> Reports:
        return Reports()

    @pytest.fixture
    def executor(self, reports: Reports) -> Iterator[Executor]:
        made = self.make(reports)
        yield made
        for job_id in made.running():
            made.terminate(job_id, 0)
        made.shutdown()

    @pytest.fixture
    def spec(self, tmp_path: Path) -> Callable[..., LaunchSpec]:
        def make(job_id: str, command: str, timeout: int | None = None) -> LaunchSpec:
            job_dir = tmp_path / job_id
            job_dir.mkdir()
            return LaunchSpec(
                job_id=job_id,
                command=command,
                environment={"PATH": "/usr/bin:/bin"},
                working_dir=job_dir,
                job_dir=job_dir,
                timeout_seconds=timeout,
            )

        return make

    def test_exit_codes_are_reported_once(
        self, executor: Executor, reports: Reports, spec: Callable[..., LaunchSpec]
    ) -> None:
        executor.launch(spec("ok", self.exits(0)))
        executor.launch(spec("three", self.exits(3)))
        ok, three = reports.wait("ok"), reports.wait("three")
        assert (ok.exit_code, ok.signal, ok.timed_out, ok.terminated) == (0, None, False, False)
        assert (three.exit_code, three.signal) == (3, None)

    def test_running_lists_live_jobs_only(
        self, executor: Executor, reports: Reports, spec: Callable[..., LaunchSpec]
    ) -> None:
        executor.launch(spec("long", self.sleeps(30)))
        assert executor.running() == {"long"}
        assert executor.terminate("long", GRACE)
        reports.wait("long")
        assert executor.running() == set()
        assert not executor.terminate("long", GRACE)

    def test_terminate_sends_sigterm(
        self, executor: Executor, reports: Reports, spec: Callable[..., LaunchSpec]
    ) -> None:
        # Stopped the moment each launch returns, several times over: a stop that reached
        # a half-started job and not its command showed as a SIGKILL after the grace.
        stops = [f"stop-{n}" for n in range(8)]
        for job_id in stops:
            executor.launch(spec(job_id, self.sleeps(30)))
            assert executor.terminate(job_id, GRACE)
        for job_id in stops:
            report = reports.wait(job_id)
            assert report.terminated
            assert (report.exit_code, report.signal) == (143, 15), job_id

    def test_sigkill_after_the_grace_period(
        self, executor: Executor, reports: Reports, spec: Callable[..., LaunchSpec]
    ) -> None:
        executor.launch(spec("stubborn", self.ignores_sigterm_and_sleeps(30)))
        time.sleep(0.3)  # let the command install its trap
        started = time.monotonic()
        executor.terminate("stubborn", GRACE)
        report = reports.wait("stubborn")
        assert time.monotonic() - started >= GRACE
        assert (report.exit_code, report.signal) == (137, 9)

    def test_timeout(
        self, executor: Executor, reports: Reports, spec: Callable[..., LaunchSpec]
    ) -> None:
        executor.launch(spec("slow", self.sleeps(30), timeout=1))
        report = reports.wait("slow")
        assert report.timed_out
        assert report.exit_code != 0

    def test_logs_go_to_stdout_log(
        self, executor: Executor, reports: Reports, spec: Callable[..., LaunchSpec]
    ) -> None:
        launched = spec("talk", self.prints("hello from the job"))
        executor.launch(launched)
        reports.wait("talk")
        assert (launched.job_dir / "stdout.log").read_text() == "hello from the job\n"

    def test_a_launch_failure_raises(
        self, executor: Executor, spec: Callable[..., LaunchSpec]
    ) -> None:
        with pytest.raises(LaunchError):
            executor.launch(spec("bad", self.unlaunchable()))
        assert executor.running() == set()

    def test_the_handle_is_recorded_before_the_command_starts(
        self, executor: Executor, reports: Reports, spec: Callable[..., LaunchSpec]
    ) -> None:
        launched = spec("recorded", self.prints("started"))
        stdout = launched.job_dir / "stdout.log"
        seen: list[tuple[Handle, str]] = []

        def record(handle: Handle) -> None:
            time.sleep(0.5)  # a slow disk: the command must still wait for the record
            seen.append((handle, stdout.read_text() if stdout.exists() else ""))

        handle = executor.launch(replace(launched, on_started=record))
        assert seen == [(handle, "")]
        assert (reports.wait("recorded").exit_code, stdout.read_text()) == (0, "started\n")

    def test_a_handle_that_cannot_be_recorded_fails_the_launch_unstarted(
        self, executor: Executor, reports: Reports, spec: Callable[..., LaunchSpec]
    ) -> None:
        launched = spec("unrecorded", self.prints("started"))

        def disk_full(handle: Handle) -> None:
            raise OSError(28, "No space left on device")

        with pytest.raises(LaunchError, match="could not record the job's process"):
            executor.launch(replace(launched, on_started=disk_full))
        time.sleep(0.5)
        stdout = launched.job_dir / "stdout.log"
        assert not stdout.exists() or stdout.read_text() == ""  # the command never ran
        assert executor.running() == set()
        assert reports.items == []

    def test_adopt_after_restart(
        self, executor: Executor, reports: Reports, spec: Callable[..., LaunchSpec]
    ) -> None:
        launched = spec("survivor", self.sleeps(30))
        handle = executor.launch(launched)
        time.sleep(0.3)  # running for real before the server goes
        executor.shutdown()  # the server stops; the process lives on
        later = Reports()
        restarted = self.make(later)
        try:
            assert restarted.adopt("survivor", handle, launched.job_dir, None)
            assert restarted.running() == {"survivor"}
            assert restarted.terminate("survivor", GRACE)
            report = later.wait("survivor")
            assert report.exit_code == 143, report
        finally:
            restarted.shutdown()
        assert reports.items == []  # the old executor reports nothing after shutdown

    def test_adopting_an_ended_process_reports_it_at_once(
        self, executor: Executor, reports: Reports, spec: Callable[..., LaunchSpec]
    ) -> None:
        launched = spec("gone", self.exits(4))
        handle = executor.launch(launched)
        reports.wait("gone")
        later = Reports()
        restarted = self.make(later)
        try:
            assert not restarted.adopt("gone", handle, launched.job_dir, None)
            assert later.wait("gone").exit_code == 4
        finally:
            restarted.shutdown()
