"""Short reads for the request path, run on the event loop with no thread hop.

A read route hands :meth:`ReadDatabase.run` a plain function of a Core ``Connection``
(select the columns it answers, build dicts). It runs on the event loop, on a connection of
a small engine of its own, for SQLite and PostgreSQL alike: a page or a row by id takes
tens to a few hundred microseconds, less than a hop to a worker thread and back, and the
loop never waits for a connection that a worker thread holds (the main pool's are).

PostgreSQL through an asyncio engine (SQLAlchemy asyncio over psycopg 3 async, a greenlet
per read) was measured against this and lost clearly: 2.0-3.9 ms of server CPU per
request against 0.8-1.4 ms, and 0.03-0.09 of ``/healthz`` against 0.20-0.34 (README,
*Performance*). A blocking round trip on the loop costs less than the asyncio machinery
around an awaited one. ``statement_timeout`` bounds how long one read could hold the loop.

Both read in autocommit: a read needs no transaction (under READ COMMITTED each statement
takes its own snapshot anyway), which spares PostgreSQL a BEGIN and a ROLLBACK per
request. The connection is not pinged at checkout (a round trip per request); a read that
meets a connection the server dropped is run once more instead, which is safe because it
writes nothing.
"""

from __future__ import annotations

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
    FromClause,
    create_engine,
    event,
    type_coerce,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.types import TypeEngine

from spark_trainer.db.engine import sqlite_pragmas
from spark_trainer.db.types import UTCDateTime
from spark_trainer.settings import Settings

T = TypeVar("T")

# The longest a PostgreSQL read, or connecting for one, may hold the event loop (a read is
# bounded: a page of at most 200 rows or a row by id; this is only a guard).
TIMEOUT_MS = 5000


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


def read_columns(
    table: FromClause, fields: Iterable[str], *, prefix: str = ""
) -> list[ColumnElement[Any]]:
    """The columns named ``fields`` (labelled with those names, after ``prefix``: a join
    that selects two tables' columns of the same name), typed for the read path.

    Timestamps and JSON skip the ORM types' per-value Python conversions, which were a
    page's largest cost after the framework's; what they answer encodes to the same JSON.
    Values read this way are for answering, not for binding into further queries (a
    SQLite timestamp comes back naive).
    """
    columns: list[ColumnElement[Any]] = []
    for name in fields:
        column = table.c[name]
        label = prefix + name
        if isinstance(column.type, UTCDateTime):
            columns.append(type_coerce(column, _WIRE_DATETIME).label(label))
        elif isinstance(column.type, JSON):
            columns.append(type_coerce(column, _WireJSON()).label(label))
        else:
            columns.append(column.label(label) if prefix else column)
    return columns


class ReadDatabase:
    def __init__(self, settings: Settings) -> None:
        url = settings.effective_database_url
        # One connection serves the loop (reads on it run one at a time); a little
        # overflow for a second loop in the process (a test client's).
        options: dict[str, Any] = {
            "pool_size": 1,
            "max_overflow": 2,
            "isolation_level": "AUTOCOMMIT",
            "json_deserializer": _json_loads,
        }
        if settings.is_sqlite:
            self._engine = create_engine(url, connect_args={"check_same_thread": False}, **options)
            event.listen(self._engine, "connect", sqlite_pragmas)
        else:
            self._engine = create_engine(
                url,
                connect_args={
                    "options": f"-c TimeZone=UTC -c statement_timeout={TIMEOUT_MS}",
                    "connect_timeout": TIMEOUT_MS // 1000,
                },
                **options,
            )

    def run(self, read: Callable[[Connection], T]) -> T:
        """``read`` on a connection, blocking: call it from the event loop, for short reads."""
        try:
            with self._engine.connect() as conn:
                return read(conn)
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
        with self._engine.connect() as conn:
            return read(conn)

    def close(self) -> None:
        self._engine.dispose()
