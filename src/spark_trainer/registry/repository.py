from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from spark_trainer.models import ModelTag, ModelVersion, User


class ModelRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, model_id: str) -> ModelVersion | None:
        return self.session.get(ModelVersion, model_id)

    def add(self, model: ModelVersion) -> ModelVersion:
        self.session.add(model)
        self.session.flush()
        return model

    def next_version(self, owner_id: str, name: str) -> int:
        latest = self.session.scalar(
            select(func.max(ModelVersion.version)).where(
                ModelVersion.owner_id == owner_id, ModelVersion.name == name
            )
        )
        return (latest or 0) + 1

    def for_job(self, job_id: str) -> ModelVersion | None:
        return self.session.scalar(select(ModelVersion).where(ModelVersion.source_job_id == job_id))

    def page(
        self,
        user: User,
        *,
        name: str | None,
        tag: str | None,
        limit: int,
        offset: int,
    ) -> tuple[Sequence[ModelVersion], int]:
        query = select(ModelVersion)
        if not user.is_admin:
            query = query.where(ModelVersion.owner_id == user.id)
        if name is not None:
            query = query.where(ModelVersion.name == name)
        if tag is not None:
            query = query.join(ModelTag, ModelTag.model_id == ModelVersion.id).where(
                ModelTag.tag == tag
            )
        total = self.session.scalar(select(func.count()).select_from(query.subquery())) or 0
        items = self.session.scalars(
            query.order_by(ModelVersion.created_at.desc(), ModelVersion.id.desc())
            .limit(limit)
            .offset(offset)
        ).all()
        return items, total

    def set_tag(self, model: ModelVersion, tag: str) -> None:
        """Points ``tag`` at ``model``, moving it off whichever version of the name had it."""
        self.session.execute(
            delete(ModelTag).where(
                ModelTag.owner_id == model.owner_id,
                ModelTag.name == model.name,
                ModelTag.tag == tag,
            )
        )
        self.session.add(
            ModelTag(owner_id=model.owner_id, name=model.name, tag=tag, model_id=model.id)
        )
        self.session.flush()

    def remove_tag(self, model: ModelVersion, tag: str) -> bool:
        result = self.session.execute(
            delete(ModelTag).where(ModelTag.model_id == model.id, ModelTag.tag == tag)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]
