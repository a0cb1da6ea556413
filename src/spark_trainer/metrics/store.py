"""Reading and writing metric points, with SQLAlchemy Core for speed.

Points are written in batches (one transaction per batch, not per point) and read back
either whole or downsampled on the database side.
"""

from __future__ import annotations

import bisect
import itertools
import math
import operator
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import psycopg
import psycopg.sql
from sqlalchemy import (
    Connection,
    Engine,
    Insert,
    Table,
    and_,
    bindparam,
    case,
    func,
    literal,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from spark_trainer.metrics.frames import Frame, encode_message
from spark_trainer.metrics.group_commit import IngestState
from spark_trainer.metrics.rows import Rows
from spark_trainer.models import ROLLUP_STEPS, Job, MetricPoint, MetricRollup, MetricSummary

_points = cast(Table, MetricPoint.__table__)
_rollups = cast(Table, MetricRollup.__table__)
_jobs = cast(Table, Job.__table__)
_summaries = cast(Table, MetricSummary.__table__)


@dataclass(slots=True)
class Series:
    name: str
    steps: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    wall_times: list[float] = field(default_factory=list)
    count: int = 0
    downsampled: bool = False


def ingest_states(conn: Connection, job_ids: Iterable[str]) -> dict[str, IngestState]:
    """What each job's metrics POSTs are checked against, for a whole group in one query."""
    rows = conn.execute(
        select(_jobs.c.id, _jobs.c.status, _jobs.c.owner_id, _jobs.c.ingest_token_digest).where(
            _jobs.c.id.in_(list(job_ids))
        )
    )
    return {
        job_id: IngestState(str(status), owner, digest) for job_id, status, owner, digest in rows
    }


def write_batch(
    conn: Connection,
    rows: Rows,
    progress: Iterable[tuple[str, int, int | None]],
) -> None:
    """Inserts points, folds them into the per-metric summaries and rollup blocks and
    records each job's ingestion progress, all in the caller's transaction.

    A row whose (job, name, step, value) is already stored, or repeated in ``rows``, is
    left out: that is a point sent again (a retried POST), stored once.

    ``progress`` holds (job id, last seq, metrics file offset or None).
    """
    rows = _not_stored(conn, rows)
    if rows:
        _insert_points(conn, rows)
        _update_summaries_and_rollups(conn, rows)
    for job_id, seq, offset in progress:
        if offset is None:
            conn.execute(_SET_SEQ, {"job": job_id, "seq": seq})
        else:
            conn.execute(_SET_SEQ_AND_OFFSET, {"job": job_id, "seq": seq, "offset": offset})


# Statements on the write path are built once: constructing one (an upsert's `excluded`
# above all) cost more than executing it for the small batches of a group commit.
_SET_SEQ = update(_jobs).where(_jobs.c.id == bindparam("job")).values(metrics_seq=bindparam("seq"))
_SET_SEQ_AND_OFFSET = _SET_SEQ.values(metrics_offset=bindparam("offset"))
_RANGE = select(_points.c.job_id, _points.c.name, _points.c.step, _points.c.value).where(
    _points.c.job_id == bindparam("job"),
    _points.c.name == bindparam("name"),
    _points.c.step.between(bindparam("lo"), bindparam("hi")),
)


# Below SQLite's limit on the terms of one compound SELECT (500).
_RANGES_PER_QUERY = 200


def _not_stored(conn: Connection, rows: Rows) -> Rows:
    """``rows`` less those already stored or repeated, the first copy kept.

    The unique index on the natural key is the guarantee; checking first keeps the
    summaries and rollups exact and the COPY path usable. Reads one index range per
    (job, name) over the batch's steps: empty in the usual case of new steps. A concurrent
    writer storing the same point in between makes the insert fail, and the retry finds it.
    """
    # Per (job, name): the lowest and highest step. While each series' steps only rise
    # (the usual case) the batch cannot repeat a point, and no per-row key is needed.
    ranges: dict[tuple[str, str], list[int]] = {}
    rising = _one_rising_series(rows)
    if rising:
        ranges[rows.job_ids[0], rows.names[0]] = [rows.steps[0], rows.steps[-1]]
    else:
        rising = True
        for key, step in zip(zip(rows.job_ids, rows.names, strict=True), rows.steps, strict=True):
            span = ranges.get(key)
            if span is None:
                ranges[key] = [step, step]
            elif step > span[1]:
                span[1] = step
            else:
                rising = False
                span[0] = min(span[0], step)
    seen: set[tuple[Any, ...]] = set()
    if len(ranges) == 1:
        ((job_id, name), (lo, hi)), *_ = ranges.items()
        seen.update(
            tuple(row)
            for row in conn.execute(_RANGE, {"job": job_id, "name": name, "lo": lo, "hi": hi})
        )
        ranges = {}
    queries = [
        select(_points.c.job_id, _points.c.name, _points.c.step, _points.c.value).where(
            _points.c.job_id == job_id,
            _points.c.name == name,
            _points.c.step.between(lo, hi),
        )
        for (job_id, name), (lo, hi) in ranges.items()
    ]
    for start in range(0, len(queries), _RANGES_PER_QUERY):
        chunk = queries[start : start + _RANGES_PER_QUERY]
        statement = chunk[0] if len(chunk) == 1 else union_all(*chunk)
        seen.update(tuple(row) for row in conn.execute(statement))
    if rising and not seen:
        return rows
    keep: list[bool] = []
    for point in zip(rows.job_ids, rows.names, rows.steps, rows.values, strict=True):
        new = point not in seen
        if new:
            seen.add(point)
        keep.append(new)
    return rows.where(keep)


def _one_rising_series(rows: Rows) -> bool:
    """Whether the rows are one job's one metric at rising steps: a job logging one metric
    (the usual case, and the costliest per point), checked in C rather than per row."""
    job_ids, names, steps = rows.job_ids, rows.names, rows.steps
    return (
        bool(job_ids)
        and job_ids.count(job_ids[0]) == len(job_ids)
        and names.count(names[0]) == len(names)
        and all(map(operator.lt, steps, itertools.islice(steps, 1, None)))
    )


_COPY_POINTS = (
    "COPY metric_points (job_id, seq, name, step, value, wall_time) FROM STDIN (FORMAT BINARY)"
)
_COPY_TYPES = ("text", "int8", "text", "int8", "float8", "float8")
_INSERT_POINTS = (
    "INSERT INTO metric_points (job_id, seq, name, step, value, wall_time) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)


def _insert_points(conn: Connection, rows: Rows) -> None:
    """The columns straight to the driver: a binary COPY on PostgreSQL, the driver's
    executemany on SQLite (one statement, prepared once).

    SQLAlchemy's own executemany processes each parameter of each row in Python, which
    cost more than the insert itself; these columns need no conversion. Binary COPY
    spares the server parsing text numbers, and the client formatting them.
    """
    raw: Any = conn.connection.driver_connection
    if conn.dialect.name == "postgresql":
        with raw.cursor() as cursor:
            _copy_points(cursor, rows)
        return
    # The rows one at a time, not a list of them: a list of 100,000 tuples lives long
    # enough for the garbage collector to promote it, and then to scan it in full passes.
    cursor = raw.cursor()
    try:
        cursor.executemany(_INSERT_POINTS, iter(rows))
    finally:
        cursor.close()


def _copy_points(cursor: psycopg.Cursor[Any], rows: Rows) -> None:
    with cursor.copy(_COPY_POINTS) as copy:
        copy.set_types(_COPY_TYPES)
        write_row = copy.write_row
        for row in rows:
            write_row(row)


def _update_summaries_and_rollups(conn: Connection, rows: Rows) -> None:
    """Folds the rows into each series' summary and each rollup block."""
    rollups, summaries = _folded_params(rows)
    rollups_upsert, summaries_upsert = _upserts(conn.dialect.name)
    conn.execute(rollups_upsert, rollups)
    conn.execute(summaries_upsert, summaries)


def _folded_params(rows: Rows) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The rollups' and the summaries' upsert parameters for the rows."""
    if _one_rising_series(rows):
        summaries, blocks = _fold_one_series(rows)
    else:
        summaries, blocks = _fold(rows)
    return (
        [
            {
                "job_id": job_id,
                "name": name,
                "block": block_no,
                "min_step": b[0],
                "max_step": b[1],
                "min_value": b[2],
                "max_value": b[3],
                "min_wall": b[4],
                "max_wall": b[5],
                "count": b[6],
            }
            for (job_id, name, block_no), b in blocks.items()
        ],
        [
            {
                "job_id": job_id,
                "name": name,
                "latest": s[0],
                "latest_step": s[1],
                "latest_seq": s[2],
                "min": s[3],
                "max": s[4],
                "count": s[5],
            }
            for (job_id, name), s in summaries.items()
        ],
    )


# Per series (job, name): [latest, latest_step, latest_seq, min, max, count]; per rollup block
# (job, name, block): [min_step, max_step, min_value, max_value, min_wall, max_wall, count].
Folded = tuple[dict[tuple[str, str], list[Any]], dict[tuple[str, str, int], list[Any]]]


def _fold(rows: Rows) -> Folded:
    summaries: dict[tuple[str, str], list[Any]] = {}
    blocks: dict[tuple[str, str, int], list[Any]] = {}
    for job_id, seq, name, step, value, wall in rows:
        key = (job_id, name, step // ROLLUP_STEPS)
        block = blocks.get(key)
        if block is None:
            blocks[key] = [step, step, value, value, wall, wall, 1]
        else:
            if step < block[0]:
                block[0] = step
            if step > block[1]:
                block[1] = step
            if value < block[2]:
                block[2] = value
            if value > block[3]:
                block[3] = value
            if wall < block[4]:
                block[4] = wall
            if wall > block[5]:
                block[5] = wall
            block[6] += 1
        summary = summaries.get(key[:2])
        if summary is None:
            # latest, latest_step, latest_seq, min, max, count
            summaries[key[:2]] = [value, step, seq, value, value, 1]
            continue
        if seq >= summary[2]:
            summary[0], summary[1], summary[2] = value, step, seq
        if value < summary[3]:
            summary[3] = value
        if value > summary[4]:
            summary[4] = value
        summary[5] += 1
    return summaries, blocks


def _fold_one_series(rows: Rows) -> Folded:
    """:func:`_fold` for one series at rising steps: each block is a slice of the columns,
    folded by min() and max() in C."""
    job_id, name = rows.job_ids[0], rows.names[0]
    seqs, steps, values, walls = rows.seqs, rows.steps, rows.values, rows.walls
    blocks: dict[tuple[str, str, int], list[Any]] = {}
    start, end = 0, len(steps)
    while start < end:
        block = steps[start] // ROLLUP_STEPS
        stop = bisect.bisect_left(steps, (block + 1) * ROLLUP_STEPS, start, end)
        in_block = values[start:stop]
        block_walls = walls[start:stop]
        blocks[job_id, name, block] = [
            steps[start],
            steps[stop - 1],
            min(in_block),
            max(in_block),
            min(block_walls),
            max(block_walls),
            stop - start,
        ]
        start = stop
    latest = seqs.index(max(seqs))
    summary = [values[latest], steps[latest], seqs[latest], min(values), max(values), end]
    return {(job_id, name): summary}, blocks


_UPSERTS: dict[str, tuple[Insert, Insert]] = {}


def _upserts(dialect: str) -> tuple[Insert, Insert]:
    """The rollups' and the summaries' upserts for a dialect, built on first use."""
    built = _UPSERTS.get(dialect)
    if built is None:
        built = _UPSERTS[dialect] = (_rollups_upsert(dialect), _summaries_upsert(dialect))
    return built


def _rollups_upsert(dialect: str) -> Insert:
    statement = (postgresql_insert if dialect == "postgresql" else sqlite_insert)(_rollups)
    smaller, larger = (
        (func.least, func.greatest) if dialect == "postgresql" else (func.min, func.max)
    )
    new, old = statement.excluded, _rollups.c
    return statement.on_conflict_do_update(
        index_elements=[old.job_id, old.name, old.block],
        set_={
            "min_step": smaller(old.min_step, new.min_step),
            "max_step": larger(old.max_step, new.max_step),
            "min_value": smaller(old.min_value, new.min_value),
            "max_value": larger(old.max_value, new.max_value),
            "min_wall": smaller(old.min_wall, new.min_wall),
            "max_wall": larger(old.max_wall, new.max_wall),
            "count": old.count + new.count,
        },
    )


def _summaries_upsert(dialect: str) -> Insert:
    statement = (postgresql_insert if dialect == "postgresql" else sqlite_insert)(_summaries)
    # SQLite's two-argument min()/max() are PostgreSQL's least()/greatest().
    smaller, larger = (
        (func.least, func.greatest) if dialect == "postgresql" else (func.min, func.max)
    )
    newer = statement.excluded.latest_seq >= _summaries.c.latest_seq
    return statement.on_conflict_do_update(
        index_elements=[_summaries.c.job_id, _summaries.c.name],
        set_={
            "latest": case((newer, statement.excluded.latest), else_=_summaries.c.latest),
            "latest_step": case(
                (newer, statement.excluded.latest_step), else_=_summaries.c.latest_step
            ),
            "latest_seq": larger(_summaries.c.latest_seq, statement.excluded.latest_seq),
            "min": smaller(_summaries.c.min, statement.excluded.min),
            "max": larger(_summaries.c.max, statement.excluded.max),
            "count": _summaries.c.count + statement.excluded.count,
        },
    )


# A group of up to this many rows is one multi-row INSERT, sent in the same round trip
# as the rest of its transaction; a larger one goes by COPY, which cannot share a round
# trip (pipeline mode) but costs far less per row. Measured per group (whole transaction,
# local PostgreSQL 15): 1 row 0.29 ms INSERT vs 0.53 ms COPY, 8 rows 0.34 vs 0.53, 32 rows
# 0.69 vs 0.61, 200 rows 3.2 vs 1.1. (An INSERT of unnest()ed arrays cost about as much.)
INSERT_MAX_ROWS = 24
_VALUES: dict[int, str] = {}


def _insert_values(count: int) -> str:
    """The INSERT of ``count`` rows; one text per count, so psycopg prepares each once."""
    sql = _VALUES.get(count)
    if sql is None:
        row = psycopg.sql.SQL("(%s, %s, %s, %s, %s, %s)")
        sql = _VALUES[count] = (
            psycopg.sql.SQL(
                "INSERT INTO metric_points (job_id, seq, name, step, value, wall_time) VALUES {}"
            )
            .format(psycopg.sql.SQL(", ").join([row] * count))
            .as_string()
        )
    return sql


_STATES = "SELECT id, status, owner_id, ingest_token_digest FROM jobs WHERE id = ANY(%s::text[])"
_PG_SET_SEQ = "UPDATE jobs SET metrics_seq = %s WHERE id = %s"
_PG_SET_SEQ_AND_OFFSET = "UPDATE jobs SET metrics_seq = %s, metrics_offset = %s WHERE id = %s"


class PostgresWriter:
    """The metrics writers' own PostgreSQL connection, kept open in autocommit mode.

    A group commit used to take ~9 round trips (the pool's liveness ping at checkout,
    BEGIN, the job states, ROLLBACK, the already-stored check, COPY, summaries, rollups,
    progress, COMMIT), and its thread waited on them, and on the GIL after each, for
    most of its time. Here a group is two: the job states (no transaction), then the
    whole transaction sent at once (psycopg's pipeline mode).

    The write is optimistic: it does not look for points already stored first, the
    unique natural key refuses them instead, and then nothing is stored and the caller
    takes the careful way (:func:`write_batch`). A retried POST is rare; a check per
    group is not.

    Thread-safe; one statement at a time on the connection. A connection that fails is
    dropped and the next call opens another.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        self._rollups_sql, self._summaries_sql = (
            str(statement.compile(dialect=engine.dialect)) for statement in _upserts("postgresql")
        )

    def ingest_states(self, job_ids: Iterable[str]) -> dict[str, IngestState]:
        """:func:`ingest_states`, in one round trip."""
        with self._lock:
            conn = self._connection()
            try:
                rows = conn.execute(_STATES, (list(job_ids),)).fetchall()
            except BaseException:
                self._recover(conn)
                raise
        return {
            job_id: IngestState(str(status), owner, digest)
            for job_id, status, owner, digest in rows
        }

    def write(self, rows: Rows, progress: Sequence[tuple[str, int, int | None]]) -> None:
        """:func:`write_batch` in a transaction of its own, for rows none of which is
        stored yet; raises, having stored nothing, when one is (or on any other error)."""
        rollups, summaries = _folded_params(rows) if rows else ([], [])
        set_seq = [(seq, job_id) for job_id, seq, offset in progress if offset is None]
        set_offset = [
            (seq, offset, job_id) for job_id, seq, offset in progress if offset is not None
        ]
        with self._lock:
            conn = self._connection()
            try:
                with conn.cursor() as cursor:
                    copied = len(rows) > INSERT_MAX_ROWS
                    if copied:
                        cursor.execute("BEGIN")
                        _copy_points(cursor, rows)
                    with conn.pipeline():
                        if not copied:
                            cursor.execute("BEGIN")
                            if rows:
                                cursor.execute(
                                    _insert_values(len(rows)), [v for row in rows for v in row]
                                )
                        if rollups:
                            cursor.executemany(self._rollups_sql, rollups)
                            cursor.executemany(self._summaries_sql, summaries)
                        if set_seq:
                            cursor.executemany(_PG_SET_SEQ, set_seq)
                        if set_offset:
                            cursor.executemany(_PG_SET_SEQ_AND_OFFSET, set_offset)
                        cursor.execute("COMMIT")
            except BaseException:
                self._recover(conn)
                raise

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _connection(self) -> psycopg.Connection[Any]:
        conn = self._conn
        if conn is None or conn.closed:
            # Through the engine, for its URL and connect arguments; then out of its pool,
            # as this thread keeps it for good.
            pooled = self._engine.raw_connection()
            conn = pooled.driver_connection
            assert conn is not None
            pooled.detach()
            conn.autocommit = True
            self._conn = conn
        return conn

    def _recover(self, conn: psycopg.Connection[Any]) -> None:
        """Ends a failed write's transaction, or drops the connection if that fails too."""
        try:
            if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                conn.execute("ROLLBACK")
        except Exception:
            conn.close()
        if conn.closed or conn.broken:
            conn.close()
            self._conn = None


def history_frames(conn: Connection, job_id: str, *, after: int, limit: int) -> list[Frame]:
    """Stored points with seq > ``after`` as stream frames, oldest first."""
    top = (
        select(_points.c.seq)
        .where(_points.c.job_id == job_id, _points.c.seq > after)
        .group_by(_points.c.seq)
        .order_by(_points.c.seq)
        .limit(limit)
        .subquery()
    )
    rows = conn.execute(
        select(_points.c.seq, _points.c.step, _points.c.name, _points.c.value)
        .where(_points.c.job_id == job_id, _points.c.seq.in_(select(top.c.seq)))
        .order_by(_points.c.seq)
    ).all()
    frames: list[Frame] = []
    current: int | None = None
    step = 0
    values: dict[str, float] = {}
    for seq, row_step, name, value in rows:
        if seq != current:
            if current is not None:
                frames.append(Frame.of(current, encode_message(step, values)))
            current, step, values = seq, row_step, {}
        values[name] = value
    if current is not None:
        frames.append(Frame.of(current, encode_message(step, values)))
    return frames


def last_seq(conn: Connection, job_id: str) -> int:
    """The newest stored point's number (0: none yet): a stream resumed after it continues
    a history read no earlier than this, without gaps."""
    return conn.scalar(select(func.max(_points.c.seq)).where(_points.c.job_id == job_id)) or 0


def metric_names(conn: Connection, job_id: str) -> list[str]:
    return list(
        conn.scalars(
            select(_points.c.name).where(_points.c.job_id == job_id).distinct().order_by("name")
        )
    )


def read_series(
    conn: Connection,
    job_id: str,
    names: Sequence[str],
    *,
    step_min: int | None,
    step_max: int | None,
    max_points: int | None,
) -> list[Series]:
    result = []
    for name in names:
        where = [_points.c.job_id == job_id, _points.c.name == name]
        if step_min is not None:
            where.append(_points.c.step >= step_min)
        if step_max is not None:
            where.append(_points.c.step <= step_max)
        if max_points is not None and _more_than(conn, where, max_points):
            # Separate min() and max() queries each take one index probe; together with a
            # count they would cost a scan of the whole series.
            lo = conn.scalar(select(func.min(_points.c.step)).where(*where))
            hi = conn.scalar(select(func.max(_points.c.step)).where(*where))
            whole_series = step_min is None and step_max is None
            rolled = (
                _from_rollups(conn, job_id, name, lo, hi, max_points)
                if whole_series and _bucket_steps(lo, hi, max_points) >= ROLLUP_STEPS
                else None
            )
            # The blocks must account for every point (the summary's count, written in the
            # same transaction): points written behind the store's back (raw SQL) are not
            # in them, and then the points themselves are read.
            if rolled is not None and rolled.count == _summary_count(conn, job_id, name):
                result.append(rolled)
            else:
                result.append(_downsampled(conn, name, where, lo, hi, max_points))
        else:
            result.append(_full(conn, name, where))
    return result


def _more_than(conn: Connection, where: list[Any], limit: int) -> bool:
    """Whether the series has more than ``limit`` points, reading at most ``limit + 1``."""
    bounded = select(literal(1)).where(*where).limit(limit + 1).subquery()
    return (conn.scalar(select(func.count()).select_from(bounded)) or 0) > limit


def _full(conn: Connection, name: str, where: list[Any]) -> Series:
    series = Series(name=name)
    rows = conn.execute(
        select(_points.c.step, _points.c.value, _points.c.wall_time)
        .where(*where)
        .order_by(_points.c.step, _points.c.seq)
    )
    for step, value, wall_time in rows:
        series.steps.append(step)
        series.values.append(value)
        series.wall_times.append(wall_time)
    series.count = len(series.steps)
    return series


def _summary_count(conn: Connection, job_id: str, name: str) -> int | None:
    return conn.scalar(
        select(_summaries.c.count).where(_summaries.c.job_id == job_id, _summaries.c.name == name)
    )


def _bucket_steps(lo: int, hi: int, max_points: int) -> int:
    return max(1, math.ceil((hi - lo + 1) / max(1, max_points // 2)))


def _from_rollups(
    conn: Connection, job_id: str, name: str, lo: int, hi: int, max_points: int
) -> Series:
    """As :func:`_downsampled`, from the rollup blocks: each bucket is a whole number of
    blocks, aligned on block boundaries, so its min and max are exact. One bucket more
    than the points allow is lost to alignment, so the width is computed for one fewer."""
    buckets = max(1, max_points // 2 - 1)
    per_bucket = max(1, math.ceil((hi // ROLLUP_STEPS - lo // ROLLUP_STEPS + 1) / buckets))
    bucket = (_rollups.c.block // literal(per_bucket)).label("bucket")
    rows = conn.execute(
        select(
            bucket,
            func.min(_rollups.c.min_step),
            func.max(_rollups.c.max_step),
            func.min(_rollups.c.min_value),
            func.max(_rollups.c.max_value),
            func.min(_rollups.c.min_wall),
            func.max(_rollups.c.max_wall),
            func.sum(_rollups.c.count),
        )
        .where(_rollups.c.job_id == job_id, _rollups.c.name == name)
        .group_by(bucket)
        .order_by(bucket)
    ).all()
    return _series_of_buckets(name, rows)


def _series_of_buckets(name: str, rows: Sequence[Any]) -> Series:
    series = Series(name=name, downsampled=True)
    for _, first_step, last_step, vmin, vmax, t0, t1, in_bucket in rows:
        series.count += int(in_bucket)
        series.steps.append(int(first_step))
        series.values.append(vmin)
        series.wall_times.append(t0)
        if last_step != first_step or vmax != vmin:
            series.steps.append(int(last_step))
            series.values.append(vmax)
            series.wall_times.append(t1)
    return series


def _downsampled(
    conn: Connection,
    name: str,
    where: list[Any],
    lo: int,
    hi: int,
    max_points: int,
) -> Series:
    """Min/max per bucket (two points each), computed by the database in one pass.

    Keeping each bucket's extremes, not its mean, keeps spikes visible at any zoom. The
    minimum is drawn at the bucket's first step and the maximum at its last: exact in value,
    and off by at most one bucket's width in step, less than a pixel on a chart of
    ``max_points`` points.
    """
    width = _bucket_steps(lo, hi, max_points)
    bucket = ((_points.c.step - literal(lo)) // literal(width)).label("bucket")
    rows = conn.execute(
        select(
            bucket,
            func.min(_points.c.step),
            func.max(_points.c.step),
            func.min(_points.c.value),
            func.max(_points.c.value),
            func.min(_points.c.wall_time),
            func.max(_points.c.wall_time),
            func.count(),
        )
        .where(and_(*where))
        .group_by(bucket)
        .order_by(bucket)
    ).all()
    return _series_of_buckets(name, rows)
