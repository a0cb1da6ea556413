from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from sqlalchemy import Row, func, select
from sqlalchemy.orm import Session

from spark_trainer.models import Benchmark, Evaluation, JobStatus, ModelVersion, User

SortKey = Literal["accuracy", "name", "date"]
Order = Literal["asc", "desc"]


def best_results(
    session: Session, user: User, *, benchmark: Benchmark | None, sort: SortKey, order: Order
) -> Sequence[Row[Evaluation, ModelVersion]]:
    """One row per (model, benchmark): its best completed evaluation (the latest among
    equal scores), in the requested order."""
    conditions = [Evaluation.status == JobStatus.COMPLETED, Evaluation.score.is_not(None)]
    if not user.is_admin:
        conditions.append(Evaluation.owner_id == user.id)
    if benchmark is not None:
        conditions.append(Evaluation.benchmark == benchmark)
    ranked = (
        select(
            Evaluation.id,
            func.row_number()
            .over(
                partition_by=(Evaluation.model_id, Evaluation.benchmark),
                order_by=(
                    Evaluation.score.desc(),
                    Evaluation.finished_at.desc(),
                    Evaluation.id.desc(),
                ),
            )
            .label("position"),
        )
        .where(*conditions)
        .subquery()
    )
    key = {
        "accuracy": (Evaluation.score,),
        "name": (ModelVersion.name, ModelVersion.version),
        "date": (Evaluation.finished_at,),
    }[sort]
    direction = [c.asc() if order == "asc" else c.desc() for c in key]
    query = (
        select(Evaluation, ModelVersion)
        .join(ranked, ranked.c.id == Evaluation.id)
        .join(ModelVersion, ModelVersion.id == Evaluation.model_id)
        .where(ranked.c.position == 1)
        .order_by(*direction, Evaluation.benchmark, Evaluation.id)
    )
    return session.execute(query).all()
