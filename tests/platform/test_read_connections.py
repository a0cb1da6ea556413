"""The request path's PostgreSQL reads (``db.reads``) are awaited, so the event loop goes on
serving while PostgreSQL works; they survive a dropped connection, and a read that fails
or is cancelled never leaves a busy connection behind for the next one. SQLite reads see
every commit and close their connection with their loop.

Run against the real server (the ``postgres_database`` fixture), on the reads' own loop.
"""

from __future__ import annotations

import asyncio
import gc
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, select, text

from spark_trainer.db.reads import (
    APPLICATION_NAME,
    POSTGRES_CONNECTIONS,
    ReadConnection,
    ReadDatabase,
)
from spark_trainer.errors import NotFound
from spark_trainer.models import User
from spark_trainer.settings import Settings
from tests.conftest import SECRET_KEY

SLEEP = text("SELECT pg_backend_pid() FROM pg_sleep(:seconds)")
PID = text("SELECT pg_backend_pid()")


@pytest.fixture
def reads(postgres_database: str, tmp_path: Path) -> Iterator[ReadDatabase]:
    settings = Settings(
        data_dir=tmp_path / "data", database_url=postgres_database, secret_key=SECRET_KEY
    )
    database = ReadDatabase(settings)
    yield database
    database.close()


def _pid(conn: ReadConnection) -> int:
    pid: int = conn.scalar(PID, {})
    return pid


def _sleep(seconds: float) -> Callable[[ReadConnection], int]:
    def read(conn: ReadConnection) -> int:
        pid: int = conn.scalar(SLEEP, {"seconds": seconds})
        return pid

    return read


def test_the_loop_serves_others_while_postgresql_works(reads: ReadDatabase) -> None:
    async def scenario() -> tuple[list[int], int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        beat = asyncio.create_task(ticker())
        pids = await asyncio.gather(*(reads.run(_sleep(0.3)) for _ in range(12)))
        beat.cancel()
        return pids, ticks

    pids, ticks = asyncio.run(scenario())
    # Twelve reads at once share the loop's few connections...
    assert 1 < len(set(pids)) <= POSTGRES_CONNECTIONS
    # ...and the loop kept running while they slept in the server: a blocking read would
    # have held it for the whole 3.6 s of sleeps, and the ticker never woke.
    assert ticks >= 10


def test_a_dropped_connection_is_replaced_and_the_read_answers(
    reads: ReadDatabase, postgres_database: str
) -> None:
    async def scenario() -> tuple[int, int]:
        first = await reads.run(_pid)
        admin = create_engine(postgres_database)
        try:
            with admin.begin() as conn:
                killed = conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE application_name = :name AND datname = current_database()"
                    ),
                    {"name": APPLICATION_NAME},
                ).all()
            assert killed
        finally:
            admin.dispose()
        return first, await reads.run(_pid)

    first, second = asyncio.run(scenario())
    assert second != first


def test_a_read_that_fails_or_is_cancelled_leaves_no_busy_connection(
    reads: ReadDatabase,
) -> None:
    def missing(conn: ReadConnection) -> None:
        conn.execute(select(User.id).where(User.id == "nobody"), {}).first()
        raise NotFound("No such thing")

    async def scenario() -> tuple[int, int, int]:
        pid = await reads.run(_pid)
        with pytest.raises(NotFound):
            await reads.run(missing)
        after_error = await reads.run(_pid)  # an application error: the connection is fine

        sleeping = asyncio.create_task(reads.run(_sleep(10)))
        await asyncio.sleep(0.3)
        sleeping.cancel()
        with pytest.raises(asyncio.CancelledError):
            await sleeping
        # Every connection answers at once: the cancelled read's was closed, not put back
        # busy (a read on it would fail, "another command is already in progress", or wait).
        answered = await asyncio.wait_for(
            asyncio.gather(*(reads.run(_pid) for _ in range(POSTGRES_CONNECTIONS))), 5
        )
        return pid, after_error, len(set(answered))

    pid, after_error, connections = asyncio.run(scenario())
    assert after_error == pid
    assert connections == POSTGRES_CONNECTIONS


def _open_files(path: Path) -> int:
    fds = Path("/proc/self/fd")
    return sum(1 for fd in fds.iterdir() if fd.exists() and fd.resolve() == path.resolve())


def test_sqlite_reads_see_each_commit_and_a_loop_takes_its_connection_with_it(
    tmp_path: Path,
) -> None:
    """SQLite reads run on the loop, one ``sqlite3`` connection per loop, in autocommit:
    each read sees what was committed before it (no snapshot kept open between reads),
    a second loop reads on a connection of its own, and a loop that is gone leaves no
    file open."""
    settings = Settings(data_dir=tmp_path, secret_key=SECRET_KEY)
    path = Path(str(make_url(settings.effective_database_url).database))
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("CREATE TABLE t (x INTEGER)")
    count = text("SELECT count(*) FROM t")
    database = ReadDatabase(settings)

    def rows(conn: ReadConnection) -> int:
        found: int = conn.scalar(count, {})
        return found

    def mark(conn: ReadConnection) -> None:
        conn.execute(text("CREATE TEMP TABLE mark (x INTEGER)"), {})  # this connection's own

    def marked(conn: ReadConnection) -> bool:
        return conn.scalar(text("SELECT count(*) FROM sqlite_temp_master"), {}) == 1

    async def first_loop() -> list[object]:
        seen: list[object] = [await database.run(rows)]
        writer.execute("INSERT INTO t VALUES (1)")
        seen.append(await database.run(rows))
        await database.run(mark)
        seen.append(await database.run(marked))
        return seen

    try:
        assert asyncio.run(first_loop()) == [0, 1, True]
        assert asyncio.run(database.run(marked)) is False  # a new loop, a new connection
    finally:
        database.close()
        writer.close()
    # Checked once every connection is closed: SQLite keeps a closed connection's file
    # open while another connection of the process holds a lock on the file.
    gc.collect()
    assert _open_files(path) == 0
