"""An executor that simulates processes in this process, for tests.

A command is a ``;``-separated script of ``echo TEXT`` (a line to stdout.log), ``sleep
SECONDS``, ``exit CODE`` and ``trap`` (ignore SIGTERM: only the SIGKILL after the grace
period stops it); anything else fails at launch, as a missing program would. Simulated
processes live in a module-wide table, so a new executor (a "restarted server") adopts
them by handle, as the local executor adopts real ones. It keeps the whole
:class:`~spark_trainer.executor.base.Executor` contract (the conformance suite checks).
"""

from __future__ import annotations

import secrets
import shlex
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from spark_trainer.executor.base import (
    ExitReport,
    Handle,
    LaunchError,
    LaunchSpec,
    LocalSupervisor,
)

STDOUT_FILE = "stdout.log"
TICK = 0.01


@dataclass
class _Process:
    key: str
    job_id: str
    job_dir: Path
    script: list[tuple[str, str]]
    trap: bool
    deadline: float | None
    signal: int | None = None
    kill_at: float | None = None
    timed_out: bool = False
    terminated: bool = False
    exit_code: int | None = None
    done: threading.Event = field(default_factory=threading.Event)


# Every simulated process, by handle key: what "the machine" runs, across executors.
_WORLD: dict[str, _Process] = {}
_WORLD_LOCK = threading.Lock()


def _parse(command: str) -> tuple[list[tuple[str, str]], bool]:
    script: list[tuple[str, str]] = []
    trap = False
    for part in (p.strip() for p in command.split(";")):
        if not part:
            continue
        verb, _, rest = part.partition(" ")
        if verb == "trap":
            trap = True
        elif verb in ("echo", "sleep", "exit"):
            if verb != "echo":
                try:
                    float(rest)
                except ValueError:
                    raise LaunchError(f"fake executor: bad argument in {part!r}") from None
            script.append((verb, " ".join(shlex.split(rest)) if verb == "echo" else rest))
        else:
            raise LaunchError(f"could not start the command: {verb}: not found")
    return script, trap


class FakeExecutor(LocalSupervisor[_Process]):
    name = "fake"

    def launch(self, spec: LaunchSpec) -> Handle:
        script, trap = _parse(spec.command)
        spec.job_dir.mkdir(parents=True, exist_ok=True)
        (spec.job_dir / STDOUT_FILE).touch()
        deadline = time.monotonic() + spec.timeout_seconds if spec.timeout_seconds else None
        process = _Process(secrets.token_hex(8), spec.job_id, spec.job_dir, script, trap, deadline)
        handle = Handle(self.name, {"key": process.key})
        if spec.on_started is not None:
            try:
                spec.on_started(handle)
            except OSError as exc:
                raise LaunchError(f"could not record the job's process: {exc}") from exc
        with _WORLD_LOCK:
            _WORLD[process.key] = process
        threading.Thread(target=_run, args=(process,), daemon=True).start()
        self._supervise(process)
        return handle

    def adopt(self, job_id: str, handle: Handle, job_dir: Path, timeout_at: float | None) -> bool:
        with _WORLD_LOCK:
            process = _WORLD.get(str(handle.data.get("key")))
        if process is None:
            self._report(ExitReport(job_id, None, None, False, False, "no such process"))
            return False
        if process.done.is_set():
            self._report(_report_of(process))
            return False
        self._supervise(process)
        return True

    def terminate(self, job_id: str, grace_seconds: float) -> bool:
        process = self._jobs.get(job_id)
        if process is None:
            return False
        process.terminated = True
        _stop(process, grace_seconds)
        return True

    def shutdown(self) -> None:
        self._jobs.close()

    def _supervise(self, process: _Process) -> None:
        self._jobs.add(process.job_id, process)
        threading.Thread(target=self._wait, args=(process,), daemon=True).start()

    def _wait(self, process: _Process) -> None:
        while not process.done.wait(TICK):
            if process.deadline is not None and time.monotonic() >= process.deadline:
                process.deadline = None
                process.timed_out = True
                _stop(process, self.kill_grace_seconds)
        if not self._jobs.ended(process.job_id):
            return
        self._report(_report_of(process))

    def _report(self, report: ExitReport) -> None:
        self.on_exit(report)


def _stop(process: _Process, grace_seconds: float) -> None:
    if not process.trap:
        process.signal = signal.SIGTERM
    if process.kill_at is None:
        process.kill_at = time.monotonic() + grace_seconds


def _run(process: _Process) -> None:
    code = 0
    for verb, arg in process.script:
        if verb == "echo":
            with (process.job_dir / STDOUT_FILE).open("a") as out:
                out.write(arg + "\n")
        elif verb == "exit":
            code = int(float(arg))
            break
        elif verb == "sleep":
            until = time.monotonic() + float(arg)
            while time.monotonic() < until and not _signalled(process):
                time.sleep(TICK)
        if _signalled(process):
            break
    if process.signal is not None:
        code = 128 + process.signal
    process.exit_code = code
    process.done.set()


def _signalled(process: _Process) -> bool:
    if process.kill_at is not None and time.monotonic() >= process.kill_at:
        process.signal = signal.SIGKILL
    return process.signal is not None


def _report_of(process: _Process) -> ExitReport:
    code = process.exit_code
    signum = code - 128 if code is not None and code > 128 and process.signal else None
    return ExitReport(
        job_id=process.job_id,
        exit_code=code,
        signal=signum,
        timed_out=process.timed_out,
        terminated=process.terminated,
    )
