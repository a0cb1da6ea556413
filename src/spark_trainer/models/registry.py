from __future__ import annotations

from sqlalchemy import JSON, BigInteger, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from spark_trainer.models.base import Base, TimestampMixin


class ModelVersion(TimestampMixin, Base):
    """One registered version of a model name (``GET /api/models/{id}`` is one of these)."""

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("owner_id", "name", "version"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(Integer)
    description: Mapped[str | None] = mapped_column(Text, default=None)
    source_job_id: Mapped[str | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="SET NULL"), default=None, index=True
    )
    experiment_id: Mapped[str | None] = mapped_column(
        ForeignKey("experiments.id", ondelete="SET NULL"), default=None
    )
    dataset_version_id: Mapped[str | None] = mapped_column(String(40), default=None)
    metrics: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    total_size: Mapped[int] = mapped_column(BigInteger, default=0)

    files: Mapped[list[ModelFile]] = relationship(
        order_by="ModelFile.path", cascade="all, delete-orphan", lazy="selectin"
    )
    tags: Mapped[list[ModelTag]] = relationship(
        order_by="ModelTag.tag", lazy="selectin", viewonly=True
    )


class ModelFile(Base):
    __tablename__ = "model_files"

    model_id: Mapped[str] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), primary_key=True
    )
    # Relative, normalised path inside the model ("adapter/config.json"); never absolute.
    path: Mapped[str] = mapped_column(String(1024), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(32))


class ModelTag(Base):
    """An alias: ``production`` names at most one version of a model name at a time."""

    __tablename__ = "model_tags"
    __table_args__ = (UniqueConstraint("owner_id", "name", "tag"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    tag: Mapped[str] = mapped_column(String(64))
    model_id: Mapped[str] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), index=True
    )
