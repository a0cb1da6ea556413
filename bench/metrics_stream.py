"""Live metrics streams: ``sparktrainer.log`` in a job → SSE / WebSocket subscriber latency.

Per backend, for each case of ``--stream-cases`` (default ``sse:1,sse:100,sse:500,ws:100``):

1. a job starts (``bench/_job_workload.py paced``) and waits for a go signal;
2. N subscribers connect to ``GET /api/jobs/{id}/stream?access_token=…`` (or
   ``/ws/jobs/{id}/stream?batch=true``, as the TypeScript SDK subscribes; ``ws1`` without
   ``batch``: one message per point), in ``bench/_stream_client.py`` processes (raw asyncio, up to
   ``--stream-subs-per-proc`` connections each, so the clients cost little CPU on 2 cores);
3. once all have their response headers (plus 1 s for them to be subscribed), the job logs
   ``--stream-points`` (5,000) points at ``--stream-rate`` (1,000/s), each carrying its own
   send time as the metric ``t_sent`` (the stream message has the metric values and the step
   only);
4. each subscriber records arrival time - ``t_sent`` per point, and which steps it got;
   it stops at the stream's ``end`` event.

Reported: latency p50/p99/max over every (subscriber, point), and completeness: the
smallest fraction of the points any subscriber received (must be 100 %), plus repeats.
Targets (``TARGETS_P99_MS``): SSE x100 p99 < 25 ms, SSE x500 p99 < 100 ms, WebSocket x100
p99 < 50 ms; and every subscriber gets every point.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import subprocess
import sys
import time
from array import array
from pathlib import Path

import httpx

from bench._common import Result, stop_process, wait_for_quiet
from bench._jobs import (
    Backend,
    CpuMeter,
    add_shared_arguments,
    backend_server,
    backends_of,
    percentile,
    submit,
    target_note,
    wait_status,
    workload_command,
)

NAME = "metrics_stream"
DESCRIPTION = "log() → SSE/WebSocket subscriber latency p50/p99 at 1/100/500 subscribers"
# p99 latency targets by (protocol, subscribers).
TARGETS_P99_MS = {("sse", 100): 25.0, ("sse", 500): 100.0, ("ws", 100): 50.0}
ROOT = Path(__file__).resolve().parent.parent


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_shared_arguments(parser)
    group = parser.add_argument_group(NAME)
    group.add_argument(
        "--stream-cases",
        default="sse:1,sse:100,sse:500,ws:100",
        help="PROTOCOL:SUBSCRIBERS, comma-separated (default sse:1,sse:100,sse:500,ws:100); "
        "ws subscribes with ?batch=true as the TypeScript SDK does, ws1 gets one message per point",
    )
    group.add_argument("--stream-rate", type=float, default=1000.0, help="points/s (1,000)")
    group.add_argument("--stream-points", type=int, default=5000, help="points logged (5,000)")
    group.add_argument(
        "--stream-subs-per-proc",
        type=int,
        default=250,
        help="subscribers per client process (default 250)",
    )


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _subscribe_and_go(
    b: Backend,
    protocol: str,
    subs: int,
    args: argparse.Namespace,
    tag: str,
    path: str,
    go: Path,
) -> tuple[list[tuple[Path, subprocess.Popen[bytes]]], CpuMeter, float]:
    """Starts the subscriber processes, waits until all are connected, then lets the job go;
    returns once every client has exited."""
    procs = max(1, math.ceil(subs / args.stream_subs_per_proc))
    shares = [subs // procs + (1 if i < subs % procs else 0) for i in range(procs)]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    if args.quiet_wait > 0:
        wait_for_quiet(args.quiet_wait)
    expected_s = args.stream_points / args.stream_rate
    clients: list[tuple[Path, subprocess.Popen[bytes]]] = []
    for i, share in enumerate(shares):
        prefix = b.work_dir / f"sub-{tag}-{i}"
        cmd = [
            sys.executable,
            "-m",
            "bench._stream_client",
            "--port",
            str(b.server.port),
            "--path",
            path,
            "--token",
            b.token,
            "--subs",
            str(share),
            "--expected",
            str(args.stream_points),
            "--protocol",
            protocol,
            "--ready",
            f"{prefix}.ready",
            "--out",
            str(prefix),
            "--timeout",
            str(expected_s * 4 + 60),
        ]
        clients.append((prefix, subprocess.Popen(cmd, env=env, cwd=ROOT)))
    cpu_before = _children_cpu_s()
    deadline = time.monotonic() + 150  # the clients give up connecting after 90 s
    try:
        for prefix, proc in clients:
            while not Path(f"{prefix}.ready").exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"stream client {prefix} did not connect (exit {proc.poll()})"
                    )
                time.sleep(0.01)
        time.sleep(1.0)  # from response headers to registered with the hub
        with CpuMeter(b.server.pid) as cpu:
            go.touch()
            for _, proc in clients:
                proc.wait(timeout=expected_s * 4 + 120)
    except BaseException:
        # A failure or Ctrl-C: no subscriber process outlives the benchmark.
        for _, proc in clients:
            stop_process(proc)
        raise
    return clients, cpu, cpu_before


def _case(b: Backend, protocol: str, subs: int, args: argparse.Namespace, index: int) -> Result:
    tag = f"{protocol}{subs}-{index}"
    out = b.work_dir / f"paced-{tag}.json"
    go = b.work_dir / f"go-{tag}"
    command = workload_command("paced", out, go, args.stream_rate, args.stream_points)
    job_id = submit(b, command, name=f"stream-{tag}")
    wait_status(b, job_id, ["running"])
    path = (
        f"/ws/jobs/{job_id}/stream" if protocol in ("ws", "ws1") else f"/api/jobs/{job_id}/stream"
    )
    try:
        clients, cpu, cpu_before = _subscribe_and_go(b, protocol, subs, args, tag, path, go)
    except BaseException:
        # Leave nothing behind: the job would wait for its go signal, the clients for it.
        go.touch()
        with contextlib.suppress(httpx.HTTPError):
            b.client.post(f"/api/jobs/{job_id}/cancel", headers=b.auth)
        print(f"  server log tail:\n{b.server.log_tail(3000)}")
        raise
    clients_cpu = _children_cpu_s() - cpu_before
    wait_status(b, job_id, ["completed"])
    job_report = json.loads(out.read_text())

    latencies: array[float] = array("d")
    received: list[int] = []
    duplicates = unexpected = not_ended = 0
    failed: list[str] = []
    for prefix, proc in clients:
        if proc.returncode != 0:
            raise RuntimeError(f"stream client {prefix} exited with {proc.returncode}")
        summary = json.loads(Path(f"{prefix}.json").read_text())
        received += summary["received"]
        duplicates += sum(summary["duplicates"])
        unexpected += sum(summary["unexpected"])
        not_ended += sum(not e for e in summary["ended"])
        failed += summary["failed"]
        with Path(f"{prefix}.lat").open("rb") as handle:
            latencies.frombytes(handle.read())
    ms = sorted(1000 * x for x in latencies)
    p50, p99 = percentile(ms, 50), percentile(ms, 99)
    worst = min(received) / args.stream_points if received else 0.0
    mean = sum(received) / len(received) / args.stream_points if received else 0.0
    wall = cpu.wall_s or 1.0
    # The server's CPU for each delivery: on a busy machine latency follows the CPU share
    # the server gets, this much less so.
    server_us = 1e6 * cpu.server_s / max(1, sum(received))
    case = f"{b.name} {protocol} x{subs}"
    target = TARGETS_P99_MS.get((protocol, subs))
    note = "" if target is None else " " + target_note(p99, target, lower_is_better=True)
    print(
        f"{NAME} {case}: p50 {p50:.1f} ms p99 {p99:.1f} ms max {ms[-1] if ms else math.nan:.0f} "
        f"ms{note} | every point to every subscriber: "
        f"{'yes' if worst == 1.0 else 'NO'} (worst {100 * worst:.2f} %, mean {100 * mean:.2f} %)"
        f", {duplicates} repeats, {not_ended} without end, {len(failed)} refused | server "
        f"{100 * cpu.server_s / wall:.0f} % CPU ({server_us:.1f} µs per delivered point), "
        f"clients {100 * clients_cpu / wall:.0f} %, "
        f"job late {job_report.get('late', 0)}",
        flush=True,
    )
    figures = {
        "p50_ms": p50,
        "p99_ms": p99,
        "max_ms": ms[-1] if ms else math.nan,
        "complete_worst_%": 100 * worst,
        "complete_mean_%": 100 * mean,
        "repeats": float(duplicates),
        "unexpected": float(unexpected),
        "no_end": float(not_ended),
        "refused": float(len(failed)),
        **cpu.figures(),
        "clients_cpu_%": 100 * clients_cpu / wall,
        "srv_us_per_delivery": server_us,
    }
    if target is not None:
        figures["target_p99_ms"] = target
    if failed:
        print(f"  WARNING: {len(failed)} subscriptions refused or stalled, e.g. {failed[0]!r}")
        pool_timeouts = b.server.log_tail(10**8).count("QueuePool limit")
        if pool_timeouts:
            print(f"  the server logged {pool_timeouts} database pool timeouts (QueuePool limit)")
    return Result(
        NAME,
        case,
        figures,
        {
            "complete": str(worst == 1.0).lower(),
            "met": str(worst == 1.0 and (target is None or p99 < target)).lower(),
            "subscribers": str(subs),
            "client_procs": str(len(clients)),
        },
    )


def run(args: argparse.Namespace) -> list[Result]:
    cases = []
    for item in args.stream_cases.split(","):
        protocol, _, subs = item.strip().partition(":")
        if protocol not in ("sse", "ws", "ws1"):
            raise ValueError(f"unknown stream protocol {protocol!r}")
        cases.append((protocol, int(subs)))
    results: list[Result] = []
    for backend in backends_of(args):
        with backend_server(backend, args, NAME) as b:
            if b is None:
                continue
            for index, (protocol, subs) in enumerate(cases):
                try:
                    results.append(_case(b, protocol, subs, args, index))
                except Exception as exc:  # recorded, and the next case still runs
                    print(f"{NAME} {backend} {protocol} x{subs}: FAILED: {exc!r}", flush=True)
                    pool_timeouts = b.server.log_tail(10**8).count("QueuePool limit")
                    if pool_timeouts:
                        print(f"  the server logged {pool_timeouts} database pool timeouts")
                    results.append(
                        Result(
                            NAME,
                            f"{backend} {protocol} x{subs}",
                            {"failed": 1.0, "pool_timeouts": float(pool_timeouts)},
                            {"error": repr(exc)[:300]},
                        )
                    )
    return results
