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
"""

from __future__ import annotations

import argparse
import json
import shlex
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

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


def _best(results: list[LoadResult]) -> LoadResult:
    return max(results, key=lambda r: r.rps)


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
            direct_base = f"http://127.0.0.1:{port}/v1"
            proxied_base = f"{server.base_url}/api/deployments/{deployment_id}/v1"
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
                sides: dict[str, list[LoadResult]] = {"direct": [], "proxy": []}
                for _ in range(args.deploy_rounds):
                    sides["direct"].append(_load(direct, {}, connections, args))
                    sides["proxy"].append(_load(proxied, auth, connections, args))
                results.append(_result(case, connections, sides, busy))
            return results


def _result(case: str, connections: int, sides: dict[str, list[LoadResult]], busy: float) -> Result:
    direct, proxy = _best(sides["direct"]), _best(sides["proxy"])
    errors = sum(r.errors for side in sides.values() for r in side)
    ratio = proxy.rps / direct.rps
    added = proxy.p50_ms - direct.p50_ms
    if case == "latency":
        met = added < TARGET_P50_ADDED_MS
        target = f"p50 added < {TARGET_P50_ADDED_MS:g} ms"
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
        f"target {target}: {'met' if met else 'MISSED'} (other load before: {busy:.2f} cores)",
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
            "direct_p99_ms": direct.p99_ms,
            "proxy_p99_ms": proxy.p99_ms,
            "errors": float(errors),
        },
        info={
            "target": target,
            "met": "yes" if met else "no",
            "generator": proxy.generator,
            "machine_busy_cores_before": f"{busy:.2f}",
        },
    )
