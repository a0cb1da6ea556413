"""Distributed mode: dispatch latency against embedded mode, and the cluster's start rate.

Both deployments run in the same invocation on the same PostgreSQL (a temporary database
each) so their figures share the machine's load:

- **embedded**: one ``sparktrainer serve`` with ``SPARKTRAINER_GPUS=64``; jobs run as its
  children.
- **distributed**: one ``sparktrainer serve`` without GPUs (``SPARKTRAINER_EXECUTOR=celery``)
  and one ``sparktrainer worker`` with 64 virtual GPUs, Celery's broker a private
  ``redis-server`` started on a free port (so nothing else on the machine shares it).

(a) Dispatch latency: jobs submitted one at a time on an idle deployment; the job writes
``date +%s.%N`` from inside its process; that minus the client's clock just before the
POST is submit → process started (one machine, one clock). Target p50 < 300 ms
distributed (embedded's own target is 100 ms).

(b) Start rate (distributed): the worker is stopped (its node is marked down), ``--rate-jobs``
jobs are submitted and wait; the worker is started again and the rate is the jobs whose
process started (each writes its stamp) divided by the time from the first stamp to the
last. The published Slurm figure is 500 jobs/s (slurmctld, ``sbatch`` throughput on a
tuned controller); the difference is printed.

(c) The API's ``/metrics``: after (a), its dispatch-latency histogram (recorded by the
worker with each job, served by the API process) against the client's own measurement of
the same jobs; after (b), a scrape's wall time (p50 of 20, every figure read from the
database) against ``/healthz`` measured in the same loop.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import httpx

from bench._common import Result, stop_process
from bench._jobs import (
    BASE_ENV,
    Backend,
    add_shared_arguments,
    login,
    percentile,
    target_note,
    wait_file,
)
from bench._server import (
    SECRET_KEY,
    free_port,
    postgres_reachable,
    running_server,
    temporary_postgres_database,
)

NAME = "distributed"
DESCRIPTION = "submit → process started, distributed (Celery worker) vs embedded; start rate"
TARGET_P50_MS = 300.0
SLURM_JOBS_PER_S = 500.0
GPUS = "64"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_shared_arguments(parser)
    group = parser.add_argument_group(NAME)
    group.add_argument(
        "--latency-jobs", type=int, default=30, help="jobs measured one at a time (default 30)"
    )
    group.add_argument(
        "--rate-jobs", type=int, default=300, help="jobs started for the rate (default 300)"
    )


@contextmanager
def _private_redis(work: Path) -> Iterator[str]:
    server = shutil.which("redis-server")
    if server is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    proc = subprocess.Popen(
        [server, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        cwd=work,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        import redis

        deadline = time.monotonic() + 10
        while True:
            try:
                if redis.Redis.from_url(url).ping():
                    break
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield url
    finally:
        stop_process(proc, grace_s=10)


class _Worker:
    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SPARKTRAINER_")}
        self.env.update(
            SPARKTRAINER_SECRET_KEY=SECRET_KEY,
            SPARKTRAINER_LOG_LEVEL="WARNING",
            SPARKTRAINER_DATA_DIR=str(data_dir),
            SPARKTRAINER_NODE_NAME="bench-worker",
            SPARKTRAINER_GPUS=GPUS,
            **env,
        )
        self.log: IO[bytes] = (data_dir / "worker.log").open("ab")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "spark_trainer", "worker"],
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def stop(self) -> None:
        # SIGTERM first: a worker stopped so marks its node down at once (the start rate
        # below waits for that).
        stop_process(self.proc, grace_s=60)


def _wait_node(client: httpx.Client, token: str, up: bool, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready = client.get("/readyz").json()
        if bool(ready["celery"]) == up:
            return
        time.sleep(0.1)
    raise RuntimeError(f"the worker did not become {'ready' if up else 'stopped'}")


def _read_stamp(path: Path) -> float:
    wait_file(path, 120)
    while not (text := path.read_text().strip()):
        time.sleep(0.001)
    return float(text)


def _stamp_command(path: Path) -> str:
    return f"date +%s.%N > {shlex.quote(str(path))}"


def _submit(b: Backend, command: str) -> str:
    body = {"name": "bench", "command": command, "gpu_count": 1}
    response = b.client.post("/api/jobs", json=body, headers=b.auth)
    response.raise_for_status()
    job_id: str = response.json()["id"]
    return job_id


def _latencies(b: Backend, count: int) -> list[float]:
    values = []
    for i in range(-3, count):  # three warm-up jobs first
        stamp = b.work_dir / f"{b.name}-latency-{i}"
        submitted = time.time()
        _submit(b, _stamp_command(stamp))
        started = _read_stamp(stamp)
        if i >= 0:
            values.append(1000 * (started - submitted))
        time.sleep(0.2)  # idle again: the job has ended and its exit is recorded
    return values


def _start_rate(b: Backend, worker: _Worker, count: int) -> tuple[float, float]:
    """(jobs/s, seconds from the first process started to the last)."""
    worker.stop()
    _wait_node(b.client, b.token, up=False)
    stamps = [b.work_dir / f"rate-{i}" for i in range(count)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda p: _submit(b, _stamp_command(p)), stamps))
    worker.start()
    times = [_read_stamp(p) for p in stamps]
    span = max(times) - min(times)
    return (count - 1) / span if span > 0 else float("inf"), span


def _report(label: str, values: list[float]) -> dict[str, float]:
    p50 = percentile(values, 50)
    print(
        f"{NAME} {label}: submit→started p50 {p50:.1f} ms p99 {percentile(values, 99):.1f} ms "
        f"({len(values)} jobs)",
        flush=True,
    )
    return {f"{label}_p50_ms": p50, f"{label}_p99_ms": percentile(values, 99)}


def _histogram(client: httpx.Client) -> tuple[float, float]:
    """(count, mean ms) of the API's ``sparktrainer_dispatch_latency_seconds``."""
    values = {}
    for line in client.get("/metrics").text.splitlines():
        for part in ("sum", "count"):
            if line.startswith(f"sparktrainer_dispatch_latency_seconds_{part} "):
                values[part] = float(line.rsplit(" ", 1)[1])
    count = values["count"]
    return count, 1000 * values["sum"] / count if count else float("nan")


def _scrape_ms(client: httpx.Client, rounds: int = 20) -> tuple[float, float]:
    """p50 wall ms of GET /metrics and of GET /healthz, interleaved."""
    scrapes: list[float] = []
    baseline: list[float] = []
    for _ in range(rounds):
        for path, into in (("/metrics", scrapes), ("/healthz", baseline)):
            began = time.perf_counter()
            client.get(path).raise_for_status()
            into.append(1000 * (time.perf_counter() - began))
    return percentile(scrapes, 50), percentile(baseline, 50)


def run(args: argparse.Namespace) -> list[Result]:
    if not postgres_reachable(args.postgres_url):
        print(f"{NAME}: PostgreSQL not reachable at {args.postgres_url}; skipped")
        return [Result(NAME, "dispatch", {}, {"skipped": "postgres unreachable"})]
    load = os.getloadavg()[0]
    figures: dict[str, float] = {"loadavg_1m": load}
    with tempfile.TemporaryDirectory(prefix="bench-distributed-") as tmp:
        root = Path(tmp)
        for sub in ("embedded", "distributed", "work"):
            (root / sub).mkdir()
        with temporary_postgres_database(args.postgres_url) as url:
            env = {**BASE_ENV, "SPARKTRAINER_DATABASE_URL": url}
            with (
                running_server(root / "embedded" / "data", env=env) as server,
                httpx.Client(base_url=server.base_url, timeout=120) as client,
            ):
                b = Backend("embedded", server, url, root / "work", client, login(client))
                figures.update(_report("embedded", _latencies(b, args.latency_jobs)))
        with temporary_postgres_database(args.postgres_url) as url, _private_redis(root) as broker:
            shared = {
                "SPARKTRAINER_DATABASE_URL": url,
                "SPARKTRAINER_EXECUTOR": "celery",
                "SPARKTRAINER_REDIS_URL": broker,
            }
            api_env = {**BASE_ENV, **shared, "SPARKTRAINER_GPUS": "0"}
            worker = _Worker(root / "distributed" / "worker", shared)
            with (
                running_server(root / "distributed" / "api", env=api_env) as server,
                httpx.Client(base_url=server.base_url, timeout=120) as client,
            ):
                try:
                    worker.start()
                    token = login(client)
                    _wait_node(client, token, up=True)
                    b = Backend("distributed", server, url, root / "work", client, token)
                    measured = _latencies(b, args.latency_jobs)
                    figures.update(_report("distributed", measured))
                    count, mean = _histogram(client)
                    figures.update(
                        {
                            "metrics_histogram_mean_ms": mean,
                            "client_mean_ms": sum(measured) / len(measured),
                        }
                    )
                    print(
                        f"{NAME} /metrics: dispatch histogram {count:.0f} jobs (with 3 warm-ups), "
                        f"mean {mean:.1f} ms; client-measured mean "
                        f"{figures['client_mean_ms']:.1f} ms",
                        flush=True,
                    )
                    rate, span = _start_rate(b, worker, args.rate_jobs)
                    scrape, healthz = _scrape_ms(client)
                    figures.update({"metrics_scrape_p50_ms": scrape, "healthz_p50_ms": healthz})
                    print(
                        f"{NAME} /metrics: scrape p50 {scrape:.1f} ms with "
                        f"{count + args.rate_jobs:.0f} jobs, {scrape / healthz:.1f}x /healthz "
                        f"({healthz:.1f} ms) in the same loop",
                        flush=True,
                    )
                finally:
                    worker.stop()
    p50 = figures["distributed_p50_ms"]
    figures.update(
        {
            "target_p50_ms": TARGET_P50_MS,
            "start_rate_jobs_per_s": rate,
            "start_span_s": span,
            "slurm_jobs_per_s": SLURM_JOBS_PER_S,
        }
    )
    print(
        f"{NAME}: distributed p50 {p50:.1f} ms "
        f"{target_note(p50, TARGET_P50_MS, lower_is_better=True)} | start rate "
        f"{rate:.1f} jobs/s over {args.rate_jobs} jobs ({span:.1f} s), "
        f"{SLURM_JOBS_PER_S / rate:.1f}x below Slurm's published {SLURM_JOBS_PER_S:.0f} jobs/s "
        f"| load {load:.1f}",
        flush=True,
    )
    return [
        Result(
            NAME,
            "dispatch and start rate",
            figures,
            {"met": str(p50 < TARGET_P50_MS).lower()},
        )
    ]
