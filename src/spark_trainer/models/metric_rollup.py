from __future__ import annotations

from sqlalchemy import BigInteger, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from spark_trainer.models.base import Base

# Steps per rollup block. A downsampled read whose buckets span at least this many steps
# is answered from the blocks (1/ROLLUP_STEPS of the rows), with exact extremes.
ROLLUP_STEPS = 128


class MetricRollup(Base):
    """Per job, metric and block of ROLLUP_STEPS steps (``block = step // ROLLUP_STEPS``):
    the smallest and largest step, value and wall time, and the count. Kept up to date as
    points are stored, so downsampling a long history reads blocks, not points; each
    block's min and max are those of its points, so every bucket made of whole blocks
    keeps its exact extremes."""

    __tablename__ = "metric_rollups"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    block: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    min_step: Mapped[int] = mapped_column(BigInteger)
    max_step: Mapped[int] = mapped_column(BigInteger)
    min_value: Mapped[float]
    max_value: Mapped[float]
    min_wall: Mapped[float]
    max_wall: Mapped[float]
    count: Mapped[int] = mapped_column(BigInteger)
