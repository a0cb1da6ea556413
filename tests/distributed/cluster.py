"""A real distributed deployment for the tests: PostgreSQL, a private Redis, API processes
(``sparktrainer serve``) and GPU workers (``sparktrainer worker``), all subprocesses."""

from __future__ import annotations

import getpass
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import redis

from tests.conftest import SECRET_KEY
from tests.jobs.helpers import wait_until
from tests.runtime.servers import Server

# Short enough that fault tests stay quick; long enough that a worker restarted at once is
# back before its node counts as lost, even on a loaded 2-core machine (where importing
# the worker alone has taken 10 s).
HEARTBEAT_SECONDS = 0.5
STALE_SECONDS = 40.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PrivateRedis:
    """A Redis of the test's own, stoppable and restartable on the same port."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.pidfile = directory / "redis.pid"
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def answers(self) -> bool:
        try:
            return bool(redis.Redis(port=self.port, socket_connect_timeout=0.2).ping())
        except redis.RedisError:
            return False

    def start(self) -> None:
        subprocess.run(
            [
                *("redis-server", "--bind", "127.0.0.1", "--port", str(self.port)),
                *("--save", "", "--appendonly", "no", "--daemonize", "yes"),
                *("--pidfile", str(self.pidfile)),
            ],
            check=True,
            capture_output=True,
        )
        wait_until(self.answers, what="redis to start")

    def stop(self) -> None:
        subprocess.run(
            ["redis-cli", "-p", str(self.port), "shutdown", "nosave"],
            check=False,
            capture_output=True,
        )
        wait_until(lambda: not self.answers(), what="redis to stop")


def cluster_env(redis_url: str, stale_seconds: float) -> dict[str, str]:
    return {
        "SPARKTRAINER_EXECUTOR": "celery",
        "SPARKTRAINER_REDIS_URL": redis_url,
        "SPARKTRAINER_NODE_HEARTBEAT_SECONDS": str(HEARTBEAT_SECONDS),
        "SPARKTRAINER_NODE_STALE_SECONDS": str(stale_seconds),
        "SPARKTRAINER_LEADER_LEASE_SECONDS": "3",
    }


class Worker:
    """A ``sparktrainer worker`` process: one node with a virtual inventory of ``gpus``, or
    with this machine's GPUs (NVML: none here) when ``gpus`` is None."""

    def __init__(
        self, data_dir: Path, database_url: str, name: str, gpus: int | None, **env: str
    ) -> None:
        self.data_dir = data_dir
        self.name = name
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SPARKTRAINER_")}
        self.env.update(
            SPARKTRAINER_DATA_DIR=str(data_dir),
            SPARKTRAINER_DATABASE_URL=database_url,
            SPARKTRAINER_SECRET_KEY=SECRET_KEY,
            SPARKTRAINER_JOB_USER=getpass.getuser(),
            SPARKTRAINER_KILL_GRACE_SECONDS="2",
            SPARKTRAINER_LOG_LEVEL="WARNING",
            SPARKTRAINER_NODE_NAME=name,
            **env,
        )
        if gpus is not None:
            self.env["SPARKTRAINER_GPUS"] = str(gpus)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.data_dir.parent / f"{self.data_dir.name}.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "spark_trainer", "worker"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def signal(self, sig: signal.Signals) -> None:
        """Sends ``sig`` and waits for the worker to exit."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)

    def freeze(self) -> None:
        """SIGSTOP: no heartbeat, no database access, while its jobs' processes run on, as
        in a network partition."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)


class Cluster:
    def __init__(
        self,
        tmp_path: Path,
        database_url: str,
        redis_server: PrivateRedis,
        *,
        stale_seconds: float = STALE_SECONDS,
    ) -> None:
        env = cluster_env(redis_server.url, stale_seconds)
        self.redis = redis_server
        self.database_url = database_url
        self.apis = [
            Server(tmp_path / f"api{i}", database_url, SPARKTRAINER_NODE_NAME=f"api{i}", **env)
            for i in (1, 2)
        ]
        self.workers = {
            name: Worker(tmp_path / name, database_url, name, gpus, **env)
            for name, gpus in (("node2", 2), ("node4", 4))
        }

    def start(self) -> None:
        self.apis[0].start()  # first: it migrates the database and becomes the leader
        self.apis[1].start()
        for worker in self.workers.values():
            worker.start()
        wait_until(self.ready, timeout=60, what="both workers to register and answer pings")

    def ready(self) -> bool:
        """Every worker's node is registered and its Celery consumer answers: a worker
        registers its node (heartbeats) before its consumer joins the broker."""
        nodes = {row["node"] for row in self.apis[0].get("/api/gpus")}
        if nodes != set(self.workers):
            return False
        workers = httpx.get(f"{self.apis[0].base}/readyz", timeout=30).json()["workers"]
        return bool(workers == dict.fromkeys(sorted(self.workers), "live"))

    def stop(self) -> None:
        for worker in self.workers.values():
            if worker.proc is not None:
                worker.thaw()  # a stopped process cannot be waited for after SIGKILL
            worker.signal(signal.SIGKILL)
        for api in self.apis:
            api.kill()
