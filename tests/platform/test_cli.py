"""The CLI as an operator uses it: real processes, a real data directory."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.services import require_postgres

CLI = [sys.executable, "-m", "spark_trainer"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPARKTRAINER_")}
    env.update({"SPARKTRAINER_DATA_DIR": str(data_dir), **extra})
    return env


def _run(data_dir: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], env=_env(data_dir, **extra), capture_output=True, text=True, timeout=60
    )


def test_users_commands(tmp_path: Path) -> None:
    data = tmp_path / "data"
    created = _run(
        data, "users", "create", "dana", "--password", "dana-pass-1", "--tier", "premium"
    )
    assert created.returncode == 0, created.stderr
    assert "Created user 'dana'" in created.stdout
    # The first command on an empty data dir also made the admin, with a generated password.
    assert "Created user 'admin' with generated password" in created.stdout

    duplicate = _run(data, "users", "create", "dana", "--password", "dana-pass-1")
    assert duplicate.returncode == 1
    assert "already exists" in duplicate.stderr

    too_short = _run(data, "users", "create", "erin", "--password", "short")
    assert too_short.returncode == 2

    assert _run(data, "users", "set-tier", "dana", "standard").returncode == 0
    assert _run(data, "users", "disable", "dana").returncode == 0
    listed = _run(data, "users", "list", COLUMNS="200")
    assert listed.returncode == 0
    row = next(line for line in listed.stdout.splitlines() if "dana" in line)
    assert "standard" in row and " no " in row
    assert _run(data, "users", "disable", "nobody").returncode == 1


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str], Path]]:
    port = _free_port()
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [*CLI, "serve", "--port", str(port)],
        env=_env(data),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail(f"server did not start: {proc.communicate()[1]}")
    yield base, proc, data
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_serve_prints_a_generated_admin_password_once_and_logs_no_secret(
    server: tuple[str, subprocess.Popen[str], Path],
) -> None:
    _, proc, data = server
    secret_file = data / "secret_key"
    assert secret_file.stat().st_mode & 0o777 == 0o600
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=30)
    # uvicorn finishes the graceful shutdown, then re-raises SIGTERM for the parent to see.
    assert proc.returncode in (0, -signal.SIGTERM), stderr
    assert "Application shutdown complete." in stderr
    match = re.search(r"shown only now:\s+(\S+)", stdout)
    assert match, stdout
    password = match.group(1)
    assert password not in stderr
    assert secret_file.read_text() not in stdout + stderr


def test_serve_login_and_request_log(server: tuple[str, subprocess.Popen[str], Path]) -> None:
    base, proc, data = server
    bad = httpx.post(
        f"{base}/api/auth/login", json={"username": "admin", "password": "hunter2-guess"}
    )
    assert bad.status_code == 401
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=30)
    password = re.search(r"shown only now:\s+(\S+)", stdout).group(1)  # type: ignore[union-attr]

    # Restart on the same data dir: same admin, no new password printed.
    port = _free_port()
    again = subprocess.Popen(
        [*CLI, "serve", "--port", str(port)],
        env=_env(data),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                httpx.get(f"{base}/healthz", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        login = httpx.post(
            f"{base}/api/auth/login", json={"username": "admin", "password": password}
        )
        assert login.status_code == 200
        token = login.json()["access_token"]
        me = httpx.get(
            f"{base}/api/auth/me?access_token=x", headers={"Authorization": f"Bearer {token}"}
        )
        assert me.status_code == 200
    finally:
        again.send_signal(signal.SIGTERM)
        out2, err2 = again.communicate(timeout=30)
    assert "shown only now" not in out2
    log_lines = [line for line in err2.splitlines() if '"msg": "request"' in line]
    assert any('"path": "/api/auth/me"' in line and '"status": 200' in line for line in log_lines)
    for secret in (password, token, "hunter2-guess", "access_token=x"):
        assert secret not in err2 + stderr


def test_serve_on_postgres(tmp_path: Path) -> None:
    url = require_postgres()
    import secrets as _secrets

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"sparktrainer_cli_{_secrets.token_hex(4)}"
    admin = create_engine(make_url(url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    db_url = make_url(url).set(database=name).render_as_string(hide_password=False)
    try:
        result = _run(
            tmp_path,
            "users",
            "create",
            "pg-user",
            "--password",
            "pg-user-pass",
            SPARKTRAINER_DATABASE_URL=db_url,
            SPARKTRAINER_ADMIN_PASSWORD="chosen-admin-pass",
        )
        assert result.returncode == 0, result.stderr
        assert "generated password" not in result.stdout
        listed = _run(tmp_path, "users", "list", SPARKTRAINER_DATABASE_URL=db_url)
        assert "pg-user" in listed.stdout and "admin" in listed.stdout
        assert not (tmp_path / "sparktrainer.db").exists()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
