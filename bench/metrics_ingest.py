"""Metrics ingestion and history reads, per backend, with an optional MLflow comparison.

(a) Batched ingestion, from a job to storage (target >= 50,000 points/s; a point is one
    stored metric value, i.e. one ``metric_points`` row):
    - file: a real job calls ``sparktrainer.log`` as fast as it can (``--ingest-cases``,
      default 200,000 points x 1 metric and 50,000 x 4 metrics); the rate is rows / (time
      all are committed - time the job began logging). Committed is when the job's
      ``metrics_seq`` in the database (written in the same transaction as the rows)
      reaches the last point, polled every 10 ms. The job's own logging rate is printed
      beside it (on 2 cores the job competes with the server for CPU);
    - HTTP: ``POST /api/jobs/{id}/metrics`` with the job's own token, ``--http-batch``
      (5,000) points per request, one client back to back, ``--http-points`` (200,000) in
      all; rows / (time all are committed - first request).
(b) Single points: ``--connections`` (16) concurrent HTTP clients (wrk, or the raw-asyncio
    client) each POSTing one point per request to a running job for ``--duration``;
    points/s = successful requests/s (target >= 1,000), and the same with one client.
(c) History reads: 100,000 stored points of one metric (``--history-points``), read whole
    with ``GET /api/jobs/{id}/metrics?name=loss`` (target < 0.5 s), and 1,000,000
    (``--history-large-points``) read with ``max_points=1000`` (target < 200 ms); p50 of
    ``--history-reads`` (5). The points are inserted directly into ``metric_points``
    (SQLAlchemy Core executemany on SQLite, COPY on PostgreSQL, then VACUUM ANALYZE as
    autovacuum would), with ``jobs.metrics_seq`` (and ``metric_summaries`` where the schema
    has it) kept consistent.
(d) MLflow, when an interpreter with mlflow is found (``--mlflow-python``, default
    ``$TMPDIR/mlflow-venv/bin/python``; see bench/README.md): ``mlflow server`` on the same
    backend (SQLite file, or a temporary PostgreSQL database), measured in the same run:
    ``log_batch`` points/s (batches of 1,000), ``log_metric`` points/s per client at
    ``--connections`` clients, ``get_metric_history`` of ``--mlflow-points`` (100,000)
    points; SparkTrainer's ratio against each. Without mlflow, earlier figures are printed
    labelled "reference (not measured in this run)".
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench._common import Result, stop_process, wait_for_quiet
from bench._jobs import (
    Backend,
    CpuMeter,
    add_shared_arguments,
    backend_server,
    backends_of,
    metrics_seq,
    stored_rows,
    submit,
    sync_engine,
    target_note,
    wait_file,
    wait_seq,
    wait_status,
    workload_command,
)
from bench._loadgen import pick_generator
from bench._post_load import run_post_load
from bench._server import free_port, temporary_postgres_database

NAME = "metrics_ingest"
DESCRIPTION = "metrics: batched ingestion pts/s, 16-client single points, history reads, MLflow"
TARGET_BATCHED = 50_000.0
TARGET_SINGLE = 1_000.0
TARGET_HISTORY_S = 0.5
TARGET_DOWNSAMPLED_S = 0.2
TARGET_VS_MLFLOW_BATCH = 10.0
MLFLOW_BATCH = 1_000
# MLflow figures measured on this kind of machine before (whose client count and MLflow version
# are not recorded); printed, labelled as such, only when mlflow cannot be run here.
MLFLOW_REFERENCE = {
    "sqlite": {"batch_points_per_s": 5_100.0, "single_per_client_per_s": 18.0, "history_s": 5.9},
    "postgres": {"batch_points_per_s": 3_700.0, "single_per_client_per_s": 18.0, "history_s": 5.9},
}
SCRIPT_DIR = Path(__file__).resolve().parent


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_shared_arguments(parser)
    group = parser.add_argument_group(NAME)
    group.add_argument(
        "--ingest-cases",
        default="200000x1,50000x4",
        help="file-ingestion jobs as POINTSxMETRICS, comma-separated (default 200000x1,50000x4)",
    )
    group.add_argument(
        "--race-points",
        type=int,
        default=50_000,
        help="points of the exit-race integrity check (50,000)",
    )
    group.add_argument(
        "--http-points", type=int, default=200_000, help="points POSTed in batches (200,000)"
    )
    group.add_argument("--http-batch", type=int, default=5_000, help="points per POST (5,000)")
    group.add_argument(
        "--history-points", type=int, default=100_000, help="points read whole (100,000)"
    )
    group.add_argument(
        "--history-large-points",
        type=int,
        default=1_000_000,
        help="points read with max_points=1000 (1,000,000)",
    )
    group.add_argument("--history-reads", type=int, default=5, help="reads per case (5)")
    group.add_argument(
        "--mlflow-python",
        default=os.environ.get(
            "SPARKTRAINER_BENCH_MLFLOW_PYTHON",
            str(Path(tempfile.gettempdir()) / "mlflow-venv" / "bin" / "python"),
        ),
        help="an interpreter that can import mlflow (default $TMPDIR/mlflow-venv/bin/python) "
        "[env: SPARKTRAINER_BENCH_MLFLOW_PYTHON]; 'none' skips the comparison",
    )
    group.add_argument(
        "--mlflow-points", type=int, default=100_000, help="MLflow log_batch/history points"
    )
    group.add_argument(
        "--mlflow-workers", default="4", help="mlflow server --workers (default 4, its own)"
    )


# --- (a) batched ingestion ------------------------------------------------------------------


def _parse_cases(text: str) -> list[tuple[int, int]]:
    cases = []
    for item in text.split(","):
        points, _, metrics = item.strip().partition("x")
        cases.append((int(points), int(metrics or 1)))
    return cases


def _read_json(path: Path, timeout_s: float = 300) -> dict[str, Any]:
    wait_file(path, timeout_s, poll_s=0.01)
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _file_ingest(
    b: Backend, engine: Any, points: int, metrics: int, args: argparse.Namespace
) -> Result:
    out = b.work_dir / f"burst-{points}x{metrics}.json"
    release = b.work_dir / f"release-{points}x{metrics}"
    if args.quiet_wait > 0:
        wait_for_quiet(args.quiet_wait)
    with CpuMeter(b.server.pid) as cpu:
        # The job stays alive until its points are stored: its exit would make the server
        # drain the file's rest while the poller may still be reading it (see _exit_race).
        command = workload_command("burst", out, points, metrics, release)
        job_id = submit(b, command, name="ingest-file")
        stored_at = wait_seq(engine, job_id, points, timeout_s=600)
    release.touch()
    report = _read_json(out)
    wait_status(b, job_id, ["completed"])
    rows = points * metrics
    stored = stored_rows(engine, job_id)
    if stored != rows:
        print(f"  WARNING: job {job_id}: {stored:,} rows stored, expected {rows:,}")
    elapsed = stored_at - report["started"]
    rate = rows / elapsed
    job_rate = rows / (report["ended"] - report["started"])
    case = f"{b.name} file {points // 1000}kx{metrics}"
    print(
        f"{NAME} {case}: {rate:,.0f} points/s stored "
        f"{target_note(rate, TARGET_BATCHED, lower_is_better=False)} | {rows:,} rows in "
        f"{elapsed:.2f}s; the job itself logged {job_rate:,.0f} points/s, all stored "
        f"{stored_at - report['ended']:.2f}s after its last log()",
        flush=True,
    )
    return Result(
        NAME,
        case,
        {
            "points_per_s": rate,
            "target": TARGET_BATCHED,
            "job_log_points_per_s": job_rate,
            "lag_after_last_s": stored_at - report["ended"],
            "extra_rows": float(stored - rows),
            **cpu.figures(),
        },
        {"rows": str(rows), "met": str(rate >= TARGET_BATCHED).lower()},
    )


def _exit_race(b: Backend, engine: Any, points: int) -> Result:
    """Integrity: a job that exits right after a burst must have each point stored once.

    At exit the engine drains the job's metrics file while the 5 ms poller may be in the
    middle of reading the same bytes; both then ingest them, under new seqs.
    """
    out = b.work_dir / f"race-{points}.json"
    job_id = submit(b, workload_command("burst", out, points, 1), name="ingest-exit")
    wait_status(b, job_id, ["completed"], timeout_s=600)
    time.sleep(0.5)  # the writer's last flush
    stored = stored_rows(engine, job_id)
    extra = stored - points
    print(
        f"{NAME} {b.name} exit race: {points:,} points logged by a job that exits at once, "
        f"{stored:,} rows stored: {extra:,} duplicates (expected 0)"
        + ("  <-- BUG: see the report" if extra else ""),
        flush=True,
    )
    return Result(
        NAME,
        f"{b.name} file exit race",
        {"duplicates": float(extra), "expected": 0.0},
        {"met": str(extra == 0).lower()},
    )


def _hold_job(b: Backend, label: str) -> tuple[str, str, Path]:
    """A running job that only waits; returns its id, its token and the file that stops it."""
    out = b.work_dir / f"hold-{label}.json"
    stop = b.work_dir / f"stop-{label}"
    job_id = submit(b, workload_command("hold", out, stop, 900), name=f"ingest-{label}")
    token = str(_read_json(out, 60)["token"])
    return job_id, token, stop


def _release(b: Backend, job_id: str, stop: Path) -> None:
    stop.touch()
    wait_status(b, job_id, ["completed"])


def _batch_bodies(total: int, batch: int, metric: str = "loss") -> list[bytes]:
    bodies = []
    for start in range(0, total, batch):
        points = [
            {"step": step, "metrics": {metric: step * 1e-6}}
            for step in range(start, min(total, start + batch))
        ]
        bodies.append(json.dumps({"points": points}, separators=(",", ":")).encode())
    return bodies


def _http_batch_ingest(b: Backend, engine: Any, args: argparse.Namespace) -> Result:
    job_id, token, stop = _hold_job(b, "http-batch")
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    bodies = _batch_bodies(args.http_points, args.http_batch)
    url = f"/api/jobs/{job_id}/metrics"
    if args.quiet_wait > 0:
        wait_for_quiet(args.quiet_wait)
    request_ms: list[float] = []
    with CpuMeter(b.server.pid) as cpu:
        started = time.time()
        for body in bodies:
            before = time.perf_counter()
            b.client.post(url, content=body, headers=headers).raise_for_status()
            request_ms.append(1000 * (time.perf_counter() - before))
        accepted_at = time.time()
        stored_at = wait_seq(engine, job_id, args.http_points)
    _release(b, job_id, stop)
    rate = args.http_points / (stored_at - started)
    accept_rate = args.http_points / (accepted_at - started)
    case = f"{b.name} http batch {args.http_batch}"
    print(
        f"{NAME} {case}: {rate:,.0f} points/s stored "
        f"{target_note(rate, TARGET_BATCHED, lower_is_better=False)} | accepted "
        f"{accept_rate:,.0f} points/s, POST p50 {statistics.median(request_ms):.0f} ms per "
        f"{args.http_batch:,} points",
        flush=True,
    )
    return Result(
        NAME,
        case,
        {
            "points_per_s": rate,
            "target": TARGET_BATCHED,
            "accepted_points_per_s": accept_rate,
            "post_p50_ms": statistics.median(request_ms),
            **cpu.figures(),
        },
        {"rows": str(args.http_points), "met": str(rate >= TARGET_BATCHED).lower()},
    )


# --- (b) single points from concurrent clients -----------------------------------------------


def _single_points(
    b: Backend, engine: Any, args: argparse.Namespace, generator: str
) -> list[Result]:
    job_id, token, stop = _hold_job(b, "single")
    url = f"{b.server.base_url}/api/jobs/{job_id}/metrics"
    body = b'{"points":[{"metrics":{"loss":0.5}}]}'
    headers = {"Authorization": f"Bearer {token}"}
    results = []
    for connections in dict.fromkeys((args.connections, 1)):
        if args.warmup > 0:
            run_post_load(
                url,
                body,
                generator=generator,
                connections=connections,
                duration_s=args.warmup,
                headers=headers,
            )
        if args.quiet_wait > 0:
            wait_for_quiet(args.quiet_wait)
        with CpuMeter(b.server.pid) as cpu:
            load = run_post_load(
                url,
                body,
                generator=generator,
                connections=connections,
                duration_s=args.duration,
                headers=headers,
            )
        case = f"{b.name} single x{connections}"
        per_client = load.rps / connections
        note = (
            target_note(load.rps, TARGET_SINGLE, lower_is_better=False)
            if connections == args.connections
            else "(one client: per-client baseline)"
        )
        print(
            f"{NAME} {case}: {load.rps:,.0f} points/s {note} | {per_client:,.0f} per client, "
            f"p50 {load.p50_ms:.1f} ms p99 {load.p99_ms:.1f} ms, {load.errors} errors "
            f"[{load.generator}]",
            flush=True,
        )
        figures = {
            "points_per_s": load.rps,
            "per_client_points_per_s": per_client,
            "p50_ms": load.p50_ms,
            "p99_ms": load.p99_ms,
            "errors": float(load.errors),
            **cpu.figures(),
            "srv_us/req": 1e6 * cpu.server_s / load.requests if load.requests else 0.0,
        }
        if connections == args.connections:
            figures["target"] = TARGET_SINGLE
        results.append(Result(NAME, case, figures, {"generator": load.generator}))
    time.sleep(0.2)
    ingested = metrics_seq(engine, job_id)
    _release(b, job_id, stop)
    stored = stored_rows(engine, job_id)
    if stored != metrics_seq(engine, job_id) or stored < ingested:
        raise RuntimeError(f"single points: {stored} rows stored, seq says {ingested}")
    return results


# --- (c) history reads ----------------------------------------------------------------------


def _insert_history(b: Backend, engine: Any, job_id: str, count: int) -> float:
    """Inserts ``count`` points of ``loss`` for a finished job; returns seconds taken."""
    from sqlalchemy import inspect, text

    started = time.perf_counter()
    wall0 = time.time() - count * 0.01

    def row(i: int) -> tuple[str, int, str, int, float, float]:
        value = 1.0 / (1.0 + i / 1000.0) + (i % 97) * 1e-4
        return (job_id, i + 1, "loss", i, value, wall0 + i * 0.01)

    if b.name == "postgres":
        with engine.begin() as conn:
            raw = conn.connection.driver_connection
            with (
                raw.cursor() as cursor,
                cursor.copy(
                    "COPY metric_points (job_id, seq, name, step, value, wall_time) FROM STDIN"
                ) as copy,
            ):
                for i in range(count):
                    copy.write_row(row(i))
    else:
        from sqlalchemy import insert

        from spark_trainer.models import MetricPoint

        keys = ("job_id", "seq", "name", "step", "value", "wall_time")
        with engine.begin() as conn:
            for start in range(0, count, 50_000):
                conn.execute(
                    insert(MetricPoint.__table__),  # type: ignore[arg-type]
                    [
                        dict(zip(keys, row(i), strict=True))
                        for i in range(start, min(count, start + 50_000))
                    ],
                )
    values = [row(i)[4] for i in range(count)]
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE jobs SET metrics_seq = :seq WHERE id = :id"), {"seq": count, "id": job_id}
        )
        if inspect(conn).has_table("metric_summaries"):
            conn.execute(
                text(
                    "INSERT INTO metric_summaries (job_id, name, latest, latest_step, "
                    "latest_seq, min, max, count) VALUES (:job_id, 'loss', :latest, "
                    ":latest_step, :seq, :min, :max, :count)"
                ),
                {
                    "job_id": job_id,
                    "latest": values[-1],
                    "latest_step": count - 1,
                    "seq": count,
                    "min": min(values),
                    "max": max(values),
                    "count": count,
                },
            )
        if inspect(conn).has_table("metric_rollups"):
            # What ingestion maintains as it stores points (see metrics/store.py).
            conn.execute(
                text(
                    "INSERT INTO metric_rollups (job_id, name, block, min_step, max_step, "
                    "min_value, max_value, min_wall, max_wall, count) SELECT job_id, name, "
                    "step / 128, min(step), max(step), min(value), max(value), min(wall_time), "
                    "max(wall_time), count(*) FROM metric_points WHERE job_id = :id "
                    "GROUP BY job_id, name, step / 128"
                ),
                {"id": job_id},
            )
    if b.name == "postgres":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE metric_points"))
            if inspect(conn).has_table("metric_rollups"):
                conn.execute(text("VACUUM ANALYZE metric_rollups"))
    return time.perf_counter() - started


def _timed_reads(b: Backend, path: str, reads: int) -> tuple[list[float], dict[str, Any]]:
    times = []
    data: dict[str, Any] = {}
    for _ in range(reads):
        before = time.perf_counter()
        response = b.client.get(path, headers=b.auth)
        times.append(time.perf_counter() - before)
        response.raise_for_status()
        data = response.json()
    return times, data


def _history(b: Backend, engine: Any, args: argparse.Namespace) -> list[Result]:
    results = []
    cases = (
        (args.history_points, None, TARGET_HISTORY_S),
        (args.history_large_points, 1000, TARGET_DOWNSAMPLED_S),
    )
    for count, max_points, target in cases:
        job_id = submit(b, "true", name=f"history-{count}")
        wait_status(b, job_id, ["completed"])
        insert_s = _insert_history(b, engine, job_id, count)
        path = f"/api/jobs/{job_id}/metrics?name=loss"
        if max_points is not None:
            path += f"&max_points={max_points}"
        b.client.get(path, headers=b.auth).raise_for_status()  # warm the caches once
        if args.quiet_wait > 0:
            wait_for_quiet(args.quiet_wait)
        with CpuMeter(b.server.pid) as cpu:
            times, data = _timed_reads(b, path, args.history_reads)
        series = data["metrics"][0]
        expected = count if max_points is None else None
        if series["count"] != count or (expected is not None and len(series["values"]) != count):
            raise RuntimeError(f"history read: count {series['count']}, expected {count}")
        if max_points is not None and len(series["values"]) > max_points:
            raise RuntimeError(f"downsampled to {len(series['values'])} > {max_points} points")
        p50 = statistics.median(times)
        label = f"{count // 1000}k" if count < 1_000_000 else f"{count / 1e6:g}M"
        case = f"{b.name} read {label}" + (f" max {max_points}" if max_points else "")
        note = target_note(p50, target, lower_is_better=True)
        print(
            f"{NAME} {case}: p50 {p50 * 1000:.0f} ms {note}"
            f" | min {min(times) * 1000:.0f} ms, {len(series['values']):,} values returned "
            f"(inserted in {insert_s:.1f}s)",
            flush=True,
        )
        results.append(
            Result(
                NAME,
                case,
                {
                    "read_p50_s": p50,
                    "read_min_s": min(times),
                    "target_s": target,
                    "returned": float(len(series["values"])),
                    **cpu.figures(),
                },
                {"met": str(p50 < target).lower()},
            )
        )
    return results


# --- (d) MLflow -----------------------------------------------------------------------------


def _mlflow_python(args: argparse.Namespace) -> Path | None:
    if str(args.mlflow_python).lower() == "none":
        return None
    python = Path(args.mlflow_python)
    if not python.exists():
        return None
    probe = subprocess.run(
        [str(python), "-c", "import mlflow"], capture_output=True, timeout=120, check=False
    )
    return python if probe.returncode == 0 else None


class MlflowDidNotStart(RuntimeError):
    """The comparison's peer never answered: nothing of it was measured."""


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=2) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise MlflowDidNotStart(f"mlflow server exited with {proc.returncode}")
            try:
                if client.get(url).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.25)
    raise MlflowDidNotStart(f"mlflow server not healthy after {timeout_s:.0f}s")


def _run_mlflow(
    python: Path, store_uri: str, tmp: Path, args: argparse.Namespace
) -> dict[str, float]:
    port = free_port()
    log_path = tmp / "mlflow-server.log"
    cmd = [
        str(python.with_name("mlflow")),
        "server",
        "--backend-store-uri",
        store_uri,
        "--default-artifact-root",
        (tmp / "artifacts").as_uri(),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(args.mlflow_workers),
    ]
    with log_path.open("wb") as log:
        try:
            # Its own session: the server forks workers, and all of them go at the end.
            proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        except OSError as exc:
            raise MlflowDidNotStart(f"mlflow server could not be started: {exc}") from exc
    try:
        _wait_http(f"http://127.0.0.1:{port}/health", proc, 180)
        if args.quiet_wait > 0:
            wait_for_quiet(args.quiet_wait)
        client = subprocess.run(
            [
                str(python),
                str(SCRIPT_DIR / "_mlflow_client.py"),
                f"http://127.0.0.1:{port}",
                str(args.mlflow_points),
                str(MLFLOW_BATCH),
                str(args.connections),
                str(args.duration),
            ],
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
    finally:
        stop_process(proc, grace_s=20)
    if client.returncode != 0:
        tail = log_path.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"mlflow client failed: {client.stderr[-2000:]}\nserver log:\n{tail}")
    for line in client.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            figures: dict[str, float] = json.loads(line.removeprefix("BENCH_JSON "))
            return figures
    raise RuntimeError(f"mlflow client printed no figures: {client.stdout[-2000:]}")


def _mlflow(backend: str, args: argparse.Namespace, ours: dict[str, float]) -> Result:
    python = _mlflow_python(args)
    measured = python is not None
    if python is None:
        print(
            f"{NAME}: mlflow is not importable by {args.mlflow_python} (see bench/README.md to "
            "install it in a separate venv); MLflow figures below are a reference (not "
            "measured in this run)",
            flush=True,
        )
        theirs = dict(MLFLOW_REFERENCE[backend])
    else:
        with tempfile.TemporaryDirectory(prefix=f"bench-mlflow-{backend}-") as tmp_name:
            tmp = Path(tmp_name)
            try:
                if backend == "sqlite":
                    theirs = _run_mlflow(python, f"sqlite:///{tmp / 'mlflow.db'}", tmp, args)
                else:
                    with temporary_postgres_database(
                        args.postgres_url, prefix="mlflow_bench"
                    ) as url:
                        theirs = _run_mlflow(python, url, tmp, args)
            except MlflowDidNotStart as exc:
                # No figure of MLflow's, so no ratio: a reference figure would pass for a
                # measurement of this run.
                log = (tmp / "mlflow-server.log").read_text(errors="replace")[-1500:]
                print(
                    f"{NAME} {backend} vs MLflow: failed, not measured ({exc}); server log:\n{log}",
                    flush=True,
                )
                return Result(
                    NAME, f"{backend} vs mlflow", {}, {"mlflow": f"failed, not measured: {exc}"}
                )
    label = "measured" if measured else "reference (not measured in this run)"
    batch = ours["http_batch_points_per_s"] / theirs["batch_points_per_s"]
    file_ratio = ours["file_points_per_s"] / theirs["batch_points_per_s"]
    single = ours["single_per_client_per_s"] / theirs["single_per_client_per_s"]
    one = theirs.get("single1_points_per_s", math.nan)
    single1 = ours["single1_points_per_s"] / one
    history = theirs["history_s"] / ours["history_s"] if ours["history_s"] else math.nan
    their_points = theirs.get("history_points", 100_000)
    if their_points != ours["history_points"]:
        print(
            f"  NOTE: history sizes differ (MLflow {their_points:,.0f}, SparkTrainer "
            f"{ours['history_points']:,.0f} points); the ratio compares unlike reads"
        )
    for what, ratio in (("HTTP batches", batch), ("sparktrainer.log, 1 metric", file_ratio)):
        print(
            f"{NAME} {backend} batched ingestion vs MLflow log_batch ({label}), {what}: "
            f"x{ratio:.1f} (target >= x{TARGET_VS_MLFLOW_BATCH:.0f}): "
            f"{'met' if ratio >= TARGET_VS_MLFLOW_BATCH else 'MISSED'}",
            flush=True,
        )
    print(
        f"{NAME} {backend} vs MLflow ({label}): log_batch {theirs['batch_points_per_s']:,.0f} "
        f"points/s → SparkTrainer HTTP batches x{batch:.1f}, sparktrainer.log x{file_ratio:.1f} | "
        f"log_metric {theirs['single_per_client_per_s']:,.1f} points/s per client at "
        f"{args.connections} clients → SparkTrainer x{single:.1f}; one client {one:,.1f} "
        f"points/s → x{single1:.1f} | get_metric_history {their_points:,.0f} points "
        f"{theirs['history_s']:.2f}s → SparkTrainer {history:.1f}x faster",
        flush=True,
    )
    return Result(
        NAME,
        f"{backend} vs mlflow",
        {
            "mlflow_batch_points_per_s": theirs["batch_points_per_s"],
            "mlflow_single_per_client_per_s": theirs["single_per_client_per_s"],
            "mlflow_single1_points_per_s": one,
            "mlflow_history_s": theirs["history_s"],
            "ratio_http_batch": batch,
            "ratio_file": file_ratio,
            "ratio_single_per_client": single,
            "ratio_single_one_client": single1,
            "ratio_history_speedup": history,
        },
        {
            "mlflow": label,
            "mlflow_workers": str(args.mlflow_workers),
            "met_batch_x10": str(min(batch, file_ratio) >= TARGET_VS_MLFLOW_BATCH).lower(),
        },
    )


# --- driver -----------------------------------------------------------------------------------


def _bench_backend(backend: str, args: argparse.Namespace, generator: str) -> list[Result]:
    results: list[Result] = []
    with backend_server(backend, args, NAME) as b:
        if b is None:
            return []
        engine = sync_engine(b.database_url)
        try:
            file_results = [
                _file_ingest(b, engine, points, metrics, args)
                for points, metrics in _parse_cases(args.ingest_cases)
            ]
            file_results.append(_exit_race(b, engine, args.race_points))
            http_batch = _http_batch_ingest(b, engine, args)
            single = _single_points(b, engine, args, generator)
            history = _history(b, engine, args)
        finally:
            engine.dispose()
    results += [*file_results, http_batch, *single, *history]
    ours = {
        # The honest case, one metric per point (a row per log() call), not the best one.
        "file_points_per_s": next(
            (r.metrics["points_per_s"] for r in file_results if r.case.endswith("x1")),
            min(r.metrics.get("points_per_s", math.inf) for r in file_results),
        ),
        "http_batch_points_per_s": http_batch.metrics["points_per_s"],
        "single_per_client_per_s": single[0].metrics["per_client_points_per_s"],
        "single1_points_per_s": single[-1].metrics["points_per_s"],
        "history_s": history[0].metrics["read_p50_s"],
        "history_points": float(args.history_points),
    }
    results.append(_mlflow(backend, args, ours))
    return results


def run(args: argparse.Namespace) -> list[Result]:
    generator = pick_generator(args.generator)
    results: list[Result] = []
    for backend in backends_of(args):
        results += _bench_backend(backend, args, generator)
    return results
