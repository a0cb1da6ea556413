"""Short reads for the request path, run on the event loop with no thread hop.

A read route hands :meth:`ReadDatabase.run` a plain function of a Core ``Connection``
(select the columns it answers, build dicts); the same function serves both backends:

- SQLite: on the event loop, on a connection of a small engine of its own. A page or a row
  by id takes tens of microseconds in-process, less than a hop to a worker thread and back.
  Its own engine: the main pool's connections are held by worker threads, and a loop
  that had to wait for one of them would stall every request of the process.
- PostgreSQL: an asyncio engine (psycopg 3 async); the function runs in a greenlet
  (``AsyncConnection.run_sync``), so each query awaits the network while the loop serves
  other requests, where a blocking driver call would stop the loop for a round trip.

Both read in autocommit: a read needs no transaction (under READ COMMITTED each statement
takes its own snapshot anyway), which spares PostgreSQL a BEGIN and a ROLLBACK per
request. The PostgreSQL pool does not ping a connection on checkout (a round trip per
request); a read that meets a connection the server dropped is run once more instead,
which is safe because it writes nothing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import orjson
from sqlalchemy import (
    JSON,
    ColumnElement,
    Connection,
    DateTime,
    Dialect,
    Engine,
    FromClause,
    create_engine,
    event,
    type_coerce,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.types import TypeEngine

from spark_trainer.db.engine import sqlite_pragmas
from spark_trainer.db.types import UTCDateTime
from spark_trainer.settings import Settings

T = TypeVar("T")

# Requests at once beyond which a read waits for a connection. The load the request path
# is sized for is 16 concurrent clients; most of a request is spent outside the database.
POSTGRES_READ_POOL = (8, 8)  # (pool_size, max_overflow)


def _json_loads(text: str | None) -> Any:
    # orjson parses a page's JSON columns (a job's environment and GPUs) several times
    # faster than json; the standard parser still takes what orjson refuses (NaN, which
    # json.dumps writes for a float NaN). SQL NULL stays None.
    if text is None:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


class _WireJSON(TypeEngine[Any]):
    """A JSON column's value, parsed with one call: SQLite answers the stored text;
    psycopg parses it itself (with the engine's ``json_deserializer``)."""

    def result_processor(self, dialect: Dialect, coltype: object) -> Callable[[Any], Any] | None:
        if dialect.name != "sqlite":
            return None
        return _json_loads


# A timestamp as the driver answers it, without UTCDateTime's per-value conversion: SQLite
# stores naive UTC (orjson writes naive datetimes as UTC, see kit.responses), and the
# PostgreSQL read connections run with TimeZone=UTC.
_WIRE_DATETIME = DateTime(timezone=True)


def read_columns(table: FromClause, fields: Iterable[str]) -> list[ColumnElement[Any]]:
    """The columns named ``fields`` (labelled with those names), typed for the read path.

    Timestamps and JSON skip the ORM types' per-value Python conversions, which were a
    page's largest cost after the framework's; what they answer encodes to the same JSON.
    Values read this way are for answering, not for binding into further queries (a
    SQLite timestamp comes back naive).
    """
    columns: list[ColumnElement[Any]] = []
    for name in fields:
        column = table.c[name]
        if isinstance(column.type, UTCDateTime):
            columns.append(type_coerce(column, _WIRE_DATETIME).label(name))
        elif isinstance(column.type, JSON):
            columns.append(type_coerce(column, _WireJSON()).label(name))
        else:
            columns.append(column)
    return columns


class ReadDatabase:
    def __init__(self, settings: Settings) -> None:
        self._url = settings.effective_database_url
        self._sqlite: Engine | None = None
        if settings.is_sqlite:
            # One connection is enough: reads on the loop run one at a time.
            self._sqlite = create_engine(
                self._url,
                connect_args={"check_same_thread": False},
                pool_size=1,
                max_overflow=0,
                isolation_level="AUTOCOMMIT",
                json_deserializer=_json_loads,
            )
            event.listen(self._sqlite, "connect", sqlite_pragmas)
        # The asyncio engine belongs to the loop that made it (its connections do), so it
        # is made on first use and again should another loop run the app (test clients).
        self._async: tuple[asyncio.AbstractEventLoop, AsyncEngine] | None = None

    async def run(self, read: Callable[[Connection], T]) -> T:
        if self._sqlite is not None:
            with self._sqlite.connect() as conn:
                return read(conn)
        engine = self._async_engine()
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(read)
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
        async with engine.connect() as conn:
            return await conn.run_sync(read)

    def _async_engine(self) -> AsyncEngine:
        loop = asyncio.get_running_loop()
        if self._async is None or self._async[0] is not loop:
            if self._async is not None:
                self._async[1].sync_engine.dispose(close=False)
            size, overflow = POSTGRES_READ_POOL
            engine = create_async_engine(
                self._url,
                pool_size=size,
                max_overflow=overflow,
                isolation_level="AUTOCOMMIT",
                json_deserializer=_json_loads,
                connect_args={"options": "-c TimeZone=UTC"},
            )
            self._async = (loop, engine)
        return self._async[1]

    async def aclose(self) -> None:
        """Closes the asyncio engine's connections, on the loop they belong to."""
        if self._async is not None and self._async[0] is asyncio.get_running_loop():
            await self._async[1].dispose()
            self._async = None

    def close(self) -> None:
        if self._sqlite is not None:
            self._sqlite.dispose()
        if self._async is not None:
            # Its loop is gone: drop the pool without talking to connections tied to it.
            self._async[1].sync_engine.dispose(close=False)
            self._async = None
