"""A server killed with SIGKILL and started again: no job stays running, no GPU stays held,
living job processes are adopted, and logs survive."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, update

from spark_trainer.app import create_app
from spark_trainer.context import AppContext
from spark_trainer.models import Job, JobStatus
from spark_trainer.runtime.states import change_status
from spark_trainer.settings import Settings
from tests.conftest import Account
from tests.jobs.helpers import FINAL, blocker, wait_until
from tests.runtime.servers import Server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    running = Server(tmp_path / "data", None, SPARKTRAINER_GPUS="4")
    yield running
    if running.proc is not None and running.proc.poll() is None:
        running.kill()


def test_jobs_survive_a_server_kill(server: Server, tmp_path: Path) -> None:
    server.start()
    keep, finish, die = tmp_path / "keep", tmp_path / "finish", tmp_path / "die-pid"
    survivor = server.submit(blocker(keep, before="echo before the crash"))
    finisher = server.submit(blocker(finish) + "; echo done while down; exit 3")
    victim = server.submit(f"echo $$ > {die}; sleep 300")
    for job_id in (survivor, finisher, victim):
        server.wait(job_id, {"running"})
    wait_until(die.exists, what="the victim's pid")

    server.kill()
    # While the server is down, one job ends by itself and another is killed outright.
    finish.touch()
    victim_pgid = os.getpgid(int(die.read_text()))
    os.killpg(victim_pgid, signal.SIGKILL)
    time.sleep(0.3)

    server.start()
    finished = server.wait(finisher, FINAL)
    assert finished["status"] == "failed"
    assert finished["exit_code"] == 3
    assert finished["status_reason"] == "exited with code 3"
    killed = server.wait(victim, FINAL)
    assert killed["status"] == "failed"
    assert killed["status_reason"] == (
        "the process ended while the server was down and left no exit status"
    )

    # The survivor was adopted: still running, its GPU still held, then it completes.
    assert server.get(f"/api/jobs/{survivor}")["status"] == "running"
    gpus = httpx.get(f"{server.base}/api/gpus", headers=server.headers).json()
    assert [g["job_id"] for g in gpus if g["in_use"]] == [survivor]
    keep.touch()
    done = server.wait(survivor, FINAL)
    assert done["status"] == "completed"
    assert done["exit_code"] == 0
    log = httpx.get(f"{server.base}/api/jobs/{survivor}/logs", headers=server.headers).text
    assert log == "before the crash\n"
    gpus = httpx.get(f"{server.base}/api/gpus", headers=server.headers).json()
    assert not any(g["in_use"] for g in gpus)


def test_a_job_marked_running_but_never_started_is_requeued(
    settings_factory: Callable[..., Settings], make_account: Callable[..., Account]
) -> None:
    settings = settings_factory()
    ctx = AppContext.build(settings)
    owner = make_account()
    # What a server leaves behind if it dies between committing a placement and spawning.
    with ctx.session_factory.begin() as session:
        session.add(
            Job(
                id="job-0000000000000001",
                owner_id=owner.user.id,
                name="orphan",
                command="echo ran after requeue",
                gpu_count=1,
                environment={},
                gpus=[],
            )
        )
    with ctx.session_factory.begin() as session:
        assert change_status(
            session,
            "job-0000000000000001",
            JobStatus.PENDING,
            JobStatus.RUNNING,
            node=settings.node_name,
            gpus=[0],
        )
    with TestClient(create_app(settings, ctx)) as client:
        wait_until(
            lambda: (
                client.get("/api/jobs/job-0000000000000001", headers=owner.headers).json()["status"]
                in FINAL
            ),
            what="the requeued job to run",
        )
        job = client.get("/api/jobs/job-0000000000000001", headers=owner.headers).json()
    assert job["status"] == "completed"
    transitions = [(e["from_status"], e["to_status"]) for e in job["events"]]
    assert transitions == [
        ("pending", "running"),
        ("running", "pending"),
        ("pending", "running"),
        ("running", "completed"),
    ]
    assert job["events"][1]["reason"].startswith("requeued")


def test_a_process_started_just_before_a_kill_is_adopted_not_requeued(
    server: Server, tmp_path: Path
) -> None:
    server.start()
    keep = tmp_path / "keep"
    job_id = server.submit(blocker(keep, before="echo started once"))
    server.wait(job_id, {"running"})
    server.kill()
    # What the server leaves if it dies after spawning the process and before recording
    # its handle: the database says running with no handle, the handle file says where.
    engine = create_engine(f"sqlite:///{server.data_dir / 'sparktrainer.db'}")
    with engine.begin() as connection:
        connection.execute(update(Job).where(Job.id == job_id).values(handle=None))
    engine.dispose()

    server.start()
    wait_until(
        lambda: server.get(f"/api/jobs/{job_id}")["status"] != "running" or _adopted(server, job_id)
    )
    assert server.get(f"/api/jobs/{job_id}")["status"] == "running"
    keep.touch()
    done = server.wait(job_id, FINAL)
    assert done["status"] == "completed"
    transitions = [(e["from_status"], e["to_status"]) for e in done["events"]]
    assert transitions == [("pending", "running"), ("running", "completed")]
    log = httpx.get(f"{server.base}/api/jobs/{job_id}/logs", headers=server.headers).text
    assert log == "started once\n"


def _adopted(server: Server, job_id: str) -> bool:
    """The job holds its GPU again once the restarted server has adopted its process."""
    gpus = httpx.get(f"{server.base}/api/gpus", headers=server.headers).json()
    return [g["job_id"] for g in gpus if g["in_use"]] == [job_id]
