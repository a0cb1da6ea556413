"""metric points: (job, name, step, value) is unique, so a retried point is stored once

Revision ID: 0017
Revises: 0015
Create Date: 2026-12-04 15:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0017"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Points already stored twice (a retried POST before this revision) keep their first copy.
    deleted = op.get_bind().exec_driver_sql(
        "DELETE FROM metric_points WHERE EXISTS (SELECT 1 FROM metric_points AS o"
        " WHERE o.job_id = metric_points.job_id AND o.name = metric_points.name"
        " AND o.step = metric_points.step AND o.value = metric_points.value"
        " AND o.seq < metric_points.seq)"
    )
    if deleted.rowcount:
        # The summaries counted the copies; the rollups then disagree with them, which makes
        # downsampled reads use the points themselves (exact) until the rollups are rebuilt.
        op.execute(
            "UPDATE metric_summaries SET count = (SELECT count(*) FROM metric_points AS p"
            " WHERE p.job_id = metric_summaries.job_id AND p.name = metric_summaries.name)"
        )
    with op.batch_alter_table("metric_points", schema=None) as batch_op:
        batch_op.drop_index("ix_metric_points_series")
        batch_op.create_index(
            "ix_metric_points_series", ["job_id", "name", "step", "value"], unique=True
        )


def downgrade() -> None:
    with op.batch_alter_table("metric_points", schema=None) as batch_op:
        batch_op.drop_index("ix_metric_points_series")
        batch_op.create_index(
            "ix_metric_points_series", ["job_id", "name", "step", "value"], unique=False
        )
