from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from spark_trainer.models import Dataset, DatasetVersion, User


class DatasetRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, dataset_id: str) -> Dataset | None:
        return self.session.get(Dataset, dataset_id)

    def get_by_name_for_update(self, owner_id: str, name: str) -> Dataset | None:
        """The owner's dataset of that name, row-locked on PostgreSQL so that concurrent
        uploads to it number their versions one after the other (SQLite serialises
        writers by itself)."""
        return self.session.scalar(
            select(Dataset)
            .where(Dataset.owner_id == owner_id, Dataset.name == name)
            .with_for_update()
        )

    def add(self, dataset: Dataset) -> Dataset:
        self.session.add(dataset)
        self.session.flush()
        return dataset

    def add_version(self, version: DatasetVersion) -> DatasetVersion:
        self.session.add(version)
        self.session.flush()
        return version

    def page(
        self, user: User, *, name: str | None, limit: int, offset: int
    ) -> tuple[Sequence[Dataset], int]:
        query = select(Dataset)
        if not user.is_admin:
            query = query.where(Dataset.owner_id == user.id)
        if name is not None:
            query = query.where(Dataset.name == name)
        total = self.session.scalar(select(func.count()).select_from(query.subquery())) or 0
        items = self.session.scalars(
            query.order_by(Dataset.created_at.desc(), Dataset.id.desc()).limit(limit).offset(offset)
        ).all()
        return items, total

    def latest_versions(self, datasets: Sequence[Dataset]) -> dict[str, DatasetVersion]:
        """Dataset id → its latest version, for a whole page in one query."""
        if not datasets:
            return {}
        rows = self.session.scalars(
            select(DatasetVersion)
            .join(Dataset, Dataset.id == DatasetVersion.dataset_id)
            .where(
                Dataset.id.in_([d.id for d in datasets]),
                DatasetVersion.number == Dataset.version_count,
            )
        ).all()
        return {row.dataset_id: row for row in rows}

    def version_by_number(self, dataset_id: str, number: int) -> DatasetVersion | None:
        return self.session.scalar(
            select(DatasetVersion).where(
                DatasetVersion.dataset_id == dataset_id, DatasetVersion.number == number
            )
        )

    def version_by_label(self, dataset_id: str, label: str) -> DatasetVersion | None:
        return self.session.scalar(
            select(DatasetVersion).where(
                DatasetVersion.dataset_id == dataset_id, DatasetVersion.version == label
            )
        )

    def versions(self, dataset_id: str) -> Sequence[DatasetVersion]:
        return self.session.scalars(
            select(DatasetVersion)
            .where(DatasetVersion.dataset_id == dataset_id)
            .order_by(DatasetVersion.number)
        ).all()
