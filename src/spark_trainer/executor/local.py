"""Runs jobs as child processes of this server, on this machine."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pwd
import selectors
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from spark_trainer.executor.base import (
    ExitReport,
    Handle,
    LaunchError,
    LaunchSpec,
    LocalSupervisor,
)

logger = logging.getLogger(__name__)

# Passed as `-c` source, not as a path: a job user may be unable to read the server's
# source tree (say, a clone under a 0700 home).
SHIM_SOURCE = Path(__file__).with_name("shim.py").read_text(encoding="utf-8")
EXIT_FILE = "exit_status.json"
STDOUT_FILE = "stdout.log"
STDERR_FILE = "stderr.log"
# Written to the shim's go pipe once the process is recorded (see shim.py).
GO = b"go"


@dataclass
class _Supervised:
    job_id: str
    pgid: int
    job_dir: Path
    terminated: bool = False
    timed_out: bool = False
    timers: list[threading.Timer] = field(default_factory=list)
    # When a stop (SIGTERM) was sent: the group may use the grace period until then.
    kill_at: float | None = None


class LocalExecutor(LocalSupervisor[_Supervised]):
    name = "local"
    # From the shim's start to its command's: the interpreter's start-up, entering the
    # working directory and one fork, well under a second on an idle machine.
    start_timeout_seconds = 60.0

    def launch(self, spec: LaunchSpec) -> Handle:
        spec.job_dir.mkdir(parents=True, exist_ok=True)
        exit_file = spec.job_dir / EXIT_FILE
        exit_file.unlink(missing_ok=True)
        barrier, barrier_end = os.pipe()
        go_end, go = os.pipe()
        with os.fdopen(barrier, "rb") as barrier_file, os.fdopen(go, "wb", 0) as go_file:
            try:
                proc = self._start_shim(spec, exit_file, barrier_end, go_end)
            finally:
                os.close(barrier_end)
                os.close(go_end)
            try:
                started_at = psutil.Process(proc.pid).create_time()
            except psutil.Error:
                started_at = time.time()
            # The start time guards against pid reuse when the process is adopted later.
            handle = Handle(self.name, {"pid": proc.pid, "started_at": started_at})
            try:
                if spec.on_started is not None:
                    spec.on_started(handle)
            except OSError as exc:
                _discard(proc)  # unreleased: the command never ran
                raise LaunchError(f"could not record the job's process: {exc}") from exc
            # The shim may be gone already, having failed to enter the working directory
            # (the barrier says why).
            with contextlib.suppress(BrokenPipeError):
                go_file.write(GO)
            go_file.close()
            # Until the shim closes its end: once the command runs, or after writing why
            # it cannot enter the working directory (see shim.py).
            refused = _read_until_closed(barrier_file.fileno(), self.start_timeout_seconds)
        if refused is None:
            # Say, a working directory on a network mount that hangs: the scheduler must
            # not wait on it for ever.
            _discard(proc)
            raise LaunchError(
                f"the command did not start within {self.start_timeout_seconds:g} s "
                f"(entering the working directory {spec.working_dir})"
            )
        if refused:
            proc.wait()
            raise LaunchError(
                f"user '{_user_name(spec.uid)}' cannot enter the working directory "
                f"{spec.working_dir}: {refused}"
            )
        supervised = _Supervised(spec.job_id, proc.pid, spec.job_dir)
        self._jobs.add(spec.job_id, supervised)
        if spec.timeout_seconds is not None:
            self._arm_timeout(supervised, spec.timeout_seconds)
        threading.Thread(
            target=self._wait_child,
            args=(supervised, proc),
            name=f"wait-{spec.job_id}",
            daemon=True,
        ).start()
        return handle

    @staticmethod
    def _start_shim(
        spec: LaunchSpec, exit_file: Path, barrier_end: int, go_end: int
    ) -> subprocess.Popen[bytes]:
        try:
            with (
                (spec.job_dir / STDOUT_FILE).open("ab") as stdout,
                (spec.job_dir / STDERR_FILE).open("ab") as stderr,
            ):
                return subprocess.Popen(
                    [
                        spec.python or sys.executable,
                        "-I",
                        "-S",
                        "-c",
                        SHIM_SOURCE,
                        str(exit_file),
                        spec.command,
                        str(spec.working_dir),
                        str(barrier_end),
                        str(go_end),
                    ],
                    user=spec.uid,
                    group=spec.gid,
                    extra_groups=[] if spec.uid is not None else None,
                    # Somewhere every user may be: the shim enters the working directory.
                    cwd="/",
                    env=dict(spec.environment),
                    stdin=subprocess.DEVNULL,
                    stdout=stdout,
                    stderr=stderr,
                    start_new_session=True,
                    close_fds=True,
                    pass_fds=(barrier_end, go_end),
                )
        except OSError as exc:
            where = f": {exc.filename}" if exc.filename else ""
            raise LaunchError(f"could not start the command: {exc.strerror or exc}{where}") from exc
        except (ValueError, TypeError) as exc:
            # Popen's own checks, such as a NUL byte in the command or the environment.
            raise LaunchError(f"could not start the command: {exc}") from exc

    def adopt(self, job_id: str, handle: Handle, job_dir: Path, timeout_at: float | None) -> bool:
        if self._jobs.get(job_id) is not None:
            return True
        pid, started_at = int(handle.data["pid"]), float(handle.data["started_at"])
        supervised = _Supervised(job_id, pid, job_dir)
        try:
            process = psutil.Process(pid)
            alive = (
                abs(process.create_time() - started_at) < 1.0
                and process.status() != psutil.STATUS_ZOMBIE
            )
        except psutil.Error:
            alive = False
        if not alive:
            # Gone while the server was down: report now from what the shim left behind.
            self._finish(supervised, shim_returncode=None, kill_group=False)
            return False
        self._jobs.add(job_id, supervised)
        if timeout_at is not None:
            self._arm_timeout(supervised, max(0.0, timeout_at - time.time()))
        threading.Thread(
            target=self._wait_adopted,
            args=(supervised, process),
            name=f"adopted-{job_id}",
            daemon=True,
        ).start()
        return True

    def terminate(self, job_id: str, grace_seconds: float) -> bool:
        supervised = self._jobs.get(job_id)
        if supervised is None:
            return False
        supervised.terminated = True
        self._stop(supervised, grace_seconds)
        return True

    def shutdown(self) -> None:
        for supervised in self._jobs.close():
            for timer in supervised.timers:
                timer.cancel()

    # --- supervision ----------------------------------------------------------------

    def _arm_timeout(self, supervised: _Supervised, seconds: float) -> None:
        timer = threading.Timer(seconds, self._on_timeout, args=(supervised,))
        timer.daemon = True
        supervised.timers.append(timer)
        timer.start()

    def _on_timeout(self, supervised: _Supervised) -> None:
        supervised.timed_out = True
        logger.info("job timed out", extra={"job_id": supervised.job_id})
        self._stop(supervised, self.kill_grace_seconds)

    def _stop(self, supervised: _Supervised, grace_seconds: float) -> None:
        supervised.kill_at = time.monotonic() + grace_seconds
        _signal_group(supervised.pgid, signal.SIGTERM)
        timer = threading.Timer(
            grace_seconds, _signal_group, args=(supervised.pgid, signal.SIGKILL)
        )
        timer.daemon = True
        supervised.timers.append(timer)
        timer.start()

    def _wait_child(self, supervised: _Supervised, proc: subprocess.Popen[bytes]) -> None:
        returncode = proc.wait()
        self._finish(supervised, shim_returncode=returncode)

    def _wait_adopted(self, supervised: _Supervised, process: psutil.Process) -> None:
        # Not our child, so no exit status from wait(); the shim's exit file has it.
        while True:
            try:
                process.wait(timeout=1.0)
                break
            except psutil.TimeoutExpired:
                continue
            except psutil.Error:
                break
        self._finish(supervised, shim_returncode=None)

    def _finish(
        self, supervised: _Supervised, shim_returncode: int | None, *, kill_group: bool = True
    ) -> None:
        if kill_group and supervised.kill_at is not None:
            # SIGTERM also ends `sh -c` at once (dash does not exec the command), which
            # would end the job before a command that traps SIGTERM has saved its
            # checkpoint: the rest of the group keeps its grace period.
            _wait_group_gone(supervised.pgid, supervised.kill_at)
        for timer in supervised.timers:
            timer.cancel()
        if kill_group:
            # A job ends with its main process: whatever it left running in its group goes
            # too, so no stray process keeps holding the job's GPUs.
            _signal_group(supervised.pgid, signal.SIGKILL)
        if not self._jobs.ended(supervised.job_id):
            return
        report = _exit_report(supervised, shim_returncode)
        try:
            self.on_exit(report)
        except Exception:
            logger.exception("recording a job's exit failed", extra={"job_id": report.job_id})


def kill_group_if_alive(handle: Handle) -> bool:
    """SIGKILLs the process group of a job this executor started (the shim leads it), if
    that very process still runs (the start time guards against pid reuse)."""
    try:
        pid, started_at = int(handle.data["pid"]), float(handle.data["started_at"])
        alive = abs(psutil.Process(pid).create_time() - started_at) < 1.0
    except (KeyError, TypeError, ValueError, psutil.Error):
        return False
    if alive:
        _signal_group(pid, signal.SIGKILL)
    return alive


def _user_name(uid: int | None) -> str:
    try:
        return pwd.getpwuid(os.getuid() if uid is None else uid).pw_name
    except KeyError:
        return str(uid)


def _discard(proc: subprocess.Popen[bytes]) -> None:
    """Kills a shim whose command never started, and reaps it if it goes within seconds:
    a process in an uninterruptible wait (a hung mount) ends only when the wait does, and
    subprocess reaps it then."""
    _signal_group(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def _read_until_closed(fd: int, timeout: float) -> str | None:
    """What was written to the pipe ``fd`` until its write end closed; None when it was
    not closed within ``timeout`` seconds."""
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not selector.select(left):
                return None
            chunk = os.read(fd, 4096)
            if not chunk:
                return b"".join(chunks).decode(errors="replace")
            chunks.append(chunk)


def _wait_group_gone(pgid: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.05)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _exit_report(supervised: _Supervised, shim_returncode: int | None) -> ExitReport:
    recorded: dict[str, object] | None = None
    try:
        recorded = json.loads((supervised.job_dir / EXIT_FILE).read_text())
    except (OSError, ValueError):
        recorded = None
    returncode: int | None
    if isinstance(recorded, dict) and isinstance(recorded.get("returncode"), int):
        returncode = int(recorded["returncode"])  # type: ignore[call-overload]
    elif shim_returncode is not None and shim_returncode < 0:
        returncode = shim_returncode  # the shim itself was killed (SIGKILL after the grace)
    else:
        returncode = shim_returncode
    signum = -returncode if returncode is not None and returncode < 0 else None
    exit_code = 128 + signum if signum is not None else returncode
    detail = None
    if returncode is None:
        detail = "the process ended while the server was down and left no exit status"
    return ExitReport(
        job_id=supervised.job_id,
        exit_code=exit_code,
        signal=signum,
        timed_out=supervised.timed_out,
        terminated=supervised.terminated,
        detail=detail,
    )
