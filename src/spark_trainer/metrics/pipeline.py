"""Metric ingestion: from a job (file or HTTP) to subscribers at once, to storage in batches.

A point enters through :meth:`MetricsPipeline.ingest`, which numbers it (its ``seq`` is
the stream's event id), publishes it on the event bus immediately and queues it for the
writer thread. The writer stores whatever has accumulated every ``flush_interval``
seconds in one transaction, together with each job's progress (last seq and, for file
ingestion, the byte offset read), so that after a restart ingestion resumes exactly where
the database says it stopped: nothing lost, nothing stored twice.

A metrics POST takes another way in, :meth:`MetricsPipeline.submit`: its points are
numbered and stored by the group commit (:mod:`.group_commit`) together with the other
requests that arrived meanwhile, and whatever else is queued, before the request is
answered.

Numbering never collides between writers: each process reserves blocks of sequence
numbers for a job from the database (``jobs.metrics_seq_reserved``, one atomic update per
``SEQ_BLOCK`` points), so a metrics POST served by one API process and the file tailer of
another number their points apart. (Within a block, numbers follow ingestion order; two
writers for one job interleave by block.)

Storage is isolated per job: a batch that fails is retried ``MAX_ATTEMPTS`` times with
backoff; then it is written job by job, and a job whose rows still fail (while the
database answers) has them stored point by point, the points that cannot be stored set
aside (logged with the job id, counted in :attr:`MetricsPipeline.rejected_points`), so
every other job's points keep flowing. While the database itself is down nothing is
dropped; memory stays bounded because :meth:`MetricsPipeline.ingest` refuses points
(:class:`PipelineFull`) beyond ``max_pending_rows``, which the file tailer re-reads later.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import orjson
from sqlalchemy import Connection, Engine, case, select, text, update

from spark_trainer.errors import ServiceUnavailable, SparkTrainerError
from spark_trainer.metrics import rules, store
from spark_trainer.metrics.bus import EventBus
from spark_trainer.metrics.frames import Frame
from spark_trainer.metrics.group_commit import (
    Authorize,
    GroupCommit,
    IngestState,
    Outcome,
    Submission,
)
from spark_trainer.metrics.rows import Batch, Points, Rows
from spark_trainer.models import Job, MetricPoint

logger = logging.getLogger(__name__)

MAX_READ_BYTES = 4 * 1024 * 1024
# Lines parsed and ingested together, within a read.
SLICE_BYTES = 256 * 1024
SEQ_BLOCK = 1000
MAX_ATTEMPTS = 3
RETRY_BACKOFF_SECONDS = (0.2, 1.0, 3.0)
MAX_PENDING_ROWS = 200_000


class InvalidPoint(ValueError):
    pass


class PipelineFull(ServiceUnavailable):
    def __init__(self) -> None:
        super().__init__("Metric storage is behind; retry shortly")


class Point(NamedTuple):
    step: int | None
    values: Mapping[str, float]
    wall_time: float


# Names already found valid: checking one (a regular expression) cost more than the rest of
# a point. Bounded, so a job inventing names cannot grow it for good.
_valid_names: set[str] = set()
_MAX_VALID_NAMES = 10_000


def add_point(
    points: Points, raw: Mapping[str, Any], *, now: float, strip_names: bool = False
) -> None:
    """Validates one logged point, {"step": 3, "metrics": {"loss": 0.4}, "ts": 1.7e9}, and
    appends it to ``points`` (nothing, when it is refused).

    The usual point (known names, float values, an int step, a float time) takes the
    short checks; anything else gets the full ones, and their messages. ``strip_names``:
    surrounding whitespace is dropped from names, as for every string of a request body.
    The point's JSON for its stream frame is written here, in the one pass over its values.
    """
    metrics = raw.get("metrics")
    # An ABC's isinstance() is slow: a decoded object is a dict.
    if (type(metrics) is not dict and not isinstance(metrics, Mapping)) or not metrics:
        raise InvalidPoint("'metrics' must be a non-empty object of name → number")
    step, ts = raw.get("step"), raw.get("ts")
    if step is not None and (type(step) is not int or not 0 <= step <= rules.MAX_STEP):
        raise InvalidPoint(rules.step_problem(step) or "'step' must be an integer")
    if ts is None:
        wall = now
    elif type(ts) is float and ts - ts == 0.0:
        wall = ts
    else:
        problem = rules.time_problem(ts)
        if problem is not None:
            raise InvalidPoint(problem)
        wall = float(ts)
    names, values = points.names, points.values
    first = len(names)
    data = ""
    stripped = False
    try:
        for name in metrics:
            value = metrics[name]
            key = name
            if name not in _valid_names:
                key = _checked_name(name, strip_names)
                stripped = stripped or key is not name
            # x - x is 0.0 for a finite float, NaN for inf and NaN.
            if type(value) is not float or value - value != 0.0:
                problem = rules.value_problem(key, value)
                if problem is not None:
                    raise InvalidPoint(problem)
                value = float(value)
            names.append(key)
            values.append(value)
            part = f"{_json_key(key)}: {value!r}"
            data = f"{data}, {part}" if data else part
        if stripped and len(set(names[first:])) < len(names) - first:
            raise InvalidPoint("a metric name is given twice (once with spaces around it)")
    except InvalidPoint:
        del names[first:], values[first:]
        raise
    points.steps.append(step)
    points.walls.append(wall)
    points.sizes.append(len(names) - first)
    points.texts.append(data)


def _checked_name(name: object, strip: bool) -> str:
    """The name to store (stripped if asked), or InvalidPoint saying what is wrong."""
    key = name.strip() if strip and isinstance(name, str) else name
    problem = rules.name_problem(key)
    if problem is not None:
        raise InvalidPoint(problem)
    assert isinstance(key, str) and isinstance(name, str)
    # Only names that no one would strip: the cache holds for both ways in.
    if name == name.strip():
        if len(_valid_names) >= _MAX_VALID_NAMES:
            _valid_names.clear()
        _valid_names.add(name)
        return name
    return key


# A metrics POST's point has these fields, and no others.
_POINT_FIELDS = ("metrics", "step", "ts")


def parse_points(raws: Sequence[object], *, now: float) -> Points:
    """Validates a metrics POST's points as its schema says; the error names the point."""
    points = Points()
    for index, raw in enumerate(raws):
        try:
            if type(raw) is not dict:
                raise InvalidPoint("must be an object with 'metrics' (and 'step', 'ts')")
            if len(raw) != ("metrics" in raw) + ("step" in raw) + ("ts" in raw):
                unknown = ", ".join(repr(k) for k in raw if k not in _POINT_FIELDS)
                raise InvalidPoint(f"unknown field {unknown}; a point has step, metrics, ts")
            add_point(points, raw, now=now, strip_names=True)
        except InvalidPoint as exc:
            raise InvalidPoint(f"points[{index}]: {exc}") from None
    return points


# The JSON key of each metric name seen, as json.dumps writes it.
_json_keys: dict[str, str] = {}


def _json_key(name: str) -> str:
    key = _json_keys.get(name)
    if key is None:
        key = json.dumps(name)
        if len(_json_keys) < _MAX_VALID_NAMES:
            _json_keys[name] = key
    return key


def encode_point(step: int, values: Mapping[str, float]) -> str:
    """:func:`.frames.encode_message`'s text, byte for byte, at a fraction of its cost:
    a float's repr is its JSON, and each name's JSON is computed once."""
    parts = [f'{{"step": {step}']
    for name, value in values.items():
        parts.append(f", {_json_key(name)}: {value!r}")
    parts.append("}")
    return "".join(parts)


@dataclass(slots=True)
class _JobCursor:
    seq: int
    # The last number of the block this process holds.
    reserved: int
    step: int
    offset: int


class MetricsPipeline:
    def __init__(
        self,
        engine: Engine,
        bus: EventBus,
        *,
        flush_interval: float = 0.05,
        extra_values: Callable[[str], Mapping[str, float]] | None = None,
        max_pending_rows: int = MAX_PENDING_ROWS,
    ) -> None:
        self.engine = engine
        self.bus = bus
        self.flush_interval = flush_interval
        # Values the platform adds to every point of a job (gpu_util), by job id.
        self.extra_values = extra_values
        self.max_pending_rows = max_pending_rows
        # Points that could not be stored and were set aside, since start.
        self.rejected_points = 0
        self._lock = threading.Lock()
        self._cursors: dict[str, _JobCursor] = {}
        self._pending_rows = Rows()
        self._pending_progress: dict[str, tuple[int, int | None]] = {}
        # One flush at a time: progress must reach the database in the order it was made.
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.commits = GroupCommit(self._store_group)
        self._writer = store.PostgresWriter(engine) if engine.dialect.name == "postgresql" else None

    # --- ingestion ------------------------------------------------------------------

    def ingest(self, job_id: str, points: Batch, *, offset: int | None = None) -> list[Frame]:
        """Numbers, publishes and queues points for storage. Thread-safe.

        Raises :class:`PipelineFull` (nothing queued) while storage is too far behind.
        """
        with self._lock:
            if points and len(self._pending_rows) >= self.max_pending_rows:
                raise PipelineFull
            rows, frames = self._number(job_id, points)
            self._pending_rows.extend(rows)
            cursor = self._cursors[job_id]
            if offset is not None:
                cursor.offset = offset
            self._pending_progress[job_id] = (cursor.seq, offset)
        if frames:
            self.bus.publish(job_id, frames)
        self._wake.set()
        return frames

    def _number(self, job_id: str, points: Batch) -> tuple[Rows, list[Frame]]:
        """The points' rows and frames, numbered in order. The caller holds ``_lock``."""
        cursor = self._cursor(job_id)
        if cursor.seq + len(points) > cursor.reserved:
            start, cursor.reserved = self._reserve(job_id, len(points))
            cursor.seq = start - 1
        extra = self.extra_values(job_id) if self.extra_values else {}
        if isinstance(points, Points) and not extra:
            rows, frames, cursor.seq, cursor.step = _number_parsed(points, cursor.seq, cursor.step)
        else:
            rows, frames, cursor.seq, cursor.step = _number_any(
                points, extra, cursor.seq, cursor.step
            )
        rows.job_ids = [job_id] * len(rows.seqs)
        return rows, frames

    async def submit(self, job_id: str, points: Batch, authorize: Authorize) -> list[Frame]:
        """Stores a metrics POST's points with the group committed next; answers once they
        are committed. ``authorize`` is checked against the job's state read just before;
        with no points the request is only authorized."""
        return await self.commits.submit(Submission(job_id, points, authorize))

    def _store_group(self, group: Sequence[Submission]) -> list[Outcome]:
        """One group commit (see :mod:`.group_commit`); never raises."""
        try:
            states = self._ingest_states({s.job_id for s in group})
        except Exception as exc:
            logger.warning("metrics POSTs: reading the jobs failed: %s", str(exc)[:300])
            return [_not_stored() for _ in group]
        outcomes: list[Outcome] = []
        accepted: list[tuple[int, Rows]] = []
        with self._flush_lock:
            for submission in group:
                try:
                    rows, frames = self._accept(submission, states.get(submission.job_id))
                except SparkTrainerError as exc:
                    outcomes.append(exc)
                    continue
                except Exception as exc:
                    logger.warning("metrics POST: numbering failed: %s", str(exc)[:300])
                    outcomes.append(_not_stored())
                    continue
                if rows:
                    accepted.append((len(outcomes), rows))
                    self.bus.publish(submission.job_id, frames)
                outcomes.append(frames)
            if accepted:
                for index in self._store_accepted(accepted):
                    outcomes[index] = _not_stored()
        return outcomes

    def _ingest_states(self, job_ids: set[str]) -> dict[str, IngestState]:
        if self._writer is not None:
            return self._writer.ingest_states(job_ids)
        with self.engine.connect() as conn:
            return store.ingest_states(conn, job_ids)

    def _accept(
        self, submission: Submission, state: IngestState | None
    ) -> tuple[Rows, list[Frame]]:
        submission.authorize(state)
        if not submission.points:
            return Rows(), []
        if not self.bus.available():
            # Refused before anything is numbered: a client's retry then stores each
            # point once.
            raise ServiceUnavailable("The event bus (Redis) is unavailable; retry shortly")
        with self._lock:
            if len(self._pending_rows) >= self.max_pending_rows:
                raise PipelineFull
            return self._number(submission.job_id, submission.points)

    def _store_accepted(self, accepted: list[tuple[int, Rows]]) -> list[int]:
        """Stores the accepted requests' rows, with whatever else is queued, in one
        transaction. Answers the requests whose points could not be stored: all of them
        while the database does not answer, else only those whose own rows fail.
        The caller holds ``_flush_lock``."""
        queued, progress = self._take()
        rows = Rows()
        for _, request_rows in accepted:
            rows.extend(request_rows)
        combined = dict(progress)
        for job_id, seq in rows.last_seqs().items():
            earlier = combined.get(job_id)
            combined[job_id] = (
                (seq, None) if earlier is None else (max(seq, earlier[0]), earlier[1])
            )
        everything = Rows()
        everything.extend(queued)
        everything.extend(rows)
        try:
            self._write(everything, combined)
            return []
        except Exception as exc:
            logger.warning("storing a group of metrics POSTs failed: %s", str(exc)[:300])
            # What was queued before is the pipeline writer's to retry and isolate.
            self._put_back(queued, progress)
        if not self._database_answers():
            return [index for index, _ in accepted]
        # The queued rows may have been the cause: the requests' rows alone, then each
        # request on its own.
        if len(accepted) > 1 and self._write_alone(rows):
            return []
        return [index for index, request_rows in accepted if not self._write_alone(request_rows)]

    def _write_alone(self, rows: Rows) -> bool:
        try:
            self._write(rows, {job_id: (seq, None) for job_id, seq in rows.last_seqs().items()})
        except Exception as exc:
            logger.warning("metrics POST points not stored: %s", str(exc)[:300])
            return False
        return True

    def _write(self, rows: Rows, progress: dict[str, tuple[int, int | None]]) -> None:
        if self._writer is not None:
            try:
                self._writer.write(rows, [(job, seq, off) for job, (seq, off) in progress.items()])
                return
            except Exception as exc:
                # A point stored already (a retried POST, a file read again) or a failure
                # the careful way below reports, or isolates, as it always did.
                logger.debug("optimistic metrics write failed: %s", str(exc)[:300])
        with self.engine.begin() as conn:
            _write_batch(conn, rows, progress)

    def file_offset(self, job_id: str) -> int:
        with self._lock:
            return self._cursor(job_id).offset

    def _cursor(self, job_id: str) -> _JobCursor:
        cursor = self._cursors.get(job_id)
        if cursor is None:
            with self.engine.connect() as conn:
                row = conn.execute(
                    select(Job.metrics_seq, Job.metrics_offset).where(Job.id == job_id)
                ).one()
                last_step = conn.execute(
                    select(MetricPoint.step)
                    .where(MetricPoint.job_id == job_id)
                    .order_by(MetricPoint.seq.desc())
                    .limit(1)
                ).scalar()
            # No block held yet: the first ingest reserves one.
            cursor = self._cursors[job_id] = _JobCursor(
                seq=row.metrics_seq,
                reserved=row.metrics_seq,
                step=-1 if last_step is None else last_step,
                offset=row.metrics_offset,
            )
        return cursor

    def _reserve(self, job_id: str, needed: int) -> tuple[int, int]:
        """Takes the next block of sequence numbers for a job: (first, last)."""
        size = max(SEQ_BLOCK, needed)
        # Rows from before blocks existed have only metrics_seq: start above it.
        base = case(
            (Job.metrics_seq_reserved < Job.metrics_seq, Job.metrics_seq),
            else_=Job.metrics_seq_reserved,
        )
        with self.engine.begin() as conn:
            last = conn.execute(
                update(Job)
                .where(Job.id == job_id)
                .values(metrics_seq_reserved=base + size)
                .returning(Job.metrics_seq_reserved)
            ).scalar_one()
        return last - size + 1, last

    def forget(self, job_id: str) -> None:
        """Drops a finished job's cursor once its points are stored."""
        self.flush()
        with self._lock:
            self._cursors.pop(job_id, None)

    # --- storage --------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="metrics-writer", daemon=True)
        self._thread.start()
        self.commits.start()

    def stop(self) -> None:
        self.commits.stop()
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.flush()
        if self._writer is not None:
            self._writer.close()

    def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            self._wake.wait()
            # Let a burst accumulate so it is stored in one transaction.
            self._stopping.wait(self.flush_interval)
            self._wake.clear()
            try:
                if failures >= MAX_ATTEMPTS:
                    self.flush_isolated()
                else:
                    self.flush()
                failures = 0
            except Exception as exc:
                failures += 1
                logger.warning(
                    "storing metric points failed (attempt %d): %s", failures, str(exc)[:300]
                )
                backoff = RETRY_BACKOFF_SECONDS[min(failures, len(RETRY_BACKOFF_SECONDS)) - 1]
                self._stopping.wait(backoff)
                self._wake.set()

    def flush(self) -> None:
        """Stores everything ingested so far; returns when it is committed."""
        with self._flush_lock:
            self._flush()

    def _flush(self) -> None:
        rows, progress = self._take()
        if not rows and not progress:
            return
        try:
            self._write(rows, progress)
        except Exception:
            self._put_back(rows, progress)
            raise

    def _take(self) -> tuple[Rows, dict[str, tuple[int, int | None]]]:
        with self._lock:
            rows, self._pending_rows = self._pending_rows, Rows()
            progress, self._pending_progress = self._pending_progress, {}
        return rows, progress

    def _put_back(self, rows: Rows, progress: dict[str, tuple[int, int | None]]) -> None:
        with self._lock:
            # In front, so a retry keeps the order.
            self._pending_rows.prepend(rows)
            for job_id, value in progress.items():
                self._pending_progress.setdefault(job_id, value)

    def flush_isolated(self) -> None:
        """Stores what is queued job by job, setting aside points that cannot be stored.

        Raises (keeping everything queued) when the database itself does not answer.
        """
        with self._flush_lock:
            rows, progress = self._take()
            by_job: dict[str, Rows] = rows.split("job_ids")
            jobs = list(dict.fromkeys([*by_job, *progress]))
            for index, job_id in enumerate(jobs):
                job_rows = by_job.get(job_id) or Rows()
                job_progress = [(job_id, *progress[job_id])] if job_id in progress else []
                try:
                    with self.engine.begin() as conn:
                        store.write_batch(conn, job_rows, job_progress)
                    continue
                except Exception:
                    if not self._database_answers():
                        rest = jobs[index:]
                        left = Rows()
                        for j in rest:
                            left.extend(by_job.get(j) or Rows())
                        self._put_back(left, {j: progress[j] for j in rest if j in progress})
                        raise
                self._store_point_by_point(job_id, job_rows, job_progress)

    def _store_point_by_point(
        self,
        job_id: str,
        rows: Rows,
        progress: list[tuple[str, int, int | None]],
    ) -> None:
        for seq, point_rows in rows.split("seqs").items():
            try:
                with self.engine.begin() as conn:
                    store.write_batch(conn, point_rows, [])
            except Exception as exc:
                self.rejected_points += 1
                logger.error(
                    "metric point set aside: it cannot be stored",
                    extra={"job_id": job_id, "seq": seq, "error": str(exc)[:500]},
                )
        try:
            with self.engine.begin() as conn:
                store.write_batch(conn, Rows(), progress)
        except Exception:
            logger.exception("recording metrics progress failed", extra={"job_id": job_id})

    def _database_answers(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception:
            return False
        return True


def _number_parsed(points: Points, seq: int, step: int) -> tuple[Rows, list[Frame], int, int]:
    """Numbers parsed points (rows less their job id, frames, last seq, last step): their
    names, values and frame texts are columns already, so nothing here walks their values.
    """
    rows = Rows()
    frames: list[Frame] = []
    seqs, steps, walls = rows.seqs, rows.steps, rows.walls
    rows.names, rows.values = list(points.names), list(points.values)
    for point_step, wall, size, data in zip(
        points.steps, points.walls, points.sizes, points.texts, strict=True
    ):
        seq += 1
        step = point_step if point_step is not None else step + 1
        if size == 1:
            seqs.append(seq)
            steps.append(step)
            walls.append(wall)
        else:
            seqs += [seq] * size
            steps += [step] * size
            walls += [wall] * size
        frames.append(Frame(seq, step, data))
    return rows, frames, seq, step


def _number_any(
    points: Batch, extra: Mapping[str, float], seq: int, step: int
) -> tuple[Rows, list[Frame], int, int]:
    """:func:`_number_parsed` for any batch, with the values the platform adds."""
    rows = Rows()
    frames: list[Frame] = []
    for point_step, point_values, wall in points:
        seq += 1
        step = point_step if point_step is not None else step + 1
        values = {**point_values, **extra}
        for name, value in values.items():
            rows.append("", seq, name, step, value, wall)
        frames.append(Frame.of(seq, encode_point(step, values)))
    return rows, frames, seq, step


def _write_batch(conn: Connection, rows: Rows, progress: dict[str, tuple[int, int | None]]) -> None:
    store.write_batch(conn, rows, [(job, seq, off) for job, (seq, off) in progress.items()])


def _not_stored() -> ServiceUnavailable:
    return ServiceUnavailable("Metric points were not stored; nothing was kept, retry")


class FileTailer:
    """Follows the metrics files that running jobs append to (``sparktrainer.log``).

    One thread polls every followed file's size every ``interval`` seconds and ingests
    complete new lines. The byte offset travels with the points into the database, so a
    restarted server continues from the first line it had not stored.
    """

    def __init__(self, pipeline: MetricsPipeline, *, interval: float = 0.005) -> None:
        self.pipeline = pipeline
        self.interval = interval
        self._lock = threading.Lock()
        # One reader at a time: the tailer thread and a job's final drain must never both
        # read from the same stored offset, or the lines between would be ingested twice.
        self._read_lock = threading.Lock()
        self._files: dict[str, Path] = {}
        # Lines that were not a valid point, per job id.
        self.skipped_lines: Counter[str] = Counter()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def follow(self, job_id: str, path: Path) -> None:
        with self._lock:
            self._files[job_id] = path

    def drain(self, job_id: str) -> None:
        """Reads whatever is left of a job's file and stops following it."""
        with self._lock:
            path = self._files.pop(job_id, None)
        if path is not None:
            with self._read_lock:
                while self._read(job_id, path):
                    pass

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="metrics-tailer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stopping.wait(self.interval):
            with self._lock:
                files = list(self._files.items())
            for job_id, path in files:
                try:
                    with self._read_lock:
                        if self._files.get(job_id) is path:  # not drained meanwhile
                            self._read(job_id, path)
                except Exception:
                    logger.exception("reading a metrics file failed", extra={"job_id": job_id})

    def _read(self, job_id: str, path: Path) -> int:
        """Ingests the complete lines past the stored offset; returns the bytes consumed."""
        offset = self.pipeline.file_offset(job_id)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return 0
        if size <= offset:
            return 0
        with path.open("rb") as handle:
            handle.seek(offset)
            # Bounded, so a job that logs faster than we store never balloons our memory;
            # the rest is read on the next tick.
            chunk = handle.read(min(size - offset, MAX_READ_BYTES))
        end = chunk.rfind(b"\n")
        if end < 0 and len(chunk) == MAX_READ_BYTES:
            # No metrics line is this long: drop it rather than stall the file for good.
            logger.warning("skipping an oversized metrics line", extra={"job_id": job_id})
            self.pipeline.ingest(job_id, [], offset=offset + len(chunk))
            return len(chunk)
        if end < 0:
            return 0  # a line still being written
        lines = chunk[: end + 1]
        done = 0
        while done < len(lines):
            # A slice of lines at a time: its frames are published, and freed, before the
            # next is parsed, rather than a whole chunk's outliving several collections.
            cut = lines.find(b"\n", min(done + SLICE_BYTES, len(lines)) - 1) + 1
            points = self._parse(job_id, lines[done:cut])
            try:
                self.pipeline.ingest(job_id, points, offset=offset + cut)
            except PipelineFull:
                return done  # nothing was taken: these lines are read again later
            done = cut
        return done

    def _parse(self, job_id: str, lines: bytes) -> Points:
        """The valid points of complete lines; the others are skipped and counted."""
        now = time.time()
        points = Points()
        for line in lines.splitlines():
            if not line or line.isspace():
                continue
            try:
                raw = orjson.loads(line)
                if type(raw) is not dict:
                    raise InvalidPoint("a metrics line must be a JSON object")
                add_point(points, raw, now=now)
            except (ValueError, TypeError, RecursionError) as exc:
                # Skipped, never retried: the offset moves past it with the good lines.
                with self._lock:
                    self.skipped_lines[job_id] += 1
                logger.warning(
                    "skipping a malformed metrics line", extra={"job_id": job_id, "error": str(exc)}
                )
        return points
