"""Helpers for the job-engine benchmarks (job_dispatch, metrics_ingest, metrics_stream).

One server per backend (SQLite in a temporary data dir, PostgreSQL in a temporary
database), started with a virtual GPU inventory and rate limits high enough never to
answer 429; an admin client; job submission and waiting; direct database access for
bulk inserts and for watching what the metrics writer has committed; CPU accounting.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench._server import (
    ADMIN_PASSWORD,
    DEFAULT_POSTGRES_URL,
    Server,
    postgres_reachable,
    running_server,
    temporary_postgres_database,
)

BACKENDS = ("sqlite", "postgres")
WORKLOAD = Path(__file__).resolve().with_name("_job_workload.py")
FINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})
BASE_ENV = {
    "SPARKTRAINER_GPUS": "64",
    # Far above what a benchmark reaches, so the limiter never answers 429 (admin is premium).
    "SPARKTRAINER_RATE_LIMIT_PREMIUM_PER_MINUTE": "100000000",
    "SPARKTRAINER_RATE_LIMIT_STANDARD_PER_MINUTE": "100000000",
}


def add_shared_arguments(parser: argparse.ArgumentParser) -> None:
    """``--backends`` and ``--postgres-url``, shared with api_overhead (added once)."""
    for flags, kwargs in (
        (
            ("--backends",),
            {
                "default": ",".join(BACKENDS),
                "help": "comma-separated subset of sqlite,postgres (default: both)",
            },
        ),
        (
            ("--postgres-url",),
            {
                "default": os.environ.get("SPARKTRAINER_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL),
                "help": "admin URL used to create/drop the temporary database "
                "[env: SPARKTRAINER_BENCH_POSTGRES_URL]",
            },
        ),
    ):
        with contextlib.suppress(argparse.ArgumentError):
            parser.add_argument(*flags, **kwargs)  # type: ignore[arg-type]


def backends_of(args: argparse.Namespace) -> list[str]:
    backends = [b.strip() for b in str(args.backends).split(",") if b.strip()]
    unknown = set(backends) - set(BACKENDS)
    if unknown:
        raise ValueError(f"unknown backends: {sorted(unknown)}")
    return backends


@dataclass(slots=True)
class Backend:
    name: str
    server: Server
    database_url: str  # SQLAlchemy URL of the server's database, for direct access
    work_dir: Path  # a scratch directory for the benchmark's own files
    client: httpx.Client  # logged in as admin, base_url set
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@contextlib.contextmanager
def database_for(backend: str, args: argparse.Namespace, data_dir: Path) -> Iterator[str | None]:
    """The database URL a server on ``backend`` should use (None: PostgreSQL unreachable)."""
    if backend == "sqlite":
        yield f"sqlite:///{data_dir / 'sparktrainer.db'}"
        return
    if not postgres_reachable(args.postgres_url):
        yield None
        return
    with temporary_postgres_database(args.postgres_url) as url:
        yield url


@contextlib.contextmanager
def backend_server(
    backend: str, args: argparse.Namespace, name: str, env: dict[str, str] | None = None
) -> Iterator[Backend | None]:
    """Starts the server on ``backend``; yields None (with a notice) when it cannot."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-{backend}-") as tmp:
        data_dir = Path(tmp) / "data"
        work_dir = Path(tmp) / "work"
        work_dir.mkdir()
        with database_for(backend, args, data_dir) as url:
            if url is None:
                print(f"{name}: PostgreSQL not reachable at {args.postgres_url}; skipped")
                yield None
                return
            full_env = {**BASE_ENV, **(env or {})}
            if backend == "postgres":
                full_env["SPARKTRAINER_DATABASE_URL"] = url
            with (
                running_server(data_dir, env=full_env) as server,
                httpx.Client(base_url=server.base_url, timeout=120) as client,
            ):
                token = login(client)
                yield Backend(backend, server, url, work_dir, client, token)


def login(client: httpx.Client) -> str:
    response = client.post(
        "/api/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
    )
    response.raise_for_status()
    token: str = response.json()["access_token"]
    return token


def workload_command(*args: str | int | float | Path) -> str:
    """A shell command that runs ``bench/_job_workload.py`` with this interpreter."""
    return shlex.join([sys.executable, str(WORKLOAD), *(str(a) for a in args)])


def submit(b: Backend, command: str, *, name: str = "bench", gpu_count: int = 1) -> str:
    response = b.client.post(
        "/api/jobs",
        json={"name": name, "command": command, "gpu_count": gpu_count, "timeout_seconds": 900},
        headers=b.auth,
    )
    response.raise_for_status()
    job_id: str = response.json()["id"]
    return job_id


def job(b: Backend, job_id: str) -> dict[str, Any]:
    response = b.client.get(f"/api/jobs/{job_id}", headers=b.auth)
    response.raise_for_status()
    data: dict[str, Any] = response.json()
    return data


def wait_status(
    b: Backend, job_id: str, statuses: Sequence[str], timeout_s: float = 120, poll_s: float = 0.02
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        data = job(b, job_id)
        if data["status"] in statuses:
            return data
        if data["status"] in FINAL_STATUSES:
            raise RuntimeError(f"job {job_id} ended as {data['status']}: {data['status_reason']}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"job {job_id} still {data['status']} after {timeout_s:.0f}s")
        time.sleep(poll_s)


def wait_file(path: Path, timeout_s: float = 60, poll_s: float = 0.001) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{path} did not appear within {timeout_s:.0f}s")
        time.sleep(poll_s)


# --- direct database access --------------------------------------------------------------


def sync_engine(url: str) -> Any:
    """A small SQLAlchemy engine on the server's database (readers beside the server)."""
    from sqlalchemy import create_engine

    if url.startswith("sqlite"):
        return create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
    return create_engine(url, pool_size=2)


def metrics_seq(engine: Any, job_id: str) -> int:
    """The last seq the metrics writer has committed for a job (rows and seq commit together)."""
    from sqlalchemy import text

    with engine.connect() as conn:
        value = conn.execute(
            text("SELECT metrics_seq FROM jobs WHERE id = :id"), {"id": job_id}
        ).scalar()
    return int(value or 0)


def stored_rows(engine: Any, job_id: str) -> int:
    from sqlalchemy import text

    with engine.connect() as conn:
        value = conn.execute(
            text("SELECT count(*) FROM metric_points WHERE job_id = :id"), {"id": job_id}
        ).scalar()
    return int(value or 0)


def wait_seq(
    engine: Any, job_id: str, seq: int, timeout_s: float = 300, poll_s: float = 0.01
) -> float:
    """Polls until ``metrics_seq`` reaches ``seq``; returns the ``time.time()`` it was seen."""
    deadline = time.monotonic() + timeout_s
    while True:
        if metrics_seq(engine, job_id) >= seq:
            return time.time()
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"job {job_id}: metrics_seq {metrics_seq(engine, job_id)} < {seq} "
                f"after {timeout_s:.0f}s"
            )
        time.sleep(poll_s)


# --- CPU accounting and statistics ---------------------------------------------------------


def cpu_s(proc: psutil.Process) -> float:
    try:
        times = proc.cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


def postgres_cpu_s() -> float:
    total = 0.0
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] == "postgres":
            total += cpu_s(proc)
    return total


def machine_busy_s() -> float:
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


class CpuMeter:
    """Server, PostgreSQL and whole-machine CPU seconds over a ``with`` block."""

    def __init__(self, server_pid: int) -> None:
        self.proc = psutil.Process(server_pid)
        self.server_s = self.db_s = self.machine_s = self.wall_s = 0.0

    def __enter__(self) -> CpuMeter:
        self._start = (cpu_s(self.proc), postgres_cpu_s(), machine_busy_s(), time.perf_counter())
        return self

    def __exit__(self, *exc: object) -> None:
        server, db, busy, wall = self._start
        self.server_s = cpu_s(self.proc) - server
        self.db_s = postgres_cpu_s() - db
        self.machine_s = machine_busy_s() - busy
        self.wall_s = time.perf_counter() - wall

    def figures(self) -> dict[str, float]:
        wall = self.wall_s or 1.0
        return {
            "srv_cpu_%": 100 * self.server_s / wall,
            "db_cpu_%": 100 * self.db_s / wall,
            "machine_cpu_%": 100 * self.machine_s / wall,
        }


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of an unsorted sequence (NaN when empty)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(pct / 100 * len(ordered)) - 1))
    return float(ordered[index])


def target_note(value: float, target: float, *, lower_is_better: bool) -> str:
    """``(target < 100, met)`` style note with the ratio value/target."""
    met = value <= target if lower_is_better else value >= target
    sign = "<" if lower_is_better else ">="
    return f"(target {sign} {target:g}: {'met' if met else 'MISSED'}, x{value / target:.2f})"
