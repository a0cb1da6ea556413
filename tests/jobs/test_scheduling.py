"""Priority, FIFO, gang allocation, backfill and no-starvation, with real jobs on a
virtual 4-GPU node."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from spark_trainer.app import create_app
from spark_trainer.context import AppContext
from spark_trainer.settings import Settings
from tests.conftest import Account
from tests.jobs.helpers import FINAL, blocker, get, submit, wait_for, wait_until


def _started_order(client: TestClient, headers: dict[str, str], ids: list[str]) -> list[str]:
    jobs = [wait_for(client, headers, job_id, FINAL) for job_id in ids]
    return [job["id"] for job in sorted(jobs, key=lambda j: (j["started_at"], j["id"]))]


def test_priority_first_then_fifo(client: TestClient, alice: Account, tmp_path: Path) -> None:
    release = tmp_path / "go"
    hog = submit(client, alice.headers, command=blocker(release), gpu_count=4)
    wait_for(client, alice.headers, hog["id"], {"running"})
    # Each needs all four GPUs, so they run one at a time, in queue order.
    low = submit(client, alice.headers, command="sleep 0.05", gpu_count=4, priority=0)
    high_1 = submit(client, alice.headers, command="sleep 0.05", gpu_count=4, priority=10)
    mid = submit(client, alice.headers, command="sleep 0.05", gpu_count=4, priority=5)
    high_2 = submit(client, alice.headers, command="sleep 0.05", gpu_count=4, priority=10)

    # Queue places are counted when read, but the GPU reason is what a scheduler pass
    # recorded: until a pass has seen every submission, a job's reason may lack it.
    def reason(job: dict) -> str:  # type: ignore[type-arg]
        return get(client, alice.headers, job["id"])["pending_reason"] or ""

    wait_until(
        lambda: all("needs 4 GPUs" in reason(job) for job in (low, high_1, mid, high_2)),
        what="a scheduler pass that has seen every submission",
    )
    waiting = get(client, alice.headers, low["id"])
    assert waiting["status"] == "pending"
    assert "needs 4 GPUs; the largest free block is 0" in waiting["pending_reason"]
    assert "3 jobs ahead in the queue" in waiting["pending_reason"]
    # The list numbers the whole page at once; each job's place is the one its detail shows.
    listed = client.get("/api/jobs?status=pending", headers=alice.headers).json()["items"]
    places = {job["id"]: job["pending_reason"].split("; ")[-1] for job in listed}
    assert places == {
        high_1["id"]: places[high_1["id"]],  # first in the queue: no count
        high_2["id"]: "1 job ahead in the queue",
        mid["id"]: "2 jobs ahead in the queue",
        low["id"]: "3 jobs ahead in the queue",
    }
    assert "ahead" not in places[high_1["id"]]

    release.touch()
    order = _started_order(
        client, alice.headers, [low["id"], high_1["id"], mid["id"], high_2["id"]]
    )
    assert order == [high_1["id"], high_2["id"], mid["id"], low["id"]]


def test_gang_allocation_never_shares_a_gpu(
    client: TestClient, alice: Account, tmp_path: Path
) -> None:
    release = tmp_path / "go"
    pair_a = submit(client, alice.headers, command=blocker(release), gpu_count=2)
    pair_b = submit(client, alice.headers, command=blocker(release), gpu_count=2)
    a = wait_for(client, alice.headers, pair_a["id"], {"running"})
    b = wait_for(client, alice.headers, pair_b["id"], {"running"})
    assert len(a["gpus"]) == len(b["gpus"]) == 2
    assert sorted(a["gpus"] + b["gpus"]) == [0, 1, 2, 3]

    single = submit(client, alice.headers, command="true", gpu_count=1)
    # Once the scheduler has considered it (its reason says so), it is still waiting.
    wait_until(
        lambda: (
            "the largest free block is 0"
            in get(client, alice.headers, single["id"])["pending_reason"]
        ),
        what="the scheduler to consider the single-GPU job",
    )
    assert get(client, alice.headers, single["id"])["status"] == "pending"
    release.touch()
    done = wait_for(client, alice.headers, single["id"], FINAL)
    assert done["status"] == "completed"
    assert len(done["gpus"]) == 1


def test_small_jobs_backfill_gpus_a_large_job_cannot_use_yet(
    client: TestClient, alice: Account, tmp_path: Path
) -> None:
    # The default reservation delay (120 s) is far away: backfilling is allowed.
    release = tmp_path / "go"
    first = submit(client, alice.headers, command=blocker(release), gpu_count=2)
    wait_for(client, alice.headers, first["id"], {"running"})
    large = submit(client, alice.headers, command="true", gpu_count=4, priority=5)
    small = submit(client, alice.headers, command="true", gpu_count=1, priority=0)
    assert wait_for(client, alice.headers, small["id"], FINAL)["status"] == "completed"
    assert get(client, alice.headers, large["id"])["status"] == "pending"
    release.touch()
    assert wait_for(client, alice.headers, large["id"], FINAL)["status"] == "completed"


@pytest.fixture
def reserving_client(
    settings_factory: Callable[..., Settings],
) -> Iterator[TestClient]:
    # A job that does not fit reserves its node at once.
    settings = settings_factory(reserve_after_seconds=0)
    ctx = AppContext.build(settings)
    with TestClient(create_app(settings, ctx)) as test_client:
        yield test_client


def test_a_stream_of_small_jobs_does_not_starve_a_large_one(
    reserving_client: TestClient, make_account: Callable[..., Account], tmp_path: Path
) -> None:
    client = reserving_client
    alice = make_account()
    releases = [tmp_path / f"go{i}" for i in range(3)]
    smalls = [
        submit(client, alice.headers, command=blocker(releases[i]), gpu_count=1) for i in range(3)
    ]
    for job in smalls:
        wait_for(client, alice.headers, job["id"], {"running"})
    large = submit(client, alice.headers, command="true", gpu_count=4)
    # More small jobs keep arriving; a GPU is free, but it is reserved for the large job.
    late = [submit(client, alice.headers, command="true", gpu_count=1) for _ in range(3)]
    wait_until(
        lambda: "is reserved for" in get(client, alice.headers, late[0]["id"])["pending_reason"],
        what="the scheduler to consider the late jobs",
    )
    waiting = get(client, alice.headers, late[0]["id"])
    assert waiting["status"] == "pending"
    assert f"is reserved for {large['id']}" in waiting["pending_reason"], waiting
    for release in releases:
        release.touch()
    large_done = wait_for(client, alice.headers, large["id"], FINAL)
    late_done = [wait_for(client, alice.headers, job["id"], FINAL) for job in late]
    assert large_done["status"] == "completed"
    assert all(job["started_at"] >= large_done["started_at"] for job in late_done)
