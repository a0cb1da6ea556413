from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, TypeVar

from fastapi import Depends, Query
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

T = TypeVar("T")

DEFAULT_LIMIT = 20
MAX_LIMIT = 200
# Far past any real list, and well inside every database's OFFSET range.
MAX_OFFSET = 2**31 - 1
# BIGINT: steps, sequence numbers and byte offsets.
MAX_INT64 = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Paging:
    limit: int
    offset: int


async def _paging(
    limit: Annotated[
        int, Query(ge=1, le=MAX_LIMIT, description=f"Page size (max {MAX_LIMIT}).")
    ] = DEFAULT_LIMIT,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Items to skip.")] = 0,
) -> Paging:
    return Paging(limit=limit, offset=offset)


PagingParams = Annotated[Paging, Depends(_paging)]


def page_of(session: Session, query: Select[T], *, limit: int, offset: int) -> tuple[list[T], int]:
    """A page of ``query`` (already ordered) and the total, in one round trip.

    Each row carries ``count(*) over ()``, computed before LIMIT, so the total comes
    with the page instead of costing a second query (a third of a list request's CPU).
    Only a page past the end has no row to carry it: then, and only then, it is counted.
    """
    rows = session.execute(query.add_columns(func.count().over()).limit(limit).offset(offset)).all()
    if rows:
        return [row[0] for row in rows], int(rows[0][1])
    if offset == 0:
        return [], 0
    counted = select(func.count()).select_from(query.order_by(None).subquery())
    return [], session.scalar(counted) or 0
