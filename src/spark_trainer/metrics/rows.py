"""Metric points on their way to storage, as columns: one list per ``metric_points`` column.

A batch of 100,000 points used to be 100,000 dicts, each built, read back by key for the
insert, the summaries and the rollups, and garbage-collected: that was much of what
ingestion cost. Columns are appended to and read with ``zip`` at C speed, and go to the
driver as they are (SQLite's executemany, PostgreSQL's COPY).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

# (job_id, seq, name, step, value, wall_time): a row of metric_points, in its column order.
Row = tuple[str, int, str, int, float, float]


class Rows:
    __slots__ = ("job_ids", "names", "seqs", "steps", "values", "walls")

    def __init__(self) -> None:
        self.job_ids: list[str] = []
        self.seqs: list[int] = []
        self.names: list[str] = []
        self.steps: list[int] = []
        self.values: list[float] = []
        self.walls: list[float] = []

    @classmethod
    def of(cls, rows: Iterable[Row]) -> Rows:
        batch = cls()
        for row in rows:
            batch.append(*row)
        return batch

    def __len__(self) -> int:
        return len(self.seqs)

    def __bool__(self) -> bool:
        return bool(self.seqs)

    def __iter__(self) -> Iterator[Row]:
        return zip(
            self.job_ids, self.seqs, self.names, self.steps, self.values, self.walls, strict=True
        )

    def append(
        self, job_id: str, seq: int, name: str, step: int, value: float, wall: float
    ) -> None:
        self.job_ids.append(job_id)
        self.seqs.append(seq)
        self.names.append(name)
        self.steps.append(step)
        self.values.append(value)
        self.walls.append(wall)

    def extend(self, other: Rows) -> None:
        self.job_ids += other.job_ids
        self.seqs += other.seqs
        self.names += other.names
        self.steps += other.steps
        self.values += other.values
        self.walls += other.walls

    def prepend(self, other: Rows) -> None:
        """Puts ``other`` in front, keeping the order of a retried batch."""
        for mine, theirs in zip(self._columns(), other._columns(), strict=True):
            mine[:0] = theirs

    def where(self, keep: Iterable[bool]) -> Rows:
        """The rows whose flag in ``keep`` (one per row) is true."""
        batch = Rows()
        for row, kept in zip(self, keep, strict=True):
            if kept:
                batch.append(*row)
        return batch

    def split(self, key: str) -> dict[Any, Rows]:
        """The rows grouped by one column (``"job_ids"`` or ``"seqs"``), in first-seen order."""
        groups: dict[Any, Rows] = {}
        for value, row in zip(getattr(self, key), self, strict=True):
            group = groups.get(value)
            if group is None:
                group = groups[value] = Rows()
            group.append(*row)
        return groups

    def last_seqs(self) -> dict[str, int]:
        """Each job's highest seq in the batch."""
        last: dict[str, int] = {}
        for job_id, seq in zip(self.job_ids, self.seqs, strict=True):
            if seq > last.get(job_id, 0):
                last[job_id] = seq
        return last

    def _columns(self) -> tuple[list[Any], ...]:
        return (self.job_ids, self.seqs, self.names, self.steps, self.values, self.walls)


class Points:
    """Validated points not yet numbered, as columns. Per point: its step (None: the next),
    wall time, number of values and the JSON text of its values for its stream frame; per
    value: its name and the value. Iterates as (step, values, wall time) tuples, as a
    sequence of ``pipeline.Point`` does.

    A batch of 5,000 points is then a few lists, not 5,000 more objects for the garbage
    collector to count and scan: its passes over the server's heap were a large part of
    what a batch cost.
    """

    __slots__ = ("names", "sizes", "steps", "texts", "values", "walls")

    def __init__(self) -> None:
        self.steps: list[int | None] = []
        self.walls: list[float] = []
        self.sizes: list[int] = []
        self.texts: list[str] = []
        self.names: list[str] = []
        self.values: list[float] = []

    def __len__(self) -> int:
        return len(self.walls)

    def __iter__(self) -> Iterator[tuple[int | None, Mapping[str, float], float]]:
        start = 0
        for step, wall, size in zip(self.steps, self.walls, self.sizes, strict=True):
            end = start + size
            yield step, dict(zip(self.names[start:end], self.values[start:end], strict=True)), wall
            start = end


# What ingestion takes: Points, or any sized collection of (step, values, wall time).
Batch = Points | Sequence[tuple[int | None, Mapping[str, float], float]]
