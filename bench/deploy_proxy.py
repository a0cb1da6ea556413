"""Deployment proxy cost: the same completions straight to a replica and through the endpoint.

Starts the real server (``sparktrainer serve``, SQLite), registers the tiny offline GPT-2
(``tests/tinylm.py``) through a job, deploys it with the built-in ``transformers`` backend
(one replica, CPU), then drives the same closed-loop POST load, with the same client,
alternately at the replica's own port and at ``/api/deployments/{id}/v1/completions``:

- ``latency`` (1 connection): the p50 the proxy adds; target < 2 ms.
- ``no-inference`` (1 connection, ``GET /v1/models``): the proxy's own cost with no
  model work on either side (for information: no target).
- ``throughput`` (``--connections``): the share of the replica's requests/s the endpoint
  keeps; target >= 0.85 (the proxy costs < 15 %).

Each side is measured ``--deploy-rounds`` times, interleaved, and the best round counts,
so drift on a shared machine hits both sides alike.

For the two one-connection cases the p50 added comes from a paired run besides: one
client alternates a request straight to the replica and one through the endpoint (a
keep-alive connection each, the order swapped every pair) for ``--deploy-rounds`` times
``--duration`` seconds, so both sides see the same moment's load; best-of-rounds figures
are printed too, but on a shared machine a burst of someone else's work during one round
moves them by milliseconds. The latency target is judged on the paired figure.

Beside each case: the proxy's own CPU per request (``proxy_us_per_req``: the API server's
CPU seconds during a proxied round, less its background loops' CPU at the rate measured in
the paired direct round, when the server sees no request, over the requests; median of the
rounds), the replica's CPU per request, and the 1-minute load average. CPU per request is
what the machine's load distorts least: the rates and latencies move with whatever else
runs on the same cores.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shlex
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil

from bench._common import Result, busy_cores, wait_for_quiet
from bench._loadgen import LoadResult, pick_generator, run_load
from bench._post_load import run_post_load
from bench._server import ADMIN_PASSWORD, running_server

NAME = "deploy_proxy"
DESCRIPTION = "completions straight to a replica vs through the deployment endpoint"
TARGET_P50_ADDED_MS = 2.0
TARGET_RPS_RATIO = 0.85
BODY = json.dumps({"prompt": "the model learns", "max_tokens": 1, "temperature": 0}).encode()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(NAME)
    group.add_argument(
        "--deploy-rounds", type=int, default=3, help="measured rounds per side (default 3)"
    )


def _wait(predicate: Any, what: str, timeout_s: float = 120) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise RuntimeError(f"timed out waiting for {what}")


def _deploy(client: httpx.Client, work: Path) -> tuple[str, int]:
    from tests.tinylm import build_tiny_lm

    model_dir = build_tiny_lm(work / "tiny-lm")
    command = f'cp -R {shlex.quote(str(model_dir))}/. "$SPARKTRAINER_OUTPUT_DIR"/'
    job = client.post(
        "/api/jobs", json={"name": "tiny-gpt2", "command": command, "gpu_count": 0}
    ).json()

    def model_id() -> str | None:
        items = client.get("/api/models", params={"name": "tiny-gpt2"}).json()["items"]
        return str(items[0]["id"]) if items else None

    found = _wait(model_id, f"job {job['id']} to register the model")
    deployment = client.post(
        "/api/deployments",
        json={"name": "tiny", "model_id": found, "backend": "transformers", "gpu_count": 0},
    ).json()

    def running() -> dict[str, Any] | None:
        body: dict[str, Any] = client.get(f"/api/deployments/{deployment['id']}").json()
        return body if body["status"] == "running" else None

    ready = _wait(running, "the deployment to run")
    return str(ready["id"]), int(ready["replica_details"][0]["port"])


def _load(url: str, headers: dict[str, str], connections: int, args: argparse.Namespace) -> Any:
    generator = pick_generator(args.generator)
    if url.endswith("/models"):
        return run_load(
            url,
            generator=generator,
            connections=connections,
            duration_s=args.duration,
            headers=headers,
        )
    return run_post_load(
        url,
        BODY,
        generator=generator,
        connections=connections,
        duration_s=args.duration,
        headers=headers,
    )


@dataclass(frozen=True, slots=True)
class _Round:
    load: LoadResult
    wall_s: float
    server_cpu_s: float
    replica_cpu_s: float


def _cpu_s(proc: psutil.Process | None) -> float:
    if proc is None:
        return 0.0
    try:
        times = proc.cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


def _replica_process(port: int) -> psutil.Process | None:
    """The built-in backend's server process listening on ``port`` (a job's process: it
    runs in a process group of its own, not under the API server)."""
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if "spark_trainer.deployments.server" in cmdline and str(port) in cmdline:
            return proc
    return None


def _measured(
    server: psutil.Process, replica: psutil.Process | None, load: Any, *args: Any
) -> _Round:
    before = (time.perf_counter(), _cpu_s(server), _cpu_s(replica))
    result = load(*args)
    return _Round(
        result,
        time.perf_counter() - before[0],
        _cpu_s(server) - before[1],
        _cpu_s(replica) - before[2],
    )


def _paired_p50s(
    direct: str, proxied: str, auth: dict[str, str], body: bytes | None, duration_s: float
) -> tuple[float, float, int]:
    """p50 of each side (ms) and the pairs made, alternating one request to each."""
    sides = []
    for url, headers in ((direct, {}), (proxied, auth)):
        parts = urlsplit(url)
        if body is not None:
            headers = {**headers, "Content-Type": "application/json"}
        connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)
        sides.append((connection, parts.path, headers))
    latencies: tuple[list[float], list[float]] = ([], [])
    deadline = time.monotonic() + duration_s
    pairs = 0
    try:
        while time.monotonic() < deadline:
            order = (0, 1) if pairs % 2 == 0 else (1, 0)
            for side in order:
                connection, path, headers = sides[side]
                start = time.perf_counter()
                connection.request("POST" if body else "GET", path, body=body, headers=headers)
                response = connection.getresponse()
                response.read()
                latencies[side].append(1000 * (time.perf_counter() - start))
                if response.status != 200:
                    raise RuntimeError(f"{path} answered {response.status}")
            pairs += 1
    finally:
        for connection, _, _ in sides:
            connection.close()
    return statistics.median(latencies[0]), statistics.median(latencies[1]), pairs


def _best(rounds: list[_Round]) -> LoadResult:
    return max((r.load for r in rounds), key=lambda r: r.rps)


def _proxy_us_per_req(direct: _Round, proxy: _Round) -> float:
    # The server's loops (supervisor, scheduler, ...) tick in both rounds; in the direct
    # one they are all it does.
    background = direct.server_cpu_s / direct.wall_s * proxy.wall_s
    return 1e6 * max(0.0, proxy.server_cpu_s - background) / max(1, proxy.load.requests)


def run(args: argparse.Namespace) -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="bench-deploy-") as tmp:
        work = Path(tmp)
        with running_server(work / "data", env={"SPARKTRAINER_GPUS": "1"}) as server:
            login = httpx.post(
                f"{server.base_url}/api/auth/login",
                json={"username": "admin", "password": ADMIN_PASSWORD},
            )
            login.raise_for_status()
            auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
            with httpx.Client(base_url=server.base_url, headers=auth, timeout=30) as client:
                deployment_id, port = _deploy(client, work)
                try:
                    return _measure(args, server.pid, auth, server.base_url, deployment_id, port)
                finally:
                    # Replicas are jobs, which outlive a server stop by design: end them.
                    client.delete(f"/api/deployments/{deployment_id}")
                    _wait(
                        lambda: (
                            client.get(f"/api/deployments/{deployment_id}").json()["status"]
                            == "stopped"
                        ),
                        "the deployment to stop",
                    )


def _measure(
    args: argparse.Namespace,
    server_pid: int,
    auth: dict[str, str],
    base_url: str,
    deployment_id: str,
    port: int,
) -> list[Result]:
    server_proc = psutil.Process(server_pid)
    replica_proc = _replica_process(port)
    direct_base = f"http://127.0.0.1:{port}/v1"
    proxied_base = f"{base_url}/api/deployments/{deployment_id}/v1"
    results = []
    for case, connections, route in (
        ("latency", 1, "completions"),
        ("no-inference", 1, "models"),
        ("throughput", args.connections, "completions"),
    ):
        direct, proxied = f"{direct_base}/{route}", f"{proxied_base}/{route}"
        # Warm both paths (connection pools, the proxy's route and auth caches).
        warm = argparse.Namespace(**{**vars(args), "duration": args.warmup})
        _load(direct, {}, connections, warm)
        _load(proxied, auth, connections, warm)
        if args.quiet_wait > 0:
            wait_for_quiet(args.quiet_wait)
        busy = busy_cores(0.5)
        load_avg = os.getloadavg()[0]
        sides: dict[str, list[_Round]] = {"direct": [], "proxy": []}
        for _ in range(args.deploy_rounds):
            for side, url, headers in (("direct", direct, {}), ("proxy", proxied, auth)):
                sides[side].append(
                    _measured(server_proc, replica_proc, _load, url, headers, connections, args)
                )
        paired = None
        if connections == 1:
            body = None if route == "models" else BODY
            duration = args.duration * args.deploy_rounds
            paired = _paired_p50s(direct, proxied, auth, body, duration)
        results.append(_result(case, connections, sides, busy, load_avg, paired))
    return results


def _result(
    case: str,
    connections: int,
    sides: dict[str, list[_Round]],
    busy: float,
    load_avg: float,
    paired: tuple[float, float, int] | None,
) -> Result:
    direct, proxy = _best(sides["direct"]), _best(sides["proxy"])
    errors = sum(r.load.errors for side in sides.values() for r in side)
    proxy_us = statistics.median(
        _proxy_us_per_req(d, p) for d, p in zip(sides["direct"], sides["proxy"], strict=True)
    )
    replica_us = statistics.median(
        1e6 * r.replica_cpu_s / max(1, r.load.requests) for r in sides["direct"]
    )
    ratio = proxy.rps / direct.rps
    added = proxy.p50_ms - direct.p50_ms
    paired_added = paired[1] - paired[0] if paired else float("nan")
    if case == "latency":
        met = paired_added < TARGET_P50_ADDED_MS
        target = f"paired p50 added < {TARGET_P50_ADDED_MS:g} ms"
    elif case == "no-inference":
        met = True
        target = "none (the proxy's own cost)"
    else:
        met = ratio >= TARGET_RPS_RATIO
        target = f"rps ratio >= {TARGET_RPS_RATIO:g}"
    print(
        f"  {case} (c={connections}): direct {direct.rps:.0f} rps p50 {direct.p50_ms:.2f} ms "
        f"p99 {direct.p99_ms:.2f} ms | proxy {proxy.rps:.0f} rps p50 {proxy.p50_ms:.2f} ms "
        f"p99 {proxy.p99_ms:.2f} ms | ratio {ratio:.3f}, p50 added {added:.2f} ms | "
        + (
            f"paired ({paired[2]} pairs): direct p50 {paired[0]:.2f} ms, proxy p50 "
            f"{paired[1]:.2f} ms, added {paired_added:.2f} ms | "
            if paired
            else ""
        )
        + f"target {target}: {'met' if met else 'MISSED'} | CPU per request: proxy "
        f"{proxy_us:.0f} us, replica {replica_us:.0f} us | load average {load_avg:.2f} "
        f"(other load before: {busy:.2f} cores)",
        flush=True,
    )
    return Result(
        benchmark=NAME,
        case=f"{case} c={connections}",
        metrics={
            "direct_rps": direct.rps,
            "proxy_rps": proxy.rps,
            "rps_ratio": ratio,
            "direct_p50_ms": direct.p50_ms,
            "proxy_p50_ms": proxy.p50_ms,
            "p50_added_ms": added,
            "paired_p50_added_ms": paired_added,
            "direct_p99_ms": direct.p99_ms,
            "proxy_p99_ms": proxy.p99_ms,
            "proxy_us_per_req": proxy_us,
            "replica_us_per_req": replica_us,
            "load_avg_1m": load_avg,
            "errors": float(errors),
        },
        info={
            "target": target,
            "met": "yes" if met else "no",
            "generator": proxy.generator,
            "machine_busy_cores_before": f"{busy:.2f}",
        },
    )
