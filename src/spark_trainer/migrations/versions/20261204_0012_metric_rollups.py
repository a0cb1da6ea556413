"""metric rollups: per-block extremes for downsampling long histories

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 19:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "metric_rollups",
        sa.Column("job_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("block", sa.BigInteger(), nullable=False),
        sa.Column("min_step", sa.BigInteger(), nullable=False),
        sa.Column("max_step", sa.BigInteger(), nullable=False),
        sa.Column("min_value", sa.Float(), nullable=False),
        sa.Column("max_value", sa.Float(), nullable=False),
        sa.Column("min_wall", sa.Float(), nullable=False),
        sa.Column("max_wall", sa.Float(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_metric_rollups_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("job_id", "name", "block", name=op.f("pk_metric_rollups")),
    )
    # The points stored before this revision: their blocks, computed once.
    # 128: spark_trainer.models.metric_rollup.ROLLUP_STEPS when this was written.
    op.execute(
        "INSERT INTO metric_rollups (job_id, name, block, min_step, max_step, min_value, "
        "max_value, min_wall, max_wall, count) "
        "SELECT job_id, name, step / 128, min(step), max(step), min(value), "
        "max(value), min(wall_time), max(wall_time), count(*) "
        "FROM metric_points GROUP BY job_id, name, step / 128"
    )


def downgrade() -> None:
    op.drop_table("metric_rollups")
