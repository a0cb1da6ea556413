"""Distributed mode end to end: two API processes, two Celery workers (2 and 4 virtual
GPUs), PostgreSQL and a private Redis, all real processes."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from tests.distributed.cluster import Cluster


def test_a_four_gpu_job_lands_on_the_four_gpu_node(cluster: Callable[[], Cluster]) -> None:
    running = cluster()
    api1, api2 = running.apis
    job_id = api2.submit("echo hello from a worker", gpu_count=4)
    job = api1.wait(job_id, {"completed", "failed", "cancelled"})
    assert job["status"] == "completed", job
    assert job["node"] == "node4"
    logs = httpx.get(f"{api2.base}/api/jobs/{job_id}/logs", headers=api2.headers)
    assert logs.text == "hello from a worker\n"
