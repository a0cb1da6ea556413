"""``GET /metrics`` in one process: the exposition format, and every family it promises."""

from __future__ import annotations

from fastapi.testclient import TestClient

from spark_trainer.observability.prometheus import waiting_reason
from spark_trainer.settings import Settings
from tests.conftest import Account
from tests.jobs.helpers import FINAL, submit, wait_for, wait_until


def test_metrics_are_served_unauthenticated_in_prometheus_format(
    client: TestClient, alice: Account, settings: Settings
) -> None:
    job = submit(client, alice.headers, command="true")
    wait_for(client, alice.headers, job["id"], FINAL)
    waits = submit(client, alice.headers, command="sleep 30", gpu_count=4)
    blocked = submit(client, alice.headers, command="true", gpu_count=4)
    wait_for(client, alice.headers, waits["id"], {"running"})
    # The scheduler's pass explains why the blocked job waits.
    wait_until(lambda: "gpus_busy" in client.get("/metrics").text, what="a pending reason")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    text = response.text
    assert 'sparktrainer_job_ends_total{status="completed"} 1.0' in text
    assert "sparktrainer_job_starts_total 2.0" in text
    node = settings.node_name
    assert f'sparktrainer_gpus_allocated{{node="{node}"}} 4.0' in text
    assert "sparktrainer_stream_subscribers 0.0" in text
    # Submission to process started, recorded with each of the two started jobs.
    assert "sparktrainer_dispatch_latency_seconds_count 2.0" in text
    assert 'sparktrainer_dispatch_latency_seconds_bucket{le="+Inf"} 2.0' in text
    within = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("sparktrainer_dispatch_latency_seconds_bucket")
    ]
    assert within == sorted(within) and within[-1] == 2.0, within
    depth = [line for line in text.splitlines() if line.startswith("sparktrainer_queue_depth")]
    assert depth == ['sparktrainer_queue_depth{reason="gpus_busy"} 1.0'], depth
    for job_id in (blocked["id"], waits["id"]):
        client.post(f"/api/jobs/{job_id}/cancel", headers=alice.headers)


def test_waiting_reasons_become_few_labels() -> None:
    assert waiting_reason(None) == "not_yet_scheduled"
    assert waiting_reason("no node is up") == "no_node_up"
    assert waiting_reason("needs 4 GPUs; the largest free block is 2") == "gpus_busy"
    assert waiting_reason("needs 8 GPUs; the largest node has 4") == "no_node_large_enough"
    assert (
        waiting_reason("needs 1 GPU; node a has them free but is reserved for job-x (priority 1)")
        == "node_reserved"
    )
