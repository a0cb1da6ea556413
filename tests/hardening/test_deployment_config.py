"""Items 9 and 15-20: what a new user meets when they deploy SparkTrainer.

9: the data directory is 0700 and the server's files in it 0600.
15: a crash mid-upload leaves no .part file past the next start, whatever its age.
16: API processes sharing a database or Redis must share SPARKTRAINER_SECRET_KEY.
17: /readyz answers the spec's four keys, and what backs each.
18: virtual GPUs report numbers (a configured size, zero readings), marked virtual.
19: without GPUs, start-up says how to configure some and the 400 names the setting.
20: updated_at is not before created_at; the README names model files' `hash`; the
    first /api/metrics reports a real cpu_percent.
"""

from __future__ import annotations

import fcntl
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from spark_trainer.app import create_app
from spark_trainer.context import AppContext
from spark_trainer.gpus.inventory import NO_GPUS_HINT, NvmlGpuInventory
from spark_trainer.settings import Settings
from tests.conftest import Account
from tests.hardening.conftest import PrivateRedis, StartServer, free_port
from tests.jobs.helpers import submit, wait_for, wait_until

README = Path(__file__).resolve().parents[2] / "README.md"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_data_dir_is_private(
    start_server: StartServer, tmp_path: Path, database_url: str
) -> None:
    data = tmp_path / "data"
    # An existing installation made with the umask's modes is tightened at start.
    data.mkdir(mode=0o755)
    server = start_server()
    admin = server.login()
    job = httpx.post(
        f"{server.base}/api/jobs",
        json={"name": "logs", "command": "echo hello", "gpu_count": 1},
        headers=admin,
    ).json()
    assert _mode(data) == 0o700
    database = Path(database_url.removeprefix("sqlite:///"))
    for path in (database, database.with_name(database.name + "-wal"), data / "secret_key"):
        if path.exists():
            assert _mode(path) == 0o600, path
    assert database.exists()
    # Job logs are under the 0700 directory: no other local user can reach them.
    assert (data / "jobs" / job["id"]).resolve().is_relative_to(data)


def test_stale_part_files_are_removed_at_start_whatever_their_age(
    settings: Settings, tmp_path: Path
) -> None:
    temp = settings.artifacts_root / "tmp"
    temp.mkdir(parents=True)
    fresh = temp / "blob-crashed.part"
    fresh.write_bytes(b"half an upload")  # written a moment ago, by a process now gone
    held = temp / "blob-in-progress.part"
    held.write_bytes(b"an upload another process is writing")
    with held.open("rb") as owner:
        fcntl.flock(owner, fcntl.LOCK_EX)
        AppContext.build(settings).close()
        assert not fresh.exists()
        assert held.exists()  # a live writer's file is kept


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_serve_refuses_a_shared_database_without_a_shared_secret_key(
    database_url: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPARKTRAINER_")}
    env.update(SPARKTRAINER_DATABASE_URL=database_url, SPARKTRAINER_DATA_DIR=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "-m", "spark_trainer", "serve", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "SPARKTRAINER_SECRET_KEY must be set" in result.stdout + result.stderr
    readme = README.read_text()
    assert "They must share `SPARKTRAINER_SECRET_KEY`" in readme


def test_readyz_answers_four_keys_with_redis(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    private = PrivateRedis(free_port(), tmp_path, password="hunter2")
    private.start()
    settings = settings_factory(redis_url=private.url)
    ctx = AppContext.build(settings)
    try:
        with TestClient(create_app(settings, ctx)) as client:
            body = client.get("/readyz").json()
    finally:
        ctx.close()
        private.stop()
    backends = body.pop("backends")
    assert body == {
        "status": "ready",
        "database": True,
        "redis": True,
        "celery": True,
        "workers": {},
    }
    assert backends["redis"] == f"redis://127.0.0.1:{private.port}/0"
    assert backends["celery"] == "in-process"


def test_virtual_gpus_report_numbers(
    settings_factory: Callable[..., Settings], make_account: Callable[..., Account]
) -> None:
    settings = settings_factory(gpus="2x24GB")
    ctx = AppContext.build(settings)
    try:
        with TestClient(create_app(settings, ctx)) as client:
            account = make_account()
            gpus = client.get("/api/gpus", headers=account.headers).json()
    finally:
        ctx.close()
    assert len(gpus) == 2
    for gpu in gpus:
        assert gpu["virtual"] is True
        assert gpu["memory_total"] == 24 * 1024**3
        for reading in ("memory_used", "utilization", "temperature", "power_usage"):
            assert gpu[reading] == 0, (reading, gpu)


def test_without_gpus_startup_and_the_400_say_what_to_set(
    start_server: StartServer,
    settings_factory: Callable[..., Settings],
    make_account: Callable[..., Account],
) -> None:
    server = start_server(SPARKTRAINER_GPUS="")
    server.proc.terminate()
    server.proc.wait(timeout=30)
    printed = " ".join(server.log.read_text().split())  # as wrapped for the terminal
    # On a machine with GPUs NVML finds them, and there is nothing to say.
    assert (" ".join(NO_GPUS_HINT.split()) in printed) == (not NvmlGpuInventory().devices())

    settings = settings_factory(gpus="0")
    ctx = AppContext.build(settings)
    try:
        with TestClient(create_app(settings, ctx)) as client:
            account = make_account()
            response = client.post(
                "/api/jobs",
                json={"name": "n", "command": "true", "gpu_count": 4},
                headers=account.headers,
            )
    finally:
        ctx.close()
    assert response.status_code == 400
    assert "SPARKTRAINER_GPUS=4" in response.json()["message"]


def test_a_new_experiment_is_not_updated_before_it_was_created(
    client: TestClient, alice: Account
) -> None:
    created = client.post("/api/experiments", json={"name": "e"}, headers=alice.headers).json()
    assert created["updated_at"] == created["created_at"]


def test_the_readme_names_the_model_files_hash_key(client: TestClient, alice: Account) -> None:
    job = submit(
        client,
        alice.headers,
        command='echo w > "$SPARKTRAINER_OUTPUT_DIR/weights.bin"',
        model_name="m",
    )
    wait_for(client, alice.headers, job["id"], {"completed"})

    def models() -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = client.get("/api/models", headers=alice.headers).json()[
            "items"
        ]
        return items

    wait_until(lambda: bool(models()), 30, "the model registered")  # a job-end event
    files = client.get(f"/api/models/{models()[0]['id']}", headers=alice.headers).json()["files"]
    assert set(files[0]) == {"path", "size", "hash"}
    readme = README.read_text()
    assert "`hash`: the md5" in readme and "carry `md5`" not in readme


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_first_system_metrics_report_real_cpu_use(start_server: StartServer) -> None:
    server = start_server()
    first = httpx.get(f"{server.base}/api/metrics", headers=server.login()).json()
    assert first["cpu_percent"] > 0.0
