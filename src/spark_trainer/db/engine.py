"""Engine and session factory for SQLite (embedded) and PostgreSQL (distributed)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from spark_trainer.settings import Settings


def sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers run while the scheduler writes; busy_timeout turns writer
    # contention between threads and processes into a short wait instead of an error.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


# Connections held back from request sessions for the engine's own threads (scheduler,
# metrics writer, executor callbacks) and for stream subscribers' short reads.
RESERVED_CONNECTIONS = 8


SQLITE_POOL = (20, 20)  # (pool_size, max_overflow)
POSTGRES_POOL = (10, 20)


def request_session_limit(settings: Settings) -> int:
    """How many request sessions may be open at once.

    A request keeps its connection between thread-pool hops (auth, handler, commit). If
    more requests held connections than the pool has, every worker thread could end up
    waiting for a connection that only a request waiting for a worker thread can return:
    a deadlock. Bounding open sessions below the pool's capacity rules that out; requests
    beyond the bound wait on the event loop, holding nothing.
    """
    size, overflow = SQLITE_POOL if settings.is_sqlite else POSTGRES_POOL
    return max(1, size + overflow - RESERVED_CONNECTIONS)


def make_engine(settings: Settings) -> Engine:
    url = settings.effective_database_url
    if url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False},
            pool_size=SQLITE_POOL[0],
            max_overflow=SQLITE_POOL[1],
        )
        event.listen(engine, "connect", sqlite_pragmas)
        return engine
    return create_engine(
        url, pool_size=POSTGRES_POOL[0], max_overflow=POSTGRES_POOL[1], pool_pre_ping=True
    )


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    # Objects stay readable after commit so a handler can serialize what it just wrote.
    return sessionmaker(engine, expire_on_commit=False)
