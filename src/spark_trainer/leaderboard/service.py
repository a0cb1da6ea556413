from __future__ import annotations

import csv
import io

from sqlalchemy.orm import Session

from spark_trainer.leaderboard.repository import Order, SortKey, best_results
from spark_trainer.leaderboard.schemas import COLUMNS, Leaderboard, LeaderboardRow
from spark_trainer.models import Benchmark, User

# Each sort's natural direction: best scores, names A-Z, newest first.
DEFAULT_ORDER: dict[str, Order] = {"accuracy": "desc", "name": "asc", "date": "desc"}


def leaderboard(
    session: Session,
    user: User,
    *,
    benchmark: Benchmark | None,
    sort: SortKey,
    order: Order | None,
) -> Leaderboard:
    rows = best_results(
        session, user, benchmark=benchmark, sort=sort, order=order or DEFAULT_ORDER[sort]
    )
    items = []
    for rank, (evaluation, model) in enumerate(rows, start=1):
        assert evaluation.score is not None and evaluation.finished_at is not None
        items.append(
            LeaderboardRow(
                rank=rank,
                model_id=model.id,
                model_name=model.name,
                model_version=model.version,
                benchmark=evaluation.benchmark,
                metric=evaluation.score_name or "score",
                score=evaluation.score,
                evaluation_id=evaluation.id,
                evaluated_at=evaluation.finished_at,
            )
        )
    return Leaderboard(items=items, total=len(items))


def to_csv(board: Leaderboard) -> str:
    """The board as CSV with a header row, the values exactly as the JSON gives them."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for row in board.model_dump(mode="json")["items"]:
        writer.writerow([row[column] for column in COLUMNS])
    return buffer.getvalue()
