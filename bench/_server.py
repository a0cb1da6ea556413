"""The real server as a subprocess, and a throw-away PostgreSQL database for it."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

import httpx

from bench._common import stop_process

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
ADMIN_PASSWORD = "bench-admin-password"
SECRET_KEY = "bench-signing-key-" + "x" * 32


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def serve_command() -> list[str]:
    """``sparktrainer serve`` from the running interpreter's environment."""
    script = Path(sys.executable).parent / "sparktrainer"
    if script.exists():
        return [str(script), "serve"]
    found = shutil.which("sparktrainer")
    if found:
        return [found, "serve"]
    return [sys.executable, "-m", "spark_trainer", "serve"]


class Server:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
        self.proc = proc
        self.port = port
        self.log_path = log_path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def _wait_healthy(server: Server, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=2) as client:
        while time.monotonic() < deadline:
            if server.proc.poll() is not None:
                raise RuntimeError(
                    f"server exited with {server.proc.returncode}:\n{server.log_tail()}"
                )
            try:
                if client.get(f"{server.base_url}/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    raise RuntimeError(f"server not healthy after {timeout_s:.0f}s:\n{server.log_tail()}")


@contextmanager
def running_server(
    data_dir: Path,
    *,
    env: dict[str, str] | None = None,
    extra_args: list[str] | None = None,
    startup_timeout_s: float = 60,
) -> Iterator[Server]:
    """Starts ``sparktrainer serve`` on a free port with a clean ``SPARKTRAINER_*`` env.

    ``env`` adds or overrides variables (``SPARKTRAINER_DATABASE_URL`` for PostgreSQL);
    the admin password, the signing key and the log level are set here. The server's
    output goes to ``data_dir/server.log``.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SPARKTRAINER_")}
    full_env.update(
        {
            "SPARKTRAINER_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "SPARKTRAINER_SECRET_KEY": SECRET_KEY,
            "SPARKTRAINER_LOG_LEVEL": "WARNING",
            "SPARKTRAINER_GRACEFUL_SHUTDOWN_SECONDS": "2",
            "PYTHONUNBUFFERED": "1",
        }
    )
    full_env.update(env or {})
    cmd = [
        *serve_command(),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        *(extra_args or []),
    ]
    log_path = data_dir / "server.log"
    log: IO[bytes] = log_path.open("wb")
    proc = subprocess.Popen(cmd, env=full_env, stdout=log, stderr=subprocess.STDOUT)
    server = Server(proc, port, log_path)
    try:
        _wait_healthy(server, startup_timeout_s)
        yield server
    finally:
        stop_process(proc, grace_s=15)
        log.close()


def postgres_reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5432), 2):
            return True
    except OSError:
        return False


@contextmanager
def temporary_postgres_database(
    admin_url: str, prefix: str = "sparktrainer_bench"
) -> Iterator[str]:
    """Creates an empty database, yields its SQLAlchemy URL, drops it afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    url = make_url(admin_url)
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    name = f"{prefix}_{secrets.token_hex(4)}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield url.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
