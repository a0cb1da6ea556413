"""Dataset use cases: record an upload as a dataset or its next version, read, resolve.

The bytes are already in the artifact store when :func:`record_upload` runs (see
``upload.py``); these functions only write and read rows, and never commit.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from spark_trainer.datasets.repository import DatasetRepository
from spark_trainer.datasets.schemas import (
    DatasetDetail,
    DatasetRead,
    DatasetVersionDetail,
    DatasetVersionList,
    DatasetVersionRead,
)
from spark_trainer.datasets.upload import ReceivedUpload
from spark_trainer.errors import Conflict, NotFound
from spark_trainer.identity import service as identity
from spark_trainer.kit.ids import IdPrefix, new_id
from spark_trainer.kit.time import utcnow
from spark_trainer.models import Dataset, DatasetVersion, User
from spark_trainer.storage.http import safe_filename

LATEST = "latest"


def version_label(number: int) -> str:
    """The n-th version of a dataset: v1.0.0, v1.1.0, v1.2.0, …"""
    return f"v1.{number - 1}.0"


@dataclass(frozen=True, slots=True)
class UploadOutcome:
    dataset: DatasetDetail
    created: bool
    """False when the file equals the latest version and nothing was recorded."""


@dataclass(frozen=True, slots=True)
class Download:
    hash: str
    size: int
    filename: str
    """Safe to put in a header; the client's original name where there was one."""


def record_upload(session: Session, user: User, upload: ReceivedUpload) -> UploadOutcome:
    """Adds the uploaded blob as a new dataset, or as the next version of the caller's
    dataset of that name; the same bytes as its latest version add nothing."""
    repo = DatasetRepository(session)
    name = upload.fields["name"]
    now = utcnow()
    dataset = repo.get_by_name_for_update(user.id, name)
    if dataset is not None:
        latest = repo.version_by_number(dataset.id, dataset.version_count)
        if latest is not None and latest.hash == upload.blob.hash:
            return UploadOutcome(_detail(dataset, latest), created=False)
    try:
        if dataset is None:
            dataset = repo.add(
                Dataset(
                    id=new_id(IdPrefix.DATASET),
                    owner_id=user.id,
                    name=name,
                    version_count=0,
                    created_at=now,
                    updated_at=now,
                )
            )
        dataset.version_count += 1
        dataset.updated_at = now
        version = repo.add_version(
            DatasetVersion(
                id=new_id(IdPrefix.DATASET_VERSION),
                dataset_id=dataset.id,
                number=dataset.version_count,
                version=version_label(dataset.version_count),
                hash=upload.blob.hash,
                size=upload.blob.size,
                filename=upload.filename,
                format=upload.content.format,
                record_count=upload.content.record_count,
                preview=upload.content.preview,
                created_at=now,
            )
        )
    except IntegrityError:
        # Only a concurrent first upload of the same name gets here: on PostgreSQL the
        # existing row is locked above, on SQLite writers are serialised.
        raise Conflict(f"Dataset '{name}' was created by another upload just now; retry") from None
    return UploadOutcome(_detail(dataset, version), created=True)


def get_owned(session: Session, user: User, dataset_id: str) -> Dataset:
    return identity.get_owned(session, user, Dataset, dataset_id, "Dataset")


def list_datasets(
    session: Session, user: User, *, name: str | None, limit: int, offset: int
) -> tuple[list[DatasetRead], int]:
    repo = DatasetRepository(session)
    datasets, total = repo.page(user, name=name, limit=limit, offset=offset)
    latest = repo.latest_versions(datasets)
    items = [
        DatasetRead.model_validate(
            {
                **_dataset_fields(d),
                "latest_version": DatasetVersionRead.model_validate(latest[d.id]),
            }
        )
        for d in datasets
    ]
    return items, total


def detail(session: Session, user: User, dataset_id: str) -> DatasetDetail:
    dataset = get_owned(session, user, dataset_id)
    return _detail(dataset, _latest(session, dataset))


def versions(session: Session, user: User, dataset_id: str) -> DatasetVersionList:
    dataset = get_owned(session, user, dataset_id)
    rows = DatasetRepository(session).versions(dataset.id)
    return DatasetVersionList(versions=[DatasetVersionRead.model_validate(v) for v in rows])


def resolve_version(
    session: Session, user: User, dataset_id: str, version: str | None
) -> DatasetVersion:
    """The version a job or a download names: ``"v1.2.0"``, or ``"latest"``/None for the
    latest. Owner-checked: someone else's dataset is not found, exactly like a missing one.
    Its file is ``store.local_path(found.hash)``."""
    return _resolve(session, get_owned(session, user, dataset_id), version)


def download(session: Session, user: User, dataset_id: str, version: str) -> Download:
    dataset = get_owned(session, user, dataset_id)
    found = _resolve(session, dataset, version)
    name = safe_filename(found.filename, default=f"{dataset.name}-{found.version}")
    return Download(hash=found.hash, size=found.size, filename=name)


def _resolve(session: Session, dataset: Dataset, version: str | None) -> DatasetVersion:
    if version is None or version == LATEST:
        return _latest(session, dataset)
    found = DatasetRepository(session).version_by_label(dataset.id, version)
    if found is None:
        raise NotFound(f"Dataset '{dataset.id}' has no version '{version}'")
    return found


def _latest(session: Session, dataset: Dataset) -> DatasetVersion:
    found = DatasetRepository(session).version_by_number(dataset.id, dataset.version_count)
    # Every dataset is created together with its first version, in one transaction.
    assert found is not None, f"dataset {dataset.id} has no version {dataset.version_count}"
    return found


def _dataset_fields(dataset: Dataset) -> dict[str, object]:
    return {
        "id": dataset.id,
        "name": dataset.name,
        "owner_id": dataset.owner_id,
        "created_at": dataset.created_at,
        "updated_at": dataset.updated_at,
        "version_count": dataset.version_count,
    }


def _detail(dataset: Dataset, latest: DatasetVersion) -> DatasetDetail:
    return DatasetDetail.model_validate(
        {**_dataset_fields(dataset), "latest_version": DatasetVersionDetail.model_validate(latest)}
    )
