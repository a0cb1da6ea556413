"""API overhead: authenticated list and detail reads against the cheapest route, per backend.

For SQLite (temporary data dir) and PostgreSQL (temporary database, dropped after),
starts the real server (``sparktrainer serve``), logs in as admin, seeds users, an
experiment and ``--jobs`` finished jobs in it, then drives closed-loop load at N
connections: ``GET /healthz`` (routing + middleware floor), then, each with a Bearer token
(auth, rate limiter, session, queries, serialization): ``GET /api/users?limit=20``,
``GET /api/jobs?limit=20``, ``GET /api/jobs/{id}`` and ``GET /api/experiments/{id}/runs``.
Each read's ratio rps / healthz_rps is the share of the floor it keeps; the targets are
a ratio >= 0.30 with p99 < 20 ms.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from bench._common import Result, wait_for_quiet
from bench._loadgen import LoadResult, pick_generator, run_load
from bench._server import (
    ADMIN_PASSWORD,
    DEFAULT_POSTGRES_URL,
    Server,
    postgres_reachable,
    running_server,
    temporary_postgres_database,
)

NAME = "api_overhead"
DESCRIPTION = "healthz vs authenticated list/detail GETs: rps, p50/p99, ratio (SQLite, PostgreSQL)"
TARGET_RATIO = 0.30
TARGET_P99_MS = 20.0
OTHER_CPU_WARNING = 0.15  # cores used by unrelated processes during a measured case
BACKENDS = ("sqlite", "postgres")
SEED_PASSWORD = "bench-user-password"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(NAME)
    group.add_argument(
        "--backends",
        default=",".join(BACKENDS),
        help="comma-separated subset of sqlite,postgres (default: both)",
    )
    group.add_argument(
        "--users", type=int, default=50, help="extra users seeded through the API (default 50)"
    )
    group.add_argument(
        "--list-limit", type=int, default=20, help="page size of the list requests (default 20)"
    )
    group.add_argument(
        "--jobs", type=int, default=50, help="finished jobs seeded in one experiment (default 50)"
    )
    group.add_argument(
        "--postgres-url",
        default=os.environ.get("SPARKTRAINER_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL),
        help="admin URL used to create/drop the temporary database "
        "[env: SPARKTRAINER_BENCH_POSTGRES_URL]",
    )
    group.add_argument(
        "--redis-url",
        default=None,
        help="give the server SPARKTRAINER_REDIS_URL (Redis-backed rate limiter); default: none",
    )


def _login(client: httpx.Client) -> str:
    response = client.post(
        "/api/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
    )
    response.raise_for_status()
    token: str = response.json()["access_token"]
    return token


def _seed_users(client: httpx.Client, token: str, count: int) -> None:
    headers = {"Authorization": f"Bearer {token}"}

    def create(i: int) -> None:
        body = {"username": f"bench-user-{i:04d}", "password": SEED_PASSWORD}
        client.post("/api/users", json=body, headers=headers).raise_for_status()

    # Each create hashes a password with argon2 (~0.1-0.2 s); a few at once.
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(create, range(count)))


def _seed_jobs(client: httpx.Client, token: str, count: int) -> tuple[str, str]:
    """An experiment with ``count`` finished runs; returns its id and one job's id."""
    headers = {"Authorization": f"Bearer {token}"}
    experiment = client.post("/api/experiments", json={"name": "bench"}, headers=headers)
    experiment.raise_for_status()
    experiment_id: str = experiment.json()["id"]
    job_ids = []
    for i in range(count):
        body = {
            "name": f"bench-{i}",
            "command": "true",
            "gpu_count": 0,
            "experiment_id": experiment_id,
        }
        response = client.post("/api/jobs", json=body, headers=headers)
        response.raise_for_status()
        job_ids.append(response.json()["id"])
    deadline = time.monotonic() + 120
    while True:
        page = client.get("/api/jobs?limit=200&status=completed", headers=headers).json()
        if page["total"] >= count:
            return experiment_id, job_ids[-1]
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {page['total']} of {count} seeded jobs completed")
        time.sleep(0.2)


def _cpu_s(proc: psutil.Process) -> float:
    try:
        times = proc.cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


def _postgres_cpu_s() -> float:
    """CPU of every ``postgres`` process (the server's backends do the queries' work)."""
    total = 0.0
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] == "postgres":
            total += _cpu_s(proc)
    return total


def _machine_busy_s() -> float:
    times = psutil.cpu_times()
    idle = times.idle + getattr(times, "iowait", 0.0)
    return float(sum(times) - idle)


@dataclass(frozen=True, slots=True)
class Measured:
    load: LoadResult
    server_cpu_s: float
    db_cpu_s: float
    other_cpu_s: float


def _measure(
    server: Server,
    path: str,
    headers: dict[str, str],
    args: argparse.Namespace,
    generator: str,
) -> Measured:
    url = server.base_url + path
    if args.quiet_wait > 0:
        wait_for_quiet(args.quiet_wait)
    if args.warmup > 0:
        run_load(
            url,
            generator=generator,
            connections=args.connections,
            duration_s=args.warmup,
            headers=headers,
            wrk_threads=args.wrk_threads,
        )
    proc = psutil.Process(server.pid)
    server_before, db_before, busy_before = _cpu_s(proc), _postgres_cpu_s(), _machine_busy_s()
    load = run_load(
        url,
        generator=generator,
        connections=args.connections,
        duration_s=args.duration,
        headers=headers,
        wrk_threads=args.wrk_threads,
    )
    server_cpu = _cpu_s(proc) - server_before
    db_cpu = _postgres_cpu_s() - db_before
    busy = _machine_busy_s() - busy_before
    other = max(0.0, busy - server_cpu - db_cpu - load.generator_cpu_s)
    return Measured(load, server_cpu, db_cpu, other)


def _row(backend: str, case: str, m: Measured) -> Result:
    load = m.load
    duration = load.duration_s or 1.0
    return Result(
        benchmark=NAME,
        case=f"{backend} {case}",
        metrics={
            "rps": load.rps,
            "p50_ms": load.p50_ms,
            "p99_ms": load.p99_ms,
            "errors": float(load.errors),
            "srv_cpu_%": 100 * m.server_cpu_s / duration,
            "srv_us/req": 1e6 * m.server_cpu_s / load.requests if load.requests else 0.0,
            "db_cpu_%": 100 * m.db_cpu_s / duration,
            "gen_cpu_%": 100 * load.generator_cpu_s / duration,
            "other_cpu_%": 100 * m.other_cpu_s / duration,
        },
        info={"generator": load.generator, "requests": str(load.requests)},
    )


def _bench_backend(
    backend: str, data_dir: Path, env: dict[str, str], args: argparse.Namespace, generator: str
) -> list[Result]:
    with running_server(data_dir, env=env) as server:
        with httpx.Client(base_url=server.base_url, timeout=60) as client:
            token = _login(client)
            _seed_users(client, token, args.users)
            experiment_id, job_id = _seed_jobs(client, token, args.jobs)
            auth = {"Authorization": f"Bearer {token}"}
            reads = {
                "users list": f"/api/users?limit={args.list_limit}",
                "jobs list": f"/api/jobs?limit={args.list_limit}",
                "job detail": f"/api/jobs/{job_id}",
                "runs list": f"/api/experiments/{experiment_id}/runs?limit={args.list_limit}",
            }
            for path in reads.values():
                client.get(path, headers=auth).raise_for_status()
            total = client.get(reads["users list"], headers=auth).json()["total"]
            if total != args.users + 1:
                raise RuntimeError(f"expected {args.users + 1} users, the list says {total}")

        health_m = _measure(server, "/healthz", {}, args, generator)
        read_m = {
            case: _measure(server, path, auth, args, generator) for case, path in reads.items()
        }

    health = health_m.load
    print(
        f"{NAME} {backend}: healthz {health.rps:.0f} rps p50 {health.p50_ms:.2f}ms "
        f"p99 {health.p99_ms:.2f}ms [{generator}]",
        flush=True,
    )
    results = [_row(backend, "healthz", health_m)]
    for case, m in read_m.items():
        load = m.load
        ratio = load.rps / health.rps if health.rps else 0.0
        met = ratio >= TARGET_RATIO and load.p99_ms < TARGET_P99_MS and not load.errors
        print(
            f"{NAME} {backend} {case}: {load.rps:.0f} rps p50 {load.p50_ms:.2f}ms "
            f"p99 {load.p99_ms:.2f}ms (target < {TARGET_P99_MS:.0f}) | ratio {ratio:.3f} "
            f"(target >= {TARGET_RATIO:.2f}) | {1e6 * m.server_cpu_s / max(1, load.requests):.0f} "
            f"us server CPU/request: {'met' if met else 'MISSED'}",
            flush=True,
        )
        results += [
            _row(backend, case, m),
            Result(
                benchmark=NAME,
                case=f"{backend} {case} ratio",
                metrics={
                    "ratio": ratio,
                    "target": TARGET_RATIO,
                    "p99_ms": load.p99_ms,
                    "target_p99_ms": TARGET_P99_MS,
                },
                info={"met": str(met).lower()},
            ),
        ]
    for m, case in ((health_m, "healthz"), *((m, c) for c, m in read_m.items())):
        if m.load.errors:
            print(f"  WARNING: {case} saw {m.load.errors} errors (non-2xx/3xx or socket)")
        if m.other_cpu_s / (m.load.duration_s or 1.0) > OTHER_CPU_WARNING:
            print(
                f"  WARNING: other processes used {m.other_cpu_s / m.load.duration_s:.2f} cores "
                f"during {case}; its figures are likely low"
            )
    return results


def run(args: argparse.Namespace) -> list[Result]:
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(backends) - set(BACKENDS)
    if unknown:
        raise ValueError(f"unknown backends: {sorted(unknown)}")
    generator = pick_generator(args.generator)
    print(
        f"{NAME}: load generator {generator}, {args.connections} connections, "
        f"{args.warmup:g}s warm-up + {args.duration:g}s per case",
        flush=True,
    )
    base_env = {
        # Far above what the benchmark can reach, so the limiter never answers 429.
        "SPARKTRAINER_RATE_LIMIT_PREMIUM_PER_MINUTE": "100000000",
        "SPARKTRAINER_RATE_LIMIT_STANDARD_PER_MINUTE": "100000000",
        # The seeded jobs need no GPU, but a machine without any registers no node to run
        # them on; a virtual inventory gives them one.
        "SPARKTRAINER_GPUS": "4",
    }
    if args.redis_url:
        base_env["SPARKTRAINER_REDIS_URL"] = args.redis_url

    results: list[Result] = []
    for backend in backends:
        with tempfile.TemporaryDirectory(prefix=f"bench-{backend}-") as tmp:
            data_dir = Path(tmp) / "data"
            if backend == "sqlite":
                results += _bench_backend(backend, data_dir, base_env, args, generator)
                continue
            if not postgres_reachable(args.postgres_url):
                print(f"{NAME}: PostgreSQL not reachable at {args.postgres_url}; skipped")
                continue
            with temporary_postgres_database(args.postgres_url) as url:
                env = {**base_env, "SPARKTRAINER_DATABASE_URL": url}
                results += _bench_backend(backend, data_dir, env, args, generator)
    return results
