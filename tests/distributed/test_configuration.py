"""Distributed mode refuses to start half-configured, and says which setting is missing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from spark_trainer.settings import Settings
from tests.conftest import SECRET_KEY


def test_celery_mode_needs_postgresql_and_redis(tmp_path: Path) -> None:
    sqlite = Settings(data_dir=tmp_path, executor="celery", redis_url="redis://r:6379/0")
    assert "SPARKTRAINER_DATABASE_URL" in (sqlite.shared_services_problem() or "")
    no_redis = Settings(
        data_dir=tmp_path,
        executor="celery",
        database_url="postgresql+psycopg://db/x",
        secret_key=SECRET_KEY,
    )
    assert "SPARKTRAINER_REDIS_URL" in (no_redis.shared_services_problem() or "")
    complete = Settings(
        data_dir=tmp_path,
        executor="celery",
        database_url="postgresql+psycopg://db/x",
        redis_url="redis://r:6379/0",
        secret_key=SECRET_KEY,
    )
    assert complete.shared_services_problem() is None
    assert complete.effective_broker_url == "redis://r:6379/0"


def test_the_worker_command_refuses_embedded_mode(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPARKTRAINER_")}
    result = subprocess.run(
        [sys.executable, "-m", "spark_trainer", "worker", "--data-dir", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "SPARKTRAINER_EXECUTOR=celery" in result.stderr
