"""The scheduling policy as a pure function: no database, no processes, no clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from spark_trainer.scheduler.policy import NO_NODE_UP, QueuedJob, schedule

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def job(job_id: str, gpus: int, priority: int = 0, age: float = 0.0, at: int = 0) -> QueuedJob:
    return QueuedJob(
        id=job_id,
        priority=priority,
        created_at=T0 + timedelta(seconds=at),
        gpu_count=gpus,
        waiting_seconds=age,
    )


def test_best_fit_keeps_large_blocks_free() -> None:
    decision = schedule(
        [job("small", 1), job("big", 4)],
        free={"n1": [0, 1, 2, 3], "n2": [5]},
        capacity={"n1": 4, "n2": 2},
        reserve_after=60,
    )
    placed = {p.job_id: (p.node, p.gpus) for p in decision.placements}
    assert placed == {"small": ("n2", (5,)), "big": ("n1", (0, 1, 2, 3))}


def test_a_gang_is_never_split_across_nodes() -> None:
    decision = schedule(
        [job("pair", 2)],
        free={"n1": [0], "n2": [3]},
        capacity={"n1": 2, "n2": 2},
        reserve_after=60,
    )
    assert decision.placements == []
    assert decision.reasons["pair"] == "needs 2 GPUs; the largest free block is 1"


def test_oversized_job_says_so() -> None:
    decision = schedule([job("huge", 9)], free={"n1": []}, capacity={"n1": 8}, reserve_after=0)
    assert decision.reasons["huge"] == "needs 9 GPUs; the largest node has 8"


def test_backfill_before_the_reservation_delay() -> None:
    decision = schedule(
        [job("big", 4, priority=9, age=10), job("small", 1)],
        free={"n1": [2, 3]},
        capacity={"n1": 4},
        reserve_after=60,
    )
    assert [p.job_id for p in decision.placements] == ["small"]


def test_reservation_stops_later_jobs_on_the_reserved_node() -> None:
    decision = schedule(
        [job("big", 4, age=61), job("small", 1)],
        free={"n1": [2, 3], "n2": [0]},
        capacity={"n1": 4, "n2": 1},
        reserve_after=60,
    )
    # "small" may not take n1 (reserved for "big") but may use n2.
    assert [(p.job_id, p.node) for p in decision.placements] == [("small", "n2")]
    assert decision.reasons["big"].endswith("it has reserved node n1")


def test_jobs_ahead_of_a_reservation_are_unaffected() -> None:
    decision = schedule(
        [job("urgent", 1, priority=10), job("big", 4, age=100), job("later", 1)],
        free={"n1": [1, 2]},
        capacity={"n1": 4},
        reserve_after=0,
    )
    assert [p.job_id for p in decision.placements] == ["urgent"]
    assert "reserved for big" in decision.reasons["later"]


def test_ten_thousand_pending_jobs_in_one_pass() -> None:
    queue = sorted(
        (job(f"j{i}", 1 + i % 4, priority=i % 7, at=i) for i in range(10_000)),
        key=lambda j: (-j.priority, j.created_at, j.id),
    )
    decision = schedule(queue, free={"n1": list(range(8))}, capacity={"n1": 8}, reserve_after=0)
    used = [g for p in decision.placements for g in p.gpus]
    assert len(used) == len(set(used)) <= 8
    assert len(decision.placements) + len(decision.reasons) == 10_000


def test_a_job_without_gpus_runs_on_a_cpu_node() -> None:
    decision = schedule([job("prep", 0)], free={"cpu": []}, capacity={"cpu": 0}, reserve_after=0)
    assert [(p.job_id, p.node, p.gpus) for p in decision.placements] == [("prep", "cpu", ())]
    assert decision.reasons == {}


def test_jobs_without_gpus_prefer_the_node_with_fewest_free_gpus() -> None:
    decision = schedule(
        [job("prep", 0), job("eval", 0)],
        free={"gpu": [0, 1, 2, 3], "cpu": []},
        capacity={"gpu": 4, "cpu": 0},
        reserve_after=0,
    )
    assert [(p.node, p.gpus) for p in decision.placements] == [("cpu", ()), ("cpu", ())]


def test_a_reservation_never_holds_back_a_job_without_gpus() -> None:
    decision = schedule(
        [job("big", 4, priority=5, age=600), job("small", 1), job("prep", 0)],
        free={"n1": [2, 3]},
        capacity={"n1": 4},
        reserve_after=60,
    )
    # "big" reserved n1: the 1-GPU job waits for it, the job without GPUs starts there.
    assert [(p.job_id, p.node, p.gpus) for p in decision.placements] == [("prep", "n1", ())]
    assert "reserved for big" in decision.reasons["small"]
    assert decision.reasons["big"].endswith("it has reserved node n1")


def test_with_no_node_up_every_job_says_so() -> None:
    decision = schedule(
        [job("prep", 0), job("train", 2, age=600)], free={}, capacity={}, reserve_after=0
    )
    assert decision.placements == []
    assert decision.reasons == {"prep": NO_NODE_UP, "train": NO_NODE_UP}
