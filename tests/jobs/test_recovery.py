"""A server killed with SIGKILL and started again: no job stays running, no GPU stays held,
living job processes are adopted, and logs survive."""

from __future__ import annotations

import getpass
import os
import signal
import socket
import subprocess
import sys
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
from tests.conftest import PASSWORD, Account
from tests.jobs.helpers import FINAL, blocker, wait_until


class Server:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.base = ""
        self.log = data_dir.parent / "server.log"

    def start(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("SPARKTRAINER_")}
        env.update(
            SPARKTRAINER_DATA_DIR=str(self.data_dir),
            SPARKTRAINER_ADMIN_PASSWORD=PASSWORD,
            SPARKTRAINER_GPUS="4",
            SPARKTRAINER_JOB_USER=getpass.getuser(),
        )
        # Appended across restarts: a start that fails says why in the assertion.
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "spark_trainer", "serve", "--port", str(port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.base = f"http://127.0.0.1:{port}"
        # Generous: a start runs the migrations and imports, slow on a loaded CI machine.
        wait_until(self._up, timeout=90, what="the server to start")
        token = httpx.post(
            f"{self.base}/api/auth/login", json={"username": "admin", "password": PASSWORD}
        ).json()["access_token"]
        self.headers = {"Authorization": f"Bearer {token}"}

    def _up(self) -> bool:
        assert self.proc is not None
        assert self.proc.poll() is None, self.log.read_text(errors="replace")[-4000:]
        try:
            return httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def job(self, job_id: str) -> dict[str, object]:
        body: dict[str, object] = httpx.get(
            f"{self.base}/api/jobs/{job_id}", headers=self.headers
        ).json()
        return body

    def submit(self, command: str) -> str:
        response = httpx.post(
            f"{self.base}/api/jobs",
            json={"name": "survivor", "command": command, "gpu_count": 1},
            headers=self.headers,
        )
        assert response.status_code == 201, response.text
        job_id: str = response.json()["id"]
        return job_id

    def wait(self, job_id: str, statuses: set[str]) -> dict[str, object]:
        wait_until(lambda: self.job(job_id)["status"] in statuses, timeout=60, what=job_id)
        return self.job(job_id)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    running = Server(tmp_path / "data")
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
    assert server.job(survivor)["status"] == "running"
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
    wait_until(lambda: server.job(job_id)["status"] != "running" or _adopted(server, job_id))
    assert server.job(job_id)["status"] == "running"
    keep.touch()
    done = server.wait(job_id, FINAL)
    assert done["status"] == "completed"
    transitions = [(e["from_status"], e["to_status"]) for e in done["events"]]  # type: ignore[attr-defined]
    assert transitions == [("pending", "running"), ("running", "completed")]
    log = httpx.get(f"{server.base}/api/jobs/{job_id}/logs", headers=server.headers).text
    assert log == "started once\n"


def _adopted(server: Server, job_id: str) -> bool:
    """The job holds its GPU again once the restarted server has adopted its process."""
    gpus = httpx.get(f"{server.base}/api/gpus", headers=server.headers).json()
    return [g["job_id"] for g in gpus if g["in_use"]] == [job_id]
