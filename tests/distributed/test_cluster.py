"""Distributed mode end to end: two API processes, two Celery workers (2 and 4 virtual
GPUs), PostgreSQL and a private Redis, all real processes."""

from __future__ import annotations

import itertools
import json
import random
import shlex
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import httpx
import psutil
from sqlalchemy import create_engine, func, select, update

from spark_trainer.models import GpuAllocation, Job, Lease, Node
from tests.distributed.cluster import STALE_SECONDS, Cluster
from tests.jobs.helpers import FINAL, PY, wait_until
from tests.runtime.servers import Server


def _leader_and_other(running: Cluster) -> tuple[Server, Server]:
    engine = create_engine(running.database_url)
    try:
        with engine.connect() as conn:
            holder = conn.scalar(select(Lease.holder).where(Lease.name == "scheduler"))
    finally:
        engine.dispose()
    assert holder is not None
    pid = int(holder.split(":")[1])
    first, second = running.apis
    assert first.proc is not None
    return (first, second) if first.proc.pid == pid else (second, first)


def _heartbeat(running: Cluster, node: str) -> datetime:
    engine = create_engine(running.database_url)
    try:
        with engine.connect() as conn:
            at = conn.scalar(select(Node.heartbeat_at).where(Node.name == node))
    finally:
        engine.dispose()
    assert at is not None
    return at


def _gone(pid: int) -> bool:
    return not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_placement_inventory_and_no_double_booking(cluster: Callable[[], Cluster]) -> None:
    running = cluster()
    api1, api2 = running.apis

    gpus = api1.get("/api/gpus")
    assert sorted((g["node"], g["id"]) for g in gpus) == [
        ("node2", 0),
        ("node2", 1),
        ("node4", 0),
        ("node4", 1),
        ("node4", 2),
        ("node4", 3),
    ]
    assert all(g["virtual"] and g["utilization"] is None for g in gpus)

    big = api2.submit("echo hello from a worker", gpu_count=4)
    job = api1.wait(big, FINAL)
    assert job["status"] == "completed", job
    assert job["node"] == "node4"
    # The log is read through the API process that neither placed nor ran the job.
    logs = httpx.get(f"{api2.base}/api/jobs/{big}/logs", headers=api2.headers)
    assert logs.text == "hello from a worker\n"
    too_big = api1.post("/api/jobs", {"name": "big", "command": "true", "gpu_count": 5})
    assert too_big.status_code == 400

    rng = random.Random(15)
    sizes = [rng.randint(1, 4) for _ in range(200)]

    def submit(index: int) -> str:
        return running.apis[index % 2].submit("true", gpu_count=sizes[index])

    engine = create_engine(running.database_url)
    samples: list[list[tuple[str, int, str]]] = []
    try:
        with ThreadPoolExecutor(16) as pool:
            ids = list(pool.map(submit, range(200)))
        deadline = time.monotonic() + 300
        while True:
            with engine.connect() as conn:
                rows = conn.execute(
                    select(GpuAllocation.node, GpuAllocation.gpu_index, GpuAllocation.job_id)
                ).all()
                samples.append([(r.node, r.gpu_index, r.job_id) for r in rows])
                unfinished = conn.scalar(
                    select(func.count()).where(Job.id.in_(ids), Job.status.not_in(FINAL))
                )
            if not unfinished:
                break
            assert time.monotonic() < deadline, f"{unfinished} jobs still unfinished"
            time.sleep(0.1)
        with engine.connect() as conn:
            jobs = conn.execute(
                select(
                    Job.id,
                    Job.status,
                    Job.node,
                    Job.gpus,
                    Job.gpu_count,
                    Job.started_at,
                    Job.finished_at,
                ).where(Job.id.in_(ids))
            ).all()
            left = conn.scalar(select(func.count()).select_from(GpuAllocation))
    finally:
        engine.dispose()
    assert {job.status for job in jobs} == {"completed"}
    assert left == 0
    assert {job.node for job in jobs if job.gpu_count > 2} == {"node4"}
    assert {job.node for job in jobs} == {"node2", "node4"}
    by_id = {job.id: job for job in jobs}
    assert any(samples)
    capacity = {"node2": 2, "node4": 4}
    for sample in samples:
        per_job: dict[str, set[str]] = {}
        per_node: dict[str, int] = {}
        for node, _, job_id in sample:
            per_job.setdefault(job_id, set()).add(node)
            per_node[node] = per_node.get(node, 0) + 1
        # A job's GPUs are all on one node, never more GPUs held than a node has.
        assert all(len(nodes) == 1 for nodes in per_job.values())
        assert all(per_node[node] <= capacity[node] for node in per_node)
        for job_id in per_job:
            if job_id in by_id:
                assert sum(1 for _, _, j in sample if j == job_id) == by_id[job_id].gpu_count
    # Over the whole run: two jobs that shared a GPU of a node never ran at the same time.
    for node, count in capacity.items():
        for gpu_index in range(count):
            spans = sorted(
                (job.started_at, job.finished_at)
                for job in jobs
                if job.node == node and gpu_index in job.gpus
            )
            for (_, end), (start, _) in itertools.pairwise(spans):
                assert end <= start, f"GPU {gpu_index} of {node} held twice"

    metrics = httpx.get(f"{api2.base}/metrics").text
    assert 'sparktrainer_job_ends_total{status="completed"} 201.0' in metrics
    assert 'sparktrainer_gpus_allocated{node="node4"} 0.0' in metrics
    assert 'sparktrainer_gpus{node="node2",state="up"} 2.0' in metrics
    # Recorded by the workers that started the processes, served by either API process.
    assert "sparktrainer_dispatch_latency_seconds_count 201.0" in metrics


# Logs three points, waits for a "go" file, logs two more, then sleeps with a child.
SCRIPT = """
import os, subprocess, sys, time
import sparktrainer
go, pids = sys.argv[1], sys.argv[2]
for step in range(3):
    sparktrainer.log({"loss": 1.0 - step / 10}, step=step)
while not os.path.exists(go):
    time.sleep(0.02)
for step in range(3, 5):
    sparktrainer.log({"loss": 1.0 - step / 10}, step=step)
child = subprocess.Popen(["sleep", "300"])
with open(pids, "w") as f:
    f.write(f"{os.getpid()} {child.pid}")
child.wait()
"""


def test_metrics_stream_from_the_other_api_and_cancel_kills_the_remote_tree(
    cluster: Callable[[], Cluster], tmp_path: Path
) -> None:
    running = cluster()
    leader, other = _leader_and_other(running)
    go, pids = tmp_path / "go", tmp_path / "pids"
    command = f"{PY} -c {shlex.quote(SCRIPT)} {shlex.quote(str(go))} {shlex.quote(str(pids))}"
    job_id = leader.submit(command, gpu_count=1)

    received = ""
    token = other.headers["Authorization"].removeprefix("Bearer ")
    with httpx.stream(
        "GET",
        f"{other.base}/api/jobs/{job_id}/stream",
        params={"access_token": token},
        timeout=60,
    ) as response:
        assert response.status_code == 200
        for chunk in response.iter_text():
            received += chunk
            if received.count("data: ") >= 3 and not go.exists():
                go.touch()  # history (or live) arrived; the next two are live for sure
            if received.count("data: ") >= 5:
                break
    losses = [
        json.loads(line.removeprefix("data: "))["loss"]
        for line in received.splitlines()
        if line.startswith("data: ")
    ]
    assert losses == [1.0, 0.9, 0.8, 0.7, 0.6]

    wait_until(lambda: pids.exists() and pids.read_text().count(" ") == 1, what="pids")
    tree = [int(p) for p in pids.read_text().split()]
    answered = other.post(f"/api/jobs/{job_id}/cancel")
    assert answered.status_code == 200, answered.text
    job = other.wait(job_id, FINAL, timeout=30)
    assert job["status"] == "cancelled"
    assert job["status_reason"] == "cancelled by user"
    wait_until(lambda: all(_gone(pid) for pid in tree), timeout=10, what="the tree to be gone")


def test_a_killed_worker_is_re_adopted_or_its_jobs_fail_as_lost(
    cluster: Callable[[], Cluster], tmp_path: Path
) -> None:
    running = cluster()
    api1, api2 = running.apis
    node4 = running.workers["node4"]
    go, started, started_too = tmp_path / "go", tmp_path / "started", tmp_path / "started-too"
    # Three GPUs: only node4 fits.
    survivor = api1.submit(f"touch {started}; while [ ! -e {go} ]; do sleep 0.05; done", 3)
    wait_until(started.exists, timeout=60, what="the job's process to start")

    node4.signal(signal.SIGKILL)
    killed_at = _heartbeat(running, "node4")
    node4.start()  # back within the stale timeout: the job is adopted, not lost
    wait_until(
        lambda: _heartbeat(running, "node4") > killed_at, timeout=60, what="node4 to be back"
    )
    assert api1.get(f"/api/jobs/{survivor}")["status"] == "running"
    go.touch()  # the job ends now, under the restarted worker
    job = api2.wait(survivor, FINAL, timeout=60)
    assert job["status"] == "completed", job["status_reason"]
    assert job["exit_code"] == 0

    lost = api2.submit(f"echo $$ > {started_too}; sleep 300", 3)
    wait_until(lambda: started_too.exists() and started_too.read_text(), timeout=60, what="pid")
    leftover = int(started_too.read_text())
    node4.signal(signal.SIGKILL)
    lost_at = time.monotonic()
    # As if it died between starting the process and recording its handle: the handle
    # file it wrote first is then what its next start finds the process by.
    engine = create_engine(running.database_url)
    try:
        with engine.begin() as conn:
            conn.execute(update(Job).where(Job.id == lost).values(handle=None))
    finally:
        engine.dispose()
    job = api1.wait(lost, FINAL, timeout=STALE_SECONDS + 30)
    assert job["status"] == "failed"
    assert job["status_reason"] == "lost: node node4 stopped heartbeating"
    assert time.monotonic() - lost_at >= STALE_SECONDS - 1
    in_use = [g for g in api1.get("/api/gpus") if g["in_use"]]
    assert in_use == []
    wait_until(
        lambda: (
            'sparktrainer_gpus{node="node4",state="lost"} 4.0'
            in httpx.get(f"{api1.base}/metrics").text
        ),
        what="node4 to show as lost",
    )
    # The job's process outlived its worker; the worker's next start stops it, since
    # its GPUs are free for other jobs now.
    assert not _gone(leftover)
    node4.start()
    wait_until(lambda: _gone(leftover), timeout=60, what="the lost job's process to stop")


def _readyz(server: Server) -> tuple[int, dict[str, object]]:
    response = httpx.get(f"{server.base}/readyz", timeout=30)
    body: dict[str, object] = response.json()
    return response.status_code, body


def test_readyz_reflects_stopped_workers_and_redis_and_jobs_wait(
    cluster: Callable[[], Cluster],
) -> None:
    running = cluster()
    api1, api2 = running.apis
    code, body = _readyz(api2)
    assert code == 200 and body["celery"] is True and body["redis"] is True, body
    assert body["workers"] == {"node2": "live", "node4": "live"}

    # One of two workers stopped: still ready (jobs run on the other), and it shows.
    running.workers["node4"].signal(signal.SIGTERM)
    code, body = _readyz(api2)
    assert code == 200 and body["celery"] is True, body
    assert body["workers"] == {"node2": "live", "node4": "down"}

    running.workers["node2"].signal(signal.SIGTERM)
    code, body = _readyz(api2)
    assert code == 503 and body["celery"] is False and body["redis"] is True, body
    assert body["workers"] == {"node2": "down", "node4": "down"}
    waiting = api1.submit("echo waited", 1)

    running.redis.stop()
    code, body = _readyz(api1)
    assert code == 503 and body["redis"] is False and body["celery"] is False, body
    assert body["workers"] == {"node2": "down", "node4": "down"}
    time.sleep(5)  # a broker outage does not fail the waiting job
    # Read from the database: without Redis the API's rate limiter refuses requests.
    engine = create_engine(running.database_url)
    try:
        with engine.connect() as conn:
            assert conn.scalar(select(Job.status).where(Job.id == waiting)) == "pending"
    finally:
        engine.dispose()

    running.redis.start()
    for worker in running.workers.values():
        worker.start()
    wait_until(lambda: _readyz(api1)[0] == 200, timeout=60, what="ready again")
    job = api2.wait(waiting, FINAL, timeout=60)
    assert job["status"] == "completed", job


def _submit(server: Server, command: str, gpu_count: int, max_retries: int = 0) -> str:
    response = server.post(
        "/api/jobs",
        {"name": "retry", "command": command, "gpu_count": gpu_count, "max_retries": max_retries},
    )
    assert response.status_code == 201, response.text
    job_id: str = response.json()["id"]
    return job_id


def _pids(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()] if path.exists() else []


PARTITION_STALE_SECONDS = 15.0


def test_a_partitioned_worker_stops_its_lost_jobs_and_a_retried_job_runs_again(
    cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    running = cluster(stale_seconds=PARTITION_STALE_SECONDS)
    api1, api2 = running.apis
    node4 = running.workers["node4"]
    go = tmp_path / "go"
    once, retried, requeued_pids = tmp_path / "once", tmp_path / "retried", tmp_path / "requeued"
    # Three GPUs: only node4 fits. No retries: it fails as lost.
    lost = _submit(api1, f"echo $$ >> {once}; sleep 300", 3)
    wait_until(lambda: _pids(once), timeout=60, what="the first job's process")
    # Two GPUs: node4 has one left, so node2, which it fills.
    filler = _submit(api1, f"while [ ! -e {go} ]; do sleep 0.05; done", 2)
    assert api1.wait(filler, {"running"})["node"] == "node2"
    # One GPU, so node4 again; one retry: requeued when node4 is lost, then runs to the end.
    again = _submit(api2, f"echo $$ >> {retried}; [ -e {go} ] || sleep 300", 1, max_retries=1)
    wait_until(lambda: _pids(retried), timeout=60, what="the retried job's process")
    assert api1.get(f"/api/jobs/{again}")["node"] == "node4"
    first_attempt = _pids(retried)[0]

    node4.freeze()
    failed = api1.wait(lost, FINAL, timeout=PARTITION_STALE_SECONDS + 60)
    assert failed["status"] == "failed"
    assert failed["status_reason"] == "lost: node node4 stopped heartbeating"
    job = api2.wait(again, {"pending"})
    assert job["restarts"] == 1 and job["max_retries"] == 1, job
    assert job["status_reason"] == "requeued: node node4 stopped heartbeating (restart 1)"
    assert [g for g in api1.get("/api/gpus") if g["in_use"] and g["node"] == "node4"] == []
    code, body = _readyz(api1)
    assert code == 200 and body["workers"] == {"node2": "live", "node4": "lost"}, body
    # Cut off, node4 knows nothing yet: both jobs' processes still run there.
    assert not _gone(_pids(once)[0]) and not _gone(first_attempt)

    # The filler ends: the retried job's next attempt runs on node2, and completes.
    go.touch()
    job = api1.wait(again, FINAL, timeout=60)
    assert job["status"] == "completed", job
    assert job["restarts"] == 1 and job["node"] == "node2" and job["exit_code"] == 0
    assert _pids(retried)[1] != first_attempt
    assert not _gone(first_attempt)  # node4 is still cut off
    events = [(e["from_status"], e["to_status"]) for e in api2.get(f"/api/jobs/{again}")["events"]]
    assert events == [
        ("pending", "running"),
        ("running", "pending"),
        ("pending", "running"),
        ("running", "completed"),
    ]

    node4.thaw()  # back: it stops both lost processes before it takes work again
    wait_until(lambda: _gone(_pids(once)[0]), timeout=60, what="the lost job's process to stop")
    wait_until(lambda: _gone(first_attempt), timeout=60, what="the lost attempt to stop")
    wait_until(
        lambda: _readyz(api2)[1]["workers"] == {"node2": "live", "node4": "live"},
        timeout=60,
        what="node4 to be live again",
    )
    # The stopped attempt's exit is not recorded over the job's real end.
    job = api2.get(f"/api/jobs/{again}")
    assert (job["status"], job["node"], job["exit_code"]) == ("completed", "node2", 0)
    assert api1.get(f"/api/jobs/{lost}")["status"] == "failed"  # stays failed

    # A worker killed outright, a retried job requeued, the worker restarted: the lost
    # attempt's process, left behind, is stopped; the job runs again.
    third = _submit(api1, f"echo $$ >> {requeued_pids}; sleep 300", 3, max_retries=1)
    wait_until(lambda: _pids(requeued_pids), timeout=60, what="the third job's process")
    node4.signal(signal.SIGKILL)
    job = api1.wait(third, {"pending"}, timeout=PARTITION_STALE_SECONDS + 60)
    assert job["restarts"] == 1, job
    assert not _gone(_pids(requeued_pids)[0])
    node4.start()
    wait_until(lambda: _gone(_pids(requeued_pids)[0]), timeout=60, what="the old attempt to stop")
    wait_until(lambda: len(_pids(requeued_pids)) == 2, timeout=60, what="the second attempt")
    assert api2.get(f"/api/jobs/{third}")["status"] == "running"
    api2.post(f"/api/jobs/{third}/cancel")
    assert api2.wait(third, FINAL)["status"] == "cancelled"
