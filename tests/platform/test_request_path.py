"""The request path across real API processes: the user cache's lifetime with two
processes sharing Redis, and a shutdown with streams open."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.services import require_redis

CLI = [sys.executable, "-m", "spark_trainer"]
ADMIN_PASSWORD = "admin-password-1"
# Far longer than the test waits: a change seen in time can only have come over the bus.
CACHE_SECONDS = 60
SEEN_WITHIN_S = 3.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., tuple[str, subprocess.Popen[bytes]]]]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(**extra: str) -> tuple[str, subprocess.Popen[bytes]]:
        port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SPARKTRAINER_")}
        env.update(
            {
                "SPARKTRAINER_DATA_DIR": str(tmp_path / "data"),
                "SPARKTRAINER_ADMIN_PASSWORD": ADMIN_PASSWORD,
                "SPARKTRAINER_SECRET_KEY": "test-signing-key-" + "x" * 32,
                "SPARKTRAINER_GPUS": "0",
                "SPARKTRAINER_LOG_LEVEL": "WARNING",
                **extra,
            }
        )
        log = (tmp_path / f"server-{port}.log").open("wb")
        proc = subprocess.Popen(
            [*CLI, "serve", "--port", str(port)], env=env, stdout=log, stderr=log
        )
        procs.append(proc)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    return base, proc
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"server did not start: {(tmp_path / log.name).read_text()}")
            time.sleep(0.1)

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _login(base: str, username: str, password: str) -> dict[str, str]:
    response = httpx.post(
        f"{base}/api/auth/login", json={"username": username, "password": password}
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def _within(seconds: float, condition: Callable[[], bool]) -> float:
    """Seconds until ``condition`` held; fails the test if it did not within ``seconds``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > seconds:
            pytest.fail(f"not seen within {seconds} s")
        time.sleep(0.02)
    return time.monotonic() - started


@pytest.mark.redis
def test_user_changes_reach_another_api_process_within_the_cache_lifetime(
    start_server: Callable[..., tuple[str, subprocess.Popen[bytes]]],
) -> None:
    shared = {
        "SPARKTRAINER_REDIS_URL": require_redis(),
        "SPARKTRAINER_USER_CACHE_SECONDS": str(CACHE_SECONDS),
    }
    writer, _ = start_server(**shared)
    reader, _ = start_server(**shared)
    admin = _login(writer, "admin", ADMIN_PASSWORD)
    created = httpx.post(
        f"{writer}/api/users",
        json={"username": "carol", "password": "carol-password-1"},
        headers=admin,
    )
    assert created.status_code == 201, created.text
    carol_id = created.json()["id"]
    carol = _login(writer, "carol", "carol-password-1")

    # The reader process caches carol as a plain user.
    assert httpx.get(f"{reader}/api/auth/me", headers=carol).json()["role"] == "user"
    assert httpx.get(f"{reader}/api/users", headers=carol).status_code == 403

    promoted = httpx.patch(f"{writer}/api/users/{carol_id}", json={"role": "admin"}, headers=admin)
    assert promoted.status_code == 200
    _within(
        SEEN_WITHIN_S,
        lambda: httpx.get(f"{reader}/api/users", headers=carol).status_code == 200,
    )
    assert httpx.get(f"{reader}/api/auth/me", headers=carol).json()["role"] == "admin"

    disabled = httpx.patch(
        f"{writer}/api/users/{carol_id}", json={"is_active": False}, headers=admin
    )
    assert disabled.status_code == 200
    _within(
        SEEN_WITHIN_S,
        lambda: httpx.get(f"{reader}/api/auth/me", headers=carol).status_code == 401,
    )
    assert httpx.get(f"{writer}/api/auth/me", headers=carol).status_code == 401


def test_sigterm_with_open_streams_exits_fast_and_ends_each_stream_cleanly(
    start_server: Callable[..., tuple[str, subprocess.Popen[bytes]]], tmp_path: Path
) -> None:
    # Grace far above the bound checked: only ending the streams can make it in time.
    base, proc = start_server(SPARKTRAINER_GRACEFUL_SHUTDOWN_SECONDS="30")
    admin = _login(base, "admin", ADMIN_PASSWORD)
    # A job that runs, logging nothing, past the test (the fixture that ends every test
    # kills it: its command line names the test's directory).
    job = httpx.post(
        f"{base}/api/jobs",
        json={"name": "waits", "command": f"sleep 120 # {tmp_path}", "gpu_count": 0},
        headers=admin,
    )
    assert job.status_code == 201, job.text
    job_id = job.json()["id"]
    token = admin["Authorization"].removeprefix("Bearer ")

    opened = threading.Barrier(11, timeout=30)
    outcomes: list[str] = []
    lock = threading.Lock()

    def sse() -> None:
        received = b""
        try:
            with httpx.stream(
                "GET", f"{base}/api/jobs/{job_id}/stream", headers=admin, timeout=30
            ) as response:
                chunks = response.iter_raw()
                received += next(chunks)
                opened.wait()
                for chunk in chunks:  # ends only when the response ends
                    received += chunk
            outcome = (
                "sse clean"
                if received.endswith(b": server shutting down\n\n")
                else (f"sse ended with {received[-60:]!r}")
            )
        except Exception as exc:  # reported through the assertion below
            outcome = f"sse error {exc!r}"
        with lock:
            outcomes.append(outcome)

    def ws() -> None:
        url = base.replace("http", "ws") + f"/ws/jobs/{job_id}/stream?access_token={token}"
        try:
            with connect(url, open_timeout=30) as socket_:
                opened.wait()
                try:
                    socket_.recv(timeout=30)
                    outcome = "ws got a message"
                except ConnectionClosed as closed:
                    code = closed.rcvd.code if closed.rcvd else None
                    outcome = "ws clean" if code == 1012 else f"ws closed with {code}"
        except Exception as exc:  # reported through the assertion below
            outcome = f"ws error {exc!r}"
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=f) for f in [sse] * 5 + [ws] * 5]
    for thread in threads:
        thread.start()
    opened.wait()
    time.sleep(0.2)  # every subscriber past its history, waiting for points

    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    took = time.monotonic() - started
    for thread in threads:
        thread.join(timeout=10)

    assert took < 2.0, f"shutdown took {took:.2f} s"
    print(f"shutdown with 10 open streams took {took:.2f} s")
    # uvicorn re-raises the signal once it has shut down gracefully.
    assert proc.returncode == -signal.SIGTERM
    assert sorted(outcomes) == ["sse clean"] * 5 + ["ws clean"] * 5
