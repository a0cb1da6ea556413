"""What runs a job's process: the contract every executor keeps.

An executor starts a job's command on its node, supervises it and reports how it ended.
It never touches the database: the engine records what the executor reports. Executors
are called from the engine's threads; implementations must be thread-safe.

Contract:

- :meth:`Executor.launch` starts the process and returns a :class:`Handle` once it
  exists, or raises :class:`LaunchError` if it could not be started (the engine treats
  any other exception from ``launch`` the same way). The handle is opaque to the engine:
  it is stored with the job (JSON) and given back to :meth:`Executor.adopt`. The command
  runs in its own process group, so that cancel and timeout reach every process it spawned.
- When the process ends, for whatever reason, the executor calls the ``on_exit`` callback
  given at construction exactly once for that job, from any thread.
- :meth:`Executor.terminate` asks a running job to stop: SIGTERM to its process group,
  then SIGKILL once ``grace_seconds`` have passed. The exit is reported through
  ``on_exit`` like any other.
- :meth:`Executor.adopt` takes over a process started by an earlier incarnation of the
  server. If it is still alive it is supervised as if launched here; if it is gone,
  ``on_exit`` is called at once with what it left behind. Either way, exactly one
  ``on_exit`` follows.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class LaunchSpec:
    job_id: str
    command: str
    environment: Mapping[str, str]
    working_dir: Path
    job_dir: Path
    timeout_seconds: int | None
    # The OS user and group to run as (None: the server's own).
    uid: int | None = None
    gid: int | None = None
    # The interpreter for the local executor's stdlib-only shim (None: the server's).
    python: str | None = None
    # Called with the process's handle as soon as it exists and before its command starts:
    # the record a restarted server finds the process by. An OSError from it fails the
    # launch, and the command never runs.
    on_started: Callable[[Handle], None] | None = None


@dataclass(frozen=True, slots=True)
class Handle:
    """Where a job's process is, in the executor's own terms (local: pid and start time;
    a remote executor: a task id). ``data`` must be JSON-serialisable."""

    executor: str
    data: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"executor": self.executor, "data": dict(self.data)}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Handle:
        return cls(executor=str(value["executor"]), data=dict(value.get("data") or {}))


@dataclass(frozen=True, slots=True)
class ExitReport:
    job_id: str
    # The command's exit status; 128 + N when it was killed by signal N; None if unknown.
    exit_code: int | None
    signal: int | None
    timed_out: bool
    terminated: bool
    detail: str | None = None


ExitCallback = Callable[[ExitReport], None]


class LaunchError(Exception):
    pass


class Executor(ABC):
    name: str

    def __init__(self, on_exit: ExitCallback) -> None:
        self.on_exit = on_exit

    @abstractmethod
    def launch(self, spec: LaunchSpec) -> Handle: ...

    @abstractmethod
    def terminate(self, job_id: str, grace_seconds: float) -> bool:
        """Starts stopping the job; False if this executor is not running it."""

    @abstractmethod
    def adopt(self, job_id: str, handle: Handle, job_dir: Path, timeout_at: float | None) -> bool:
        """Supervises a surviving process again. False if it was gone (already reported)."""

    @abstractmethod
    def running(self) -> set[str]:
        """Ids of the jobs whose processes this executor supervises now."""

    @abstractmethod
    def shutdown(self) -> None:
        """Stops supervising. Job processes keep running, to be adopted after a restart."""


class Supervising(Generic[T]):
    """What an executor supervises now, by job id (thread-safe), and whether it has shut
    down: an exit seen after shutdown is not reported (the next start adopts the job)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, T] = {}
        self._closed = False

    def add(self, job_id: str, item: T) -> None:
        with self._lock:
            self._jobs[job_id] = item

    def get(self, job_id: str) -> T | None:
        with self._lock:
            return self._jobs.get(job_id)

    def ended(self, job_id: str) -> bool:
        """Forgets the job; True if its exit is to be reported (not shut down)."""
        with self._lock:
            self._jobs.pop(job_id, None)
            return not self._closed

    def ids(self) -> set[str]:
        with self._lock:
            return set(self._jobs)

    def close(self) -> list[T]:
        """Shuts down; returns what was supervised."""
        with self._lock:
            self._closed = True
            return list(self._jobs.values())


class LocalSupervisor(Executor, Generic[T]):
    """An executor that supervises its jobs' processes itself (local, fake), each job
    tracked as a ``T`` while it runs."""

    def __init__(self, on_exit: ExitCallback, *, kill_grace_seconds: float = 10.0) -> None:
        super().__init__(on_exit)
        self.kill_grace_seconds = kill_grace_seconds
        self._jobs = Supervising[T]()

    def running(self) -> set[str]:
        return self._jobs.ids()
