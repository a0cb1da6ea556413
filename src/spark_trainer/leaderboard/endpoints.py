from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Query
from fastapi.responses import JSONResponse, Response

from spark_trainer.deps import CurrentUser, DbSession
from spark_trainer.leaderboard import service
from spark_trainer.leaderboard.repository import Order, SortKey
from spark_trainer.leaderboard.schemas import Leaderboard
from spark_trainer.models import Benchmark
from spark_trainer.routing import api_router

router = api_router(prefix="/api/leaderboard", tags=["leaderboard"])


@router.get(
    "",
    response_model=Leaderboard,
    summary="Each model's best completed result per benchmark",
    description="The score ranked by `sort=accuracy` is the benchmark's primary one: MMLU "
    "overall accuracy, COCO AP (CIDEr for captions), safety refusal rate on harmful "
    "probes. `format=csv` answers text/csv with the same columns as a JSON row.",
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
)
def get_leaderboard(
    user: CurrentUser,
    session: DbSession,
    benchmark: Benchmark | None = None,
    sort: SortKey = "accuracy",
    order: Annotated[
        Order | None,
        Query(description="Default: desc for accuracy and date, asc for name."),
    ] = None,
    format: Literal["json", "csv"] = "json",
) -> Response:
    board = service.leaderboard(session, user, benchmark=benchmark, sort=sort, order=order)
    if format == "csv":
        return Response(
            service.to_csv(board),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="leaderboard.csv"'},
        )
    return JSONResponse(board.model_dump(mode="json"))
