"""Real ``sparktrainer serve`` processes sharing one database, for the runtime's tests."""

from __future__ import annotations

import getpass
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import PASSWORD, SECRET_KEY
from tests.jobs.helpers import wait_until


class Server:
    """``database_url`` None: the embedded default (SQLite in the data directory)."""

    def __init__(self, data_dir: Path, database_url: str | None, **env: str) -> None:
        self.data_dir = data_dir
        self.database_url = database_url
        self.extra_env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.base = ""
        self.headers: dict[str, str] = {}
        self.log = data_dir.parent / f"{data_dir.name}.log"

    def start(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("SPARKTRAINER_")}
        env.update(
            SPARKTRAINER_DATA_DIR=str(self.data_dir),
            SPARKTRAINER_SECRET_KEY=SECRET_KEY,
            SPARKTRAINER_ADMIN_PASSWORD=PASSWORD,
            SPARKTRAINER_JOB_USER=getpass.getuser(),
            SPARKTRAINER_KILL_GRACE_SECONDS="2",
            SPARKTRAINER_LOG_LEVEL="WARNING",
        )
        if self.database_url is not None:
            env["SPARKTRAINER_DATABASE_URL"] = self.database_url
        env.update(self.extra_env)
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
        if self.proc.poll() is not None:
            output = self.log.read_text(errors="replace")[-4000:]
            raise AssertionError(f"the server exited with {self.proc.returncode}:\n{output}")
        try:
            return httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def get(self, path: str) -> Any:
        response = httpx.get(f"{self.base}{path}", headers=self.headers, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    def post(self, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        return httpx.post(f"{self.base}{path}", json=body, headers=self.headers, timeout=30)

    def submit(self, command: str, gpu_count: int = 1) -> str:
        response = self.post(
            "/api/jobs", {"name": "two-process", "command": command, "gpu_count": gpu_count}
        )
        assert response.status_code == 201, response.text
        job_id: str = response.json()["id"]
        return job_id

    def wait(self, job_id: str, statuses: set[str], timeout: float = 60) -> dict[str, Any]:
        wait_until(
            lambda: self.get(f"/api/jobs/{job_id}")["status"] in statuses,
            timeout=timeout,
            what=f"{job_id} to be {statuses}",
        )
        job: dict[str, Any] = self.get(f"/api/jobs/{job_id}")
        return job
