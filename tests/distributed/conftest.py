"""Fixtures of the distributed-mode tests: PostgreSQL (required), a private Redis, and a
cluster of two API processes and two workers (2 and 4 virtual GPUs)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from spark_trainer.models import Base
from tests.distributed.cluster import Cluster, PrivateRedis


@pytest.fixture
def postgres_url(postgres_database: str) -> str:
    engine = create_engine(postgres_database)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} CASCADE"))
    engine.dispose()
    return postgres_database


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def cluster(
    tmp_path: Path, postgres_url: str, redis_server: PrivateRedis
) -> Iterator[Callable[..., Cluster]]:
    made: list[Cluster] = []

    def make(**options: Any) -> Cluster:
        made.append(Cluster(tmp_path, postgres_url, redis_server, **options))
        made[-1].start()
        return made[-1]

    yield make
    for running in made:
        running.stop()
