"""A real API process per test (uvicorn in a subprocess), on SQLite and on PostgreSQL.

The hardening tests drive the server from outside, the way the audit did: raw sockets,
stalled clients, a Redis that goes away. The ``database_url`` fixture of tests/conftest.py
parametrizes each of them over both backends.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from tests.conftest import SECRET_KEY
from tests.jobs.helpers import wait_until

ADMIN_PASSWORD = "admin-password-1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    base: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    def login(self, username: str = "admin", password: str = ADMIN_PASSWORD) -> dict[str, str]:
        response = httpx.post(
            f"{self.base}/api/auth/login", json={"username": username, "password": password}
        )
        assert response.status_code == 200, response.text
        return {"Authorization": f"Bearer {response.json()['access_token']}"}

    def add_user(self, admin: dict[str, str], username: str, *, tier: str = "standard") -> None:
        response = httpx.post(
            f"{self.base}/api/users",
            json={"username": username, "password": ADMIN_PASSWORD, "tier": tier},
            headers=admin,
        )
        assert response.status_code == 201, response.text


StartServer = Callable[..., Server]


@pytest.fixture
def start_server(tmp_path: Path, database_url: str) -> Iterator[StartServer]:
    servers: list[Server] = []

    def start(**extra: str) -> Server:
        """A server with the given settings (``NAME=""`` leaves NAME unset)."""
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SPARKTRAINER_")}
        env.update(
            {
                "SPARKTRAINER_DATA_DIR": str(tmp_path / "data"),
                "SPARKTRAINER_DATABASE_URL": database_url,
                "SPARKTRAINER_ADMIN_PASSWORD": ADMIN_PASSWORD,
                "SPARKTRAINER_SECRET_KEY": SECRET_KEY,
                "SPARKTRAINER_GPUS": "4",
                "SPARKTRAINER_JOB_USER": os.environ.get("USER", "root"),
                "SPARKTRAINER_LOG_LEVEL": "WARNING",
                **extra,
            }
        )
        for name in [name for name, value in extra.items() if value == ""]:
            del env[name]  # "" unsets a default above
        log = tmp_path / f"server-{port}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "spark_trainer", "serve", "--port", str(port)],
                env=env,
                stdout=out,
                stderr=out,
            )
        server = Server(f"http://127.0.0.1:{port}", port, proc, log)
        servers.append(server)
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{server.base}/healthz", timeout=1).status_code == 200:
                    return server
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"server did not start: {log.read_text()}")
            time.sleep(0.1)

    yield start
    for server in servers:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()


class PrivateRedis:
    """A redis-server of the test's own, to stop and start (``password``: requirepass)."""

    def __init__(self, port: int, workdir: Path, password: str | None = None) -> None:
        self.port, self.workdir, self.password = port, workdir, password
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        server = shutil.which("redis-server")
        assert server is not None, "redis-server is not installed (scripts/services installs it)"
        self.proc = subprocess.Popen(
            [
                *(server, "--bind", "127.0.0.1", "--port", str(self.port)),
                *("--save", "", "--appendonly", "no", "--dir", str(self.workdir)),
                *(("--requirepass", self.password) if self.password else ()),
            ],
            stdout=subprocess.DEVNULL,
        )
        wait_until(self._answers, 10, "redis-server to answer")

    def _answers(self) -> bool:
        try:
            return bool(redis.Redis.from_url(self.url, socket_timeout=0.5).ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        self.proc = None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    redis_server = PrivateRedis(free_port(), tmp_path)
    redis_server.start()
    yield redis_server
    if redis_server.proc is not None:
        redis_server.stop()
