"""Job dispatch: submit → process started, and one scheduler pass over a deep queue.

(a) Dispatch latency, per backend. The real server (``SPARKTRAINER_GPUS=64``) gets jobs
one at a time, each only after the previous one has ended, so the server is idle at each
submit. A job's command is ``date +%s.%N > FILE`` (run by ``/bin/sh -c`` under the shim):
the time written from inside the job, minus the client's ``time.time()`` taken just before
the POST, is the dispatch latency (one clock: same machine). Reported: p50/p99 of that
(target p50 < 100 ms), of the POST itself, and the split at the job's recorded
``pending → running`` event (the server's clock): submit → placed (request + scheduler
wake-up + pass) and placed → started (job dir, process spawn through the shim). As
context, the cost of spawning a bare Python process here, and of the executor's own spawn
chain (``python -I -S -c SHIM`` → ``/bin/sh -c 'date …'``) outside the server.

(b) Scheduler pass time with ``--sched-pending`` (10,000) pending jobs, in-process: the
schema is created with the server's migrations, a running job holds 6 of 8 virtual GPUs,
and the pending jobs (mixed priorities, 3-8 GPUs, submitted over the past hour so some have
waited long enough to reserve the node) are inserted with SQLAlchemy Core. Then
``AppContext.build(settings).jobs.run_pass()`` is timed: the first pass (it writes every
job's ``pending_reason``) and the p50 of the next ``--sched-passes`` (nothing changes).
"""

from __future__ import annotations

import argparse
import os
import random
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil

from bench._common import Result, stop_process, wait_for_quiet
from bench._jobs import (
    Backend,
    CpuMeter,
    add_shared_arguments,
    backend_server,
    backends_of,
    database_for,
    percentile,
    target_note,
    wait_file,
    wait_status,
)
from bench._server import SECRET_KEY

NAME = "job_dispatch"
DESCRIPTION = "submit → process started p50/p99 (idle server); scheduler pass over 10k pending"
TARGET_P50_MS = 100.0
SCHED_GPUS = 8
SCHED_HELD = 6  # GPUs a running job holds, so every pending job (3-8 GPUs) has to wait


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_shared_arguments(parser)
    group = parser.add_argument_group(NAME)
    group.add_argument(
        "--dispatch-jobs", type=int, default=50, help="jobs measured one at a time (default 50)"
    )
    group.add_argument(
        "--sched-pending", type=int, default=10_000, help="pending jobs for the pass (10,000)"
    )
    group.add_argument(
        "--sched-passes", type=int, default=10, help="steady-state passes timed (default 10)"
    )


# --- context: what a process spawn costs here ----------------------------------------------


def _read_stamp(path: Path, timeout_s: float = 30) -> float:
    wait_file(path, timeout_s)
    deadline = time.monotonic() + timeout_s
    while True:
        text = path.read_text().strip()
        if text:
            return float(text)
        if time.monotonic() > deadline:
            raise RuntimeError(f"{path} stayed empty")
        time.sleep(0.001)


def _spawn_costs(work: Path, rounds: int = 20) -> dict[str, float]:
    """p50 ms of: a bare ``python -c pass`` run to exit; the shim chain to ``date``'s stamp."""
    from spark_trainer.executor.local import SHIM_SOURCE

    bare: list[float] = []
    isolated: list[float] = []
    chain: list[float] = []
    for i in range(rounds):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        bare.append(1000 * (time.perf_counter() - started))
        started = time.perf_counter()
        subprocess.run([sys.executable, "-I", "-S", "-c", "pass"], check=True)
        isolated.append(1000 * (time.perf_counter() - started))
        stamp = work / f"spawn-{i}"
        exit_file = work / f"spawn-{i}.exit"
        command = f"date +%s.%N > {shlex.quote(str(stamp))}"
        barrier, barrier_end = os.pipe()
        before = time.time()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-I",
                "-S",
                "-c",
                SHIM_SOURCE,
                str(exit_file),
                command,
                str(work),
                str(barrier_end),
            ],
            start_new_session=True,
            pass_fds=(barrier_end,),
        )
        os.close(barrier_end)
        os.close(barrier)
        try:
            chain.append(1000 * (_read_stamp(stamp) - before))
            proc.wait()
        finally:
            stop_process(proc)  # only reaps, unless the stamp never came
    return {
        "python_ms": statistics.median(bare),
        "python_isolated_ms": statistics.median(isolated),
        "shim_chain_ms": statistics.median(chain),
    }


# --- (a) dispatch latency ---------------------------------------------------------------------


def _event_time(detail: dict[str, Any], to_status: str) -> float | None:
    for event in detail.get("events", []):
        if event["to_status"] == to_status:
            return datetime.fromisoformat(event["at"].replace("Z", "+00:00")).timestamp()
    return None


def _dispatch_one(b: Backend, index: int) -> tuple[float, float, float | None]:
    """(dispatch ms, POST ms, placed ms) of one job on an idle server."""
    stamp = b.work_dir / f"started-{index}"
    command = f"date +%s.%N > {shlex.quote(str(stamp))}"
    body = {"name": f"dispatch-{index}", "command": command, "gpu_count": 1}
    submitted = time.time()
    before = time.perf_counter()
    response = b.client.post("/api/jobs", json=body, headers=b.auth)
    post_ms = 1000 * (time.perf_counter() - before)
    response.raise_for_status()
    job_id = response.json()["id"]
    started = _read_stamp(stamp)
    detail = wait_status(b, job_id, ["completed"], poll_s=0.01)
    placed = _event_time(detail, "running")
    placed_ms = None if placed is None else 1000 * (placed - submitted)
    return 1000 * (started - submitted), post_ms, placed_ms


def _bench_dispatch(backend: str, args: argparse.Namespace, spawn: dict[str, float]) -> Result:
    with backend_server(backend, args, NAME) as b:
        if b is None:
            return Result(NAME, f"{backend} dispatch", {}, {"skipped": "postgres unreachable"})
        for i in range(3):  # warm-up: imports, pools, first job directory
            _dispatch_one(b, -1 - i)
        if args.quiet_wait > 0:
            wait_for_quiet(args.quiet_wait)
        dispatch: list[float] = []
        posts: list[float] = []
        placed: list[float] = []
        with CpuMeter(b.server.pid) as cpu:
            for i in range(args.dispatch_jobs):
                total, post, place = _dispatch_one(b, i)
                dispatch.append(total)
                posts.append(post)
                if place is not None:
                    placed.append(place)
                time.sleep(0.05)  # idle again: the job's exit has been recorded
        launch = [d - p for d, p in zip(dispatch, placed, strict=False)]
        p50 = percentile(dispatch, 50)
        figures = {
            "dispatch_p50_ms": p50,
            "dispatch_p99_ms": percentile(dispatch, 99),
            "post_p50_ms": percentile(posts, 50),
            "post_p99_ms": percentile(posts, 99),
            "placed_p50_ms": percentile(placed, 50),
            "launch_p50_ms": percentile(launch, 50),
            "target_p50_ms": TARGET_P50_MS,
            **{f"spawn_{k}": v for k, v in spawn.items()},
            **cpu.figures(),
        }
        print(
            f"{NAME} {backend}: dispatch p50 {p50:.1f} ms p99 {figures['dispatch_p99_ms']:.1f} ms "
            f"{target_note(p50, TARGET_P50_MS, lower_is_better=True)} | POST p50 "
            f"{figures['post_p50_ms']:.1f} ms p99 {figures['post_p99_ms']:.1f} ms | submit→placed "
            f"p50 {figures['placed_p50_ms']:.1f} ms, placed→started p50 "
            f"{figures['launch_p50_ms']:.1f} ms | {len(dispatch)} jobs",
            flush=True,
        )
        return Result(
            NAME,
            f"{backend} dispatch",
            figures,
            {"met": str(p50 < TARGET_P50_MS).lower(), "jobs": str(len(dispatch))},
        )


# --- (b) scheduler pass ---------------------------------------------------------------------


def _seed_queue(url: str, settings: Any, pending: int) -> None:
    from sqlalchemy import create_engine, insert

    from spark_trainer.db.migrate import upgrade_to_head
    from spark_trainer.models import GpuAllocation, Job, User

    engine = create_engine(url)
    try:
        upgrade_to_head(engine)
        now = datetime.now(UTC)
        rng = random.Random(42)
        with engine.begin() as conn:
            conn.execute(
                insert(User.__table__),  # type: ignore[arg-type]
                [
                    {
                        "id": "user-bench",
                        "username": "bench",
                        "password_hash": "x",
                        "role": "user",
                        "tier": "standard",
                        "is_active": True,
                        "created_at": now,
                    }
                ],
            )
            base = {
                "owner_id": "user-bench",
                "command": "true",
                "environment": {},
                "metrics_seq": 0,
                "metrics_offset": 0,
            }
            conn.execute(
                insert(Job.__table__),  # type: ignore[arg-type]
                [
                    {
                        **base,
                        "id": "job-holder",
                        "name": "holder",
                        # A live process (this one), so the engine adopts it as running.
                        "job_dir": str(settings.data_dir / "jobs" / "job-holder"),
                        "handle": {
                            "executor": "local",
                            "data": {
                                "pid": os.getpid(),
                                "started_at": psutil.Process().create_time(),
                            },
                        },
                        "gpu_count": SCHED_HELD,
                        "priority": 0,
                        "status": "running",
                        "node": settings.node_name,
                        "gpus": list(range(SCHED_HELD)),
                        "created_at": now - timedelta(hours=2),
                        "started_at": now - timedelta(hours=2),
                    }
                ],
            )
            conn.execute(
                insert(GpuAllocation.__table__),  # type: ignore[arg-type]
                [
                    {
                        "node": settings.node_name,
                        "gpu_index": gpu,
                        "job_id": "job-holder",
                        "allocated_at": now - timedelta(hours=2),
                    }
                    for gpu in range(SCHED_HELD)
                ],
            )
            rows = [
                {
                    **base,
                    "id": f"job-{i:016x}",
                    "name": f"queued-{i}",
                    "gpu_count": rng.randint(SCHED_GPUS - SCHED_HELD + 1, SCHED_GPUS),
                    "priority": rng.choice((0, 0, 0, 1, 5, 10, -5)),
                    "status": "pending",
                    "gpus": [],
                    # Spread over the past hour: the oldest have waited long enough to reserve.
                    "created_at": now - timedelta(seconds=rng.uniform(0, 3600)),
                }
                for i in range(pending)
            ]
            for start in range(0, len(rows), 2000):
                conn.execute(insert(Job.__table__), rows[start : start + 2000])  # type: ignore[arg-type]
    finally:
        engine.dispose()


def _bench_scheduler(backend: str, args: argparse.Namespace) -> Result:
    from spark_trainer.context import AppContext
    from spark_trainer.settings import Settings

    with tempfile.TemporaryDirectory(prefix=f"bench-{NAME}-sched-") as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        with database_for(backend, args, data_dir) as url:
            if url is None:
                print(f"{NAME}: PostgreSQL not reachable at {args.postgres_url}; skipped")
                return Result(NAME, f"{backend} sched", {}, {"skipped": "postgres unreachable"})
            settings = Settings(
                data_dir=data_dir,
                database_url=None if backend == "sqlite" else url,
                gpus=SCHED_GPUS,
                secret_key=SECRET_KEY,  # type: ignore[arg-type]
            )
            seeded = time.perf_counter()
            _seed_queue(settings.effective_database_url, settings, args.sched_pending)
            seed_s = time.perf_counter() - seeded
            ctx = AppContext.build(settings)
            try:
                if args.quiet_wait > 0:
                    wait_for_quiet(args.quiet_wait)
                started = time.perf_counter()
                launched = ctx.jobs.run_pass()
                first_ms = 1000 * (time.perf_counter() - started)
                passes: list[float] = []
                for _ in range(args.sched_passes):
                    started = time.perf_counter()
                    launched += ctx.jobs.run_pass()
                    passes.append(1000 * (time.perf_counter() - started))
                with ctx.engine.connect() as conn:
                    from sqlalchemy import func, select

                    from spark_trainer.models import Job

                    with_reason = conn.scalar(
                        select(func.count()).where(
                            Job.status == "pending", Job.pending_reason.is_not(None)
                        )
                    )
            finally:
                ctx.close()
    if launched:
        raise RuntimeError(f"the pass started {launched} jobs; none should fit")
    figures = {
        "pending": float(args.sched_pending),
        "first_pass_ms": first_ms,
        "pass_p50_ms": statistics.median(passes),
        "pass_max_ms": max(passes),
        "seed_s": seed_s,
    }
    print(
        f"{NAME} {backend}: scheduler pass over {args.sched_pending:,} pending: first "
        f"{first_ms:.0f} ms (writes {with_reason:,} pending reasons), steady p50 "
        f"{figures['pass_p50_ms']:.0f} ms max {figures['pass_max_ms']:.0f} ms "
        f"(no target given; the scheduler passes on every submit/exit and once a second)",
        flush=True,
    )
    return Result(NAME, f"{backend} sched", figures, {"with_reason": str(with_reason)})


def run(args: argparse.Namespace) -> list[Result]:
    backends = backends_of(args)
    with tempfile.TemporaryDirectory(prefix=f"bench-{NAME}-spawn-") as tmp:
        spawn = _spawn_costs(Path(tmp))
    print(
        f"{NAME}: spawning here: python -c pass {spawn['python_ms']:.1f} ms, python -I -S -c "
        f"pass {spawn['python_isolated_ms']:.1f} ms, shim → sh → date stamp "
        f"{spawn['shim_chain_ms']:.1f} ms (p50 of 20)",
        flush=True,
    )
    results: list[Result] = []
    for backend in backends:
        results.append(_bench_dispatch(backend, args, spawn))
    for backend in backends:
        results.append(_bench_scheduler(backend, args))
    return [r for r in results if r.metrics]
