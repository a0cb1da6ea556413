"""Faults at the worst moments: the database gone at a job's exit, the server killed in the
middle of a job-end handler, Redis down when a job ends."""

from __future__ import annotations

import logging
import shlex
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from spark_trainer.app import create_app
from spark_trainer.context import MODEL_REGISTRATION, AppContext
from spark_trainer.models import GpuAllocation, Job, JobOutboxDelivery, ModelFile, ModelVersion
from spark_trainer.settings import Settings
from tests.conftest import Account
from tests.jobs.helpers import FINAL, PY, blocker, submit, wait_for, wait_until
from tests.runtime.servers import Server
from tests.services import require_postgres

FILES = 1500

WRITE_OUTPUT = f"""
import os, pathlib
out = pathlib.Path(os.environ["SPARKTRAINER_OUTPUT_DIR"])
for i in range({FILES}):
    (out / f"shard-{{i:05d}}.bin").write_bytes(os.urandom(4096))
"""


def _count(url: str, query: object) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.scalar(query) or 0)  # type: ignore[call-overload]
    finally:
        engine.dispose()


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_an_exit_while_the_database_is_away_is_recorded_when_it_is_back(
    client: TestClient,
    alice: Account,
    database_url: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    name = make_url(database_url).database
    admin = make_url(require_postgres()).set(drivername="postgresql").render_as_string(False)
    # At its very end the job shuts its database away from everyone (terminating every
    # connection, refusing new ones) and exits 0 while it is gone.
    away = (
        "import psycopg, sys\n"
        "with psycopg.connect(sys.argv[1], autocommit=True) as c:\n"
        "    c.execute(f'ALTER DATABASE \"{sys.argv[2]}\" ALLOW_CONNECTIONS false')\n"
        "    c.execute('SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = %s', (sys.argv[2],))\n"
    )
    go = tmp_path / "go"
    command = blocker(go) + f"; {PY} -c {shlex.quote(away)} {shlex.quote(admin)} {name}"
    job = submit(client, alice.headers, command=command)
    wait_for(client, alice.headers, job["id"], {"running"})
    admin_engine = create_engine(require_postgres(), isolation_level="AUTOCOMMIT")
    try:
        with caplog.at_level(logging.ERROR):
            go.touch()
            wait_until(
                lambda: "recording a job's exit failed" in caplog.text,
                timeout=30,
                what="the exit to fail to record",
            )
            # And the engine's next pass fails too, while the database is still away.
            failed = caplog.text.count("scheduler pass failed")
            wait_until(
                lambda: caplog.text.count("scheduler pass failed") > failed,
                timeout=30,
                what="a pass while the database is away",
            )
    finally:
        with admin_engine.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        admin_engine.dispose()
    done = wait_for(client, alice.headers, job["id"], FINAL)
    assert done["status"] == "completed", done
    assert done["exit_code"] == 0
    assert [e["to_status"] for e in done["events"]] == ["running", "completed"]
    assert _count(database_url, select(func.count()).select_from(GpuAllocation)) == 0


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_handler_killed_midway_completes_once_after_restart(
    database_url: str, tmp_path: Path
) -> None:
    server = Server(tmp_path / "data", database_url, SPARKTRAINER_GPUS="1")
    try:
        server.start()
        job_id = server.submit(f"{PY} -c {shlex.quote(WRITE_OUTPUT)}")
        artifacts = tmp_path / "data" / "artifacts"
        # Registration stores every output file before it writes the model's rows: kill
        # the server once files are arriving and the model is not yet registered.
        wait_until(
            lambda: artifacts.exists() and any(p.is_file() for p in artifacts.rglob("*")),
            timeout=60,
            what="registration to begin",
        )
        assert _count(database_url, select(func.count()).select_from(ModelVersion)) == 0
        server.kill()
        server.start()
        wait_until(
            lambda: _count(database_url, select(func.count()).select_from(ModelVersion)) == 1,
            timeout=60,
            what="the registration to complete after restart",
        )
        # Recorded as delivered with the model, in its transaction: no later pass
        # registers it again.
        delivered = select(func.count()).where(
            JobOutboxDelivery.handler == MODEL_REGISTRATION,
            JobOutboxDelivery.delivered_at.is_not(None),
        )
        assert _count(database_url, delivered) == 1
        assert _count(database_url, select(func.count()).select_from(ModelVersion)) == 1
        assert _count(database_url, select(func.count()).select_from(ModelFile)) == FILES
        models = server.get("/api/models")
        assert [m["source_job_id"] for m in models["items"]] == [job_id]
    finally:
        server.kill()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[Callable[[bool], str]]:
    """A Redis of this test's own, which it can stop and start again on the same port."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    pidfile = tmp_path / "redis.pid"

    def run(up: bool) -> str:
        if up:
            subprocess.run(
                [
                    "redis-server",
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--daemonize",
                    "yes",
                    "--pidfile",
                    str(pidfile),
                ],
                check=True,
                capture_output=True,
            )
            wait_until(lambda: _redis_answers(port), what="redis to start")
        else:
            subprocess.run(["redis-cli", "-p", str(port), "shutdown", "nosave"], check=False)
            wait_until(lambda: not _redis_answers(port), what="redis to stop")
        return f"redis://127.0.0.1:{port}/0"

    yield run
    run(False)


def _redis_answers(port: int) -> bool:
    import redis

    try:
        return bool(redis.Redis(port=port, socket_connect_timeout=0.2).ping())
    except redis.RedisError:
        return False


def test_a_job_ending_while_redis_is_down_gets_its_model_registered(
    settings_factory: Callable[..., Settings],
    make_account: Callable[..., Account],
    private_redis: Callable[[bool], str],
    tmp_path: Path,
) -> None:
    url = private_redis(True)
    settings = settings_factory(redis_url=url)
    ctx = AppContext.build(settings)
    owner = make_account()
    go = tmp_path / "go"
    write = (
        "import os, pathlib, sparktrainer\n"
        "pathlib.Path(os.environ['SPARKTRAINER_OUTPUT_DIR'], 'model.bin').write_bytes(b'w' * 64)\n"
        "sparktrainer.log({'loss': 0.5}, step=1)\n"
    )
    command = blocker(go) + f"; {PY} -c {shlex.quote(write)}"
    with TestClient(create_app(settings, ctx)) as client:
        job = submit(client, owner.headers, command=command)
        wait_for(client, owner.headers, job["id"], {"running"})
        private_redis(False)
        go.touch()
        # The API answers 503 while Redis is away (rate limits live there): ask the database.
        wait_until(
            lambda: (
                _count(
                    settings.effective_database_url,
                    select(Job.status)
                    .where(Job.id == job["id"], Job.status == "completed")
                    .exists()
                    .select(),
                )
                == 1
            ),
            timeout=30,
            what="the job to complete",
        )
        private_redis(True)
        wait_until(
            lambda: client.get("/api/models", headers=owner.headers).json()["total"] == 1,
            timeout=30,
            what="the model to be registered",
        )
        models = client.get("/api/models", headers=owner.headers).json()["items"]
    assert [m["source_job_id"] for m in models] == [job["id"]]
