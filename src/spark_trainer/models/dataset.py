from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from spark_trainer.kit.time import utcnow
from spark_trainer.models.base import Base, TimestampMixin


class DatasetFormat(StrEnum):
    JSONL = "jsonl"
    JSON = "json"
    CSV = "csv"
    TSV = "tsv"
    PARQUET = "parquet"
    TEXT = "text"
    BINARY = "binary"


class Dataset(TimestampMixin, Base):
    """A named, versioned file of one owner; its bytes live in the artifact store."""

    __tablename__ = "datasets"
    __table_args__ = (UniqueConstraint("owner_id", "name"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(128))
    # The latest version is the one whose number equals this, so a page of datasets
    # finds its latest versions in one join.
    version_count: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class DatasetVersion(TimestampMixin, Base):
    """One immutable version: which blob holds it and what was learnt while storing it."""

    __tablename__ = "dataset_versions"
    __table_args__ = (
        UniqueConstraint("dataset_id", "version", name="uq_dataset_versions_dataset_id_version"),
        UniqueConstraint("dataset_id", "number", name="uq_dataset_versions_dataset_id_number"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    version: Mapped[str] = mapped_column(String(32))
    # md5 of the raw bytes (DVC 3's file hash), the blob's address in the artifact store.
    hash: Mapped[str] = mapped_column(String(32), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    # As the client named it: shown and offered as the download name once sanitised,
    # never used as a path.
    filename: Mapped[str | None] = mapped_column(String(255), default=None)
    format: Mapped[DatasetFormat] = mapped_column(String(16))
    record_count: Mapped[int | None] = mapped_column(BigInteger, default=None)
    preview: Mapped[list[Any] | None] = mapped_column(JSON, default=None)
