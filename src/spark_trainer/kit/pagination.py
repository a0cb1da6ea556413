from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query

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
