"""API overhead: an authenticated list request against the cheapest route, per backend.

For SQLite (temporary data dir) and PostgreSQL (temporary database, dropped after),
starts the real server (``sparktrainer serve``), logs in as admin, seeds users, then
drives closed-loop load at N connections: ``GET /healthz`` (routing + middleware floor),
then ``GET /api/users?limit=20`` with a Bearer token (auth, rate limiter, session, two
queries, serialization). The ratio list_rps / healthz_rps is the share of the floor an
ordinary authenticated read keeps; the target is >= 0.30.
"""

from __future__ import annotations

import argparse
import os
import tempfile
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
DESCRIPTION = "healthz vs authenticated GET /api/users: rps, p50/p99, ratio (SQLite, PostgreSQL)"
TARGET_RATIO = 0.30
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
        "--list-limit", type=int, default=20, help="page size of the list request (default 20)"
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
            auth = {"Authorization": f"Bearer {token}"}
            list_path = f"/api/users?limit={args.list_limit}"
            check = client.get(list_path, headers=auth)
            check.raise_for_status()
            total = check.json()["total"]
            if total != args.users + 1:
                raise RuntimeError(f"expected {args.users + 1} users, the list says {total}")

        health_m = _measure(server, "/healthz", {}, args, generator)
        listing_m = _measure(server, list_path, auth, args, generator)

    health, listing = health_m.load, listing_m.load
    ratio = listing.rps / health.rps if health.rps else 0.0
    print(
        f"{NAME} {backend}: "
        f"healthz {health.rps:.0f} rps p50 {health.p50_ms:.2f}ms p99 {health.p99_ms:.2f}ms | "
        f"list {listing.rps:.0f} rps p50 {listing.p50_ms:.2f}ms p99 {listing.p99_ms:.2f}ms | "
        f"ratio {ratio:.3f} (target >= {TARGET_RATIO:.2f}) [{generator}]",
        flush=True,
    )
    for m, case in ((health_m, "healthz"), (listing_m, "list")):
        if m.load.errors:
            print(f"  WARNING: {case} saw {m.load.errors} errors (non-2xx/3xx or socket)")
        if m.other_cpu_s / (m.load.duration_s or 1.0) > OTHER_CPU_WARNING:
            print(
                f"  WARNING: other processes used {m.other_cpu_s / m.load.duration_s:.2f} cores "
                f"during {case}; its figures are likely low"
            )
    return [
        _row(backend, "healthz", health_m),
        _row(backend, "list", listing_m),
        Result(
            benchmark=NAME,
            case=f"{backend} ratio",
            metrics={"ratio": ratio, "target": TARGET_RATIO},
            info={"met": str(ratio >= TARGET_RATIO).lower()},
        ),
    ]


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
