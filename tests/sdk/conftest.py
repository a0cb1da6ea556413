"""A live ``sparktrainer serve`` for the SDK tests: a real process on a real port.

One server per test worker (SQLite, a virtual 4-GPU inventory), with a 3-second access
token lifetime so a refresh across an expiry is quick to see, and rate-limit windows of
3 seconds so a 429's ``Retry-After`` is short. The admin is premium (1000 requests a
window); ``limited`` is a standard user with 5.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import PASSWORD

ACCESS_TTL = 3
RATE_WINDOW = 3
STANDARD_LIMIT = 5


@dataclass(frozen=True)
class LiveServer:
    url: str
    data_dir: Path
    admin_password: str
    api_key: str
    limited_username: str
    limited_password: str
    limited_api_key: str
    log: Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def server_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPARKTRAINER_")}
    env.update(
        {
            "SPARKTRAINER_DATA_DIR": str(data_dir),
            "SPARKTRAINER_ADMIN_PASSWORD": PASSWORD,
            "SPARKTRAINER_SECRET_KEY": secrets.token_hex(32),
            "SPARKTRAINER_GPUS": "4",
            "SPARKTRAINER_ACCESS_TOKEN_TTL_SECONDS": str(ACCESS_TTL),
            "SPARKTRAINER_RATE_LIMIT_WINDOW_SECONDS": str(RATE_WINDOW),
            "SPARKTRAINER_RATE_LIMIT_STANDARD_PER_MINUTE": str(STANDARD_LIMIT),
            "SPARKTRAINER_KILL_GRACE_SECONDS": "2",
            "SPARKTRAINER_LOG_FORMAT": "text",
            # Jobs find this interpreter (with the SDK installed) as `python`.
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            **extra,
        }
    )
    return env


def start_server(data_dir: Path, log: Path, **extra: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "spark_trainer", "serve", "--port", str(port)],
        env=server_env(data_dir, **extra),
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"server did not answer in 60 s: {log.read_text()[-2000:]}")


def _token(url: str, username: str, password: str) -> str:
    response = httpx.post(
        f"{url}/api/auth/login", json={"username": username, "password": password}
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


def _api_key(url: str, token: str) -> str:
    response = httpx.post(
        f"{url}/api/auth/api-keys",
        json={"name": f"sdk-tests-{secrets.token_hex(3)}"},
        headers={"Authorization": f"Bearer {token}"},
    )
    response.raise_for_status()
    return str(response.json()["key"])


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("live")
    log = root / "server.log"
    process, url = start_server(root / "data", log)
    try:
        admin_token = _token(url, "admin", PASSWORD)
        response = httpx.post(
            f"{url}/api/users",
            json={"username": "limited", "password": PASSWORD, "tier": "standard"},
            headers={"Authorization": f"Bearer {admin_token}"},
        )
        response.raise_for_status()
        yield LiveServer(
            url=url,
            data_dir=root / "data",
            admin_password=PASSWORD,
            api_key=_api_key(url, admin_token),
            limited_username="limited",
            limited_password=PASSWORD,
            limited_api_key=_api_key(url, _token(url, "limited", PASSWORD)),
            log=log,
        )
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
