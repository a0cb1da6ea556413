"""Short reads for the request path, run on the event loop with no thread hop.

A read route hands :meth:`ReadDatabase.run` a plain function of a :class:`ReadConnection`
(select the columns it answers, build dicts), on connections of its own: the loop never
waits for a connection that a worker thread holds (the main pool's are), and a page or a
row by id takes tens to a few hundred microseconds, less than a hop to a worker thread and
back. On SQLite the function runs to its end on the loop; on PostgreSQL it runs in a
greenlet and each statement is awaited, so the loop serves other requests during the
round trips (:class:`_PostgresReads`). ``statement_timeout`` bounds a PostgreSQL read.

Both read in autocommit: a read needs no transaction (under READ COMMITTED each statement
takes its own snapshot anyway), which spares PostgreSQL a BEGIN and a ROLLBACK per
request. A connection is not pinged before use (a round trip per request); a read that
meets a connection the server dropped is run once more instead, which is safe because it
writes nothing.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sqlite3
import threading
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import orjson
import psycopg
from psycopg import AsyncConnection
from psycopg.pq import TransactionStatus
from psycopg.types.json import set_json_loads
from sqlalchemy import (
    JSON,
    URL,
    ClauseElement,
    ColumnElement,
    DateTime,
    Dialect,
    Executable,
    FromClause,
    Text,
    cast,
    make_url,
    type_coerce,
)
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.types import TypeEngine
from sqlalchemy.util import await_, greenlet_spawn

from spark_trainer.db.engine import sqlite_pragmas
from spark_trainer.db.types import UTCDateTime
from spark_trainer.settings import Settings

T = TypeVar("T")

# The longest a PostgreSQL read, or connecting for one, may hold the event loop (a read is
# bounded: a page of at most 200 rows or a row by id; this is only a guard).
TIMEOUT_MS = 5000


def parse_json(text: str | bytes | None) -> Any:
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
    psycopg parses it itself (with ``set_json_loads``)."""

    def result_processor(self, dialect: Dialect, coltype: object) -> Callable[[Any], Any] | None:
        if dialect.name != "sqlite":
            return None
        return parse_json


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


def json_text(column: ColumnElement[Any], label: str) -> ColumnElement[Any]:
    """A JSON column read as its text, for :func:`parse_json` to parse where it is used:
    a value that a join repeats on every row is then parsed once, not once per row."""
    return cast(column, Text).label(label)


class ReadRows(Protocol):
    """What a read gets back from :meth:`ReadConnection.execute`: rows as tuples."""

    def first(self) -> Sequence[Any] | None: ...

    def all(self) -> Sequence[Sequence[Any]]: ...

    def __iter__(self) -> Iterator[Sequence[Any]]: ...


class ReadConnection(Protocol):
    """What a read function may do: run a Core statement (built once, see
    :func:`read_columns`) with its parameters. A SQLAlchemy ``Connection`` is one."""

    def execute(self, statement: Executable, parameters: Mapping[str, Any], /) -> ReadRows: ...

    def scalar(self, statement: Executable, parameters: Mapping[str, Any], /) -> Any: ...


class ReadDatabase:
    """Where the request path's reads run: on the event loop, with no thread hop.

    SQLite: a read runs to its end on the loop (it takes microseconds; the file is local).
    PostgreSQL: the same read function runs in a greenlet on a connection of its own,
    and while the server works on a statement the loop serves other requests
    (:class:`_PostgresReads`).
    """

    def __init__(self, settings: Settings) -> None:
        url = make_url(settings.effective_database_url)
        self._sqlite: _SqliteReads | None = None
        self._postgres: _PostgresReads | None = None
        if settings.is_sqlite:
            self._sqlite = _SqliteReads(url)
        else:
            self._postgres = _PostgresReads(url, size=POSTGRES_CONNECTIONS)

    async def run(self, read: Callable[[ReadConnection], T]) -> T:
        """``read`` on a connection; call it from the event loop, for short reads."""
        if self._postgres is not None:
            return await self._postgres.run(read)
        assert self._sqlite is not None
        return self._sqlite.run(read)

    def close(self) -> None:
        if self._sqlite is not None:
            self._sqlite.close()
        if self._postgres is not None:
            self._postgres.close()


# Connections per event loop: enough for the loop to keep PostgreSQL busy while it
# serves other requests, few enough to leave the pool's connections to the writes.
POSTGRES_CONNECTIONS = 4
# How the read connections show in pg_stat_activity.
APPLICATION_NAME = "sparktrainer-reads"


_UNKNOWN: Any = object()


@dataclass(slots=True)
class _Prepared:
    """A statement compiled once for PostgreSQL, and the conversions SQLAlchemy would make
    to the columns it answers (known once the server has described them)."""

    compiled: SQLCompiler
    types: tuple[TypeEngine[Any], ...]
    binds: Mapping[str, Callable[[Any], Any]] | None = None  # known at the first execution
    results: tuple[Callable[[Any], Any] | None, ...] | None = _UNKNOWN  # None: none converts


class _Rows:
    __slots__ = ("_rows",)

    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self._rows = rows

    def first(self) -> tuple[Any, ...] | None:
        return self._rows[0] if self._rows else None

    def all(self) -> list[tuple[Any, ...]]:
        return self._rows

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter(self._rows)


class _Statements:
    """Read statements compiled once for one dialect, bound and read with the processors
    SQLAlchemy would apply (learnt at a statement's first execution).

    SQLAlchemy's ``Connection.execute`` works this out on every call (a compiled-cache
    lookup keyed by the statement's structure, an execution context, a result object,
    around a pool checkout): for a page of 20 jobs, more CPU than the query itself.
    """

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self._prepared: dict[int, tuple[Executable, _Prepared]] = {}

    def bind(
        self, statement: Executable, parameters: Mapping[str, Any]
    ) -> tuple[_Prepared, str, dict[str, Any]]:
        """The statement's SQL and the driver's parameters for ``parameters``."""
        prepared = self._prepared_for(statement)
        compiled = prepared.compiled
        # The parameters as SQLAlchemy binds them (values bound into the statement
        # included, each through its type's processor) and, for an IN list, the SQL
        # expanded to its length. Most statements have no IN list: their SQL and
        # processors are the same every time, and building the state costs 5x more.
        if (
            prepared.binds is None
            or compiled.post_compile_params
            or compiled.literal_execute_params
        ):
            state = compiled.construct_expanded_state(parameters)
            sql, values = state.statement, {**state.parameters}
            prepared.binds = state.processors
        else:
            sql, values = compiled.string, {**compiled.construct_params(parameters)}
        for name, process in prepared.binds.items():
            if name in values:
                values[name] = process(values[name])
        return prepared, sql, values

    def rows(
        self, prepared: _Prepared, rows: list[tuple[Any, ...]], type_codes: Iterable[Any]
    ) -> _Rows:
        """``rows`` converted as SQLAlchemy's result would convert them."""
        converters = prepared.results
        if converters is _UNKNOWN:
            # Each type's processor for the column's type as the driver answers it (on
            # PostgreSQL a float and a numeric convert differently). A textual statement
            # has no typed columns: its values stay as the driver reads them.
            dialect = self.dialect
            found = tuple(
                kind.dialect_impl(dialect).result_processor(dialect, code)
                for kind, code in zip(prepared.types, type_codes, strict=False)
            )
            converters = prepared.results = found if any(found) else None
        if converters is not None:
            rows = [
                tuple(v if f is None else f(v) for f, v in zip(converters, row, strict=True))
                for row in rows
            ]
        return _Rows(rows)

    def _prepared_for(self, statement: Executable) -> _Prepared:
        # Keyed by identity: read statements are built once (``functools.cache``) and
        # kept; the statement is held with its entry so that its id is never reused.
        found = self._prepared.get(id(statement))
        if found is not None:
            return found[1]
        assert isinstance(statement, ClauseElement)
        compiled = statement.compile(dialect=self.dialect)
        assert isinstance(compiled, SQLCompiler)
        columns = getattr(statement, "selected_columns", ())
        prepared = _Prepared(compiled, tuple(column.type for column in columns))
        self._prepared[id(statement)] = (statement, prepared)
        return prepared


class _Connection(ABC):
    """What both read connections answer the same way, given their ``execute``."""

    __slots__ = ()

    @abstractmethod
    def execute(self, statement: Executable, parameters: Mapping[str, Any], /) -> _Rows: ...

    def scalar(self, statement: Executable, parameters: Mapping[str, Any], /) -> Any:
        row = self.execute(statement, parameters).first()
        return row[0] if row is not None else None


class _SqliteConnection(_Connection):
    """A :class:`ReadConnection` over a ``sqlite3`` connection: the statement's SQL,
    compiled once, straight to the driver."""

    __slots__ = ("_conn", "_statements")

    def __init__(self, conn: sqlite3.Connection, statements: _Statements) -> None:
        self._conn = conn
        self._statements = statements

    def execute(self, statement: Executable, parameters: Mapping[str, Any], /) -> _Rows:
        prepared, sql, values = self._statements.bind(statement, parameters)
        rows = self._conn.execute(sql, values).fetchall()
        # sqlite3 describes no column types: SQLAlchemy's processors for None, as its own
        # result asks for them.
        return self._statements.rows(prepared, rows, itertools.repeat(None))


class _SqliteReads:
    """Reads run to their end on the loop, on one ``sqlite3`` connection per event loop
    (reads on a loop run one at a time; a test client's loop gets its own)."""

    def __init__(self, url: URL) -> None:
        # Named parameters: the compiled statement's bound values go to sqlite3 as they
        # are, a dict, with no reordering into a tuple.
        dialect = SQLiteDialect_pysqlite(paramstyle="named")
        self.statements = _Statements(dialect)
        args, params = dialect.create_connect_args(url)
        self._database = str(args[0])
        self._uri = bool(params.get("uri", False))
        self._connections: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, sqlite3.Connection
        ] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def run(self, read: Callable[[ReadConnection], T]) -> T:
        loop = asyncio.get_running_loop()
        conn = self._connections.get(loop)
        if conn is None:
            # Autocommit (isolation_level None): a read opens no transaction to end.
            conn = sqlite3.connect(
                self._database, uri=self._uri, isolation_level=None, check_same_thread=False
            )
            sqlite_pragmas(conn, None)
            with self._lock:
                self._connections[loop] = conn
            # A loop that ends (a test client's) takes its connection with it.
            weakref.finalize(loop, conn.close)
        return read(_SqliteConnection(conn, self.statements))

    def close(self) -> None:
        with self._lock:
            connections = list(self._connections.values())
            self._connections.clear()
        for conn in connections:
            conn.close()


class _PostgresConnection(_Connection):
    """A :class:`ReadConnection` over a psycopg ``AsyncConnection``, for code running in
    a greenlet: each statement is awaited on the loop (``await_``) while the read's
    synchronous code stays as it is."""

    __slots__ = ("_conn", "_statements")

    def __init__(self, conn: AsyncConnection[tuple[Any, ...]], statements: _Statements) -> None:
        self._conn = conn
        self._statements = statements

    def execute(self, statement: Executable, parameters: Mapping[str, Any], /) -> _Rows:
        prepared, sql, values = self._statements.bind(statement, parameters)
        type_codes, rows = await_(self._fetch(sql, values, describe=prepared.results is _UNKNOWN))
        return self._statements.rows(prepared, rows, type_codes)

    async def _fetch(
        self, sql: str, values: dict[str, Any], *, describe: bool
    ) -> tuple[list[int], list[tuple[Any, ...]]]:
        cursor = await self._conn.execute(sql, values)
        # psycopg builds the description's column objects on each access (24 for a jobs
        # page: 7 % of the request's CPU); the types are only needed the first time.
        type_codes = [column.type_code for column in cursor.description or ()] if describe else []
        return type_codes, await cursor.fetchall()


class _Pool:
    """One event loop's connections: psycopg's asyncio connections belong to a loop."""

    def __init__(self, size: int) -> None:
        self.slots = asyncio.Semaphore(size)
        self.idle: list[AsyncConnection[tuple[Any, ...]]] = []
        self.opened: weakref.WeakSet[AsyncConnection[tuple[Any, ...]]] = weakref.WeakSet()

    def close(self) -> None:
        # Synchronous, from any thread, even once the loop is gone: libpq's own close.
        for conn in list(self.opened):
            conn.pgconn.finish()
        self.idle.clear()


class _PostgresReads:
    """Reads awaited on the loop, through psycopg's asyncio connections.

    Blocking on the loop for each statement (as SQLite reads do) left the server idle for
    every round trip: under 16 clients, about half the loop's time was spent waiting for
    PostgreSQL. SQLAlchemy's asyncio engine was measured and rejected for this (2.0-3.9
    ms of CPU per request against 0.8-1.4); what costs there is its adaptation layers,
    not the greenlet: here a read is one greenlet, and each statement one awaited
    execute and fetch on a plain psycopg connection, compiled by SQLAlchemy once.

    Connections are in autocommit (a read needs no transaction; each statement sees a
    committed snapshot), not pinged before use (a round trip per request): a read that
    meets a connection the server dropped runs once more on a new one, which is safe
    because it writes nothing. A read interrupted mid-statement (cancelled) closes its
    connection rather than return it busy.
    """

    def __init__(self, url: URL, *, size: int) -> None:
        dialect = url.get_dialect()()
        self.dialect = dialect
        args, params = dialect.create_connect_args(url)
        self._connect_args = tuple(args)
        self._connect_params = {
            **params,
            "autocommit": True,
            "options": f"-c TimeZone=UTC -c statement_timeout={TIMEOUT_MS}",
            "connect_timeout": TIMEOUT_MS // 1000,
            "application_name": APPLICATION_NAME,
        }
        self._size = size
        self._pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Pool] = (
            weakref.WeakKeyDictionary()
        )
        self.statements = _Statements(dialect)
        self._lock = threading.Lock()

    def _pool(self) -> _Pool:
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is None:
            with self._lock:
                pool = self._pools.setdefault(loop, _Pool(self._size))
                # A loop that ends (a test client's) takes its connections with it.
                weakref.finalize(loop, pool.close)
        return pool

    async def _connect(self, pool: _Pool) -> AsyncConnection[tuple[Any, ...]]:
        conn = await AsyncConnection.connect(*self._connect_args, **self._connect_params)
        set_json_loads(parse_json, conn)
        pool.opened.add(conn)
        return conn

    async def run(self, read: Callable[[ReadConnection], T]) -> T:
        pool = self._pool()
        async with pool.slots:
            reused = bool(pool.idle)
            conn = pool.idle.pop() if reused else await self._connect(pool)
            try:
                result = await self._on(conn, pool, read)
            except psycopg.OperationalError:
                if not (reused and conn.broken):
                    raise
                # The server dropped an idle connection (a restart): once more, anew.
                result = await self._on(await self._connect(pool), pool, read)
            return result

    async def _on(
        self,
        conn: AsyncConnection[tuple[Any, ...]],
        pool: _Pool,
        read: Callable[[ReadConnection], T],
    ) -> T:
        try:
            result = await greenlet_spawn(read, _PostgresConnection(conn, self.statements))
        except BaseException:
            if conn.broken or conn.info.transaction_status != TransactionStatus.IDLE:
                conn.pgconn.finish()
            else:
                pool.idle.append(conn)
            raise
        pool.idle.append(conn)
        return result

    def close(self) -> None:
        for pool in list(self._pools.values()):
            pool.close()
