"""jobs: retries after a lost node (max_retries, restarts, lost_handle) and dispatch latency

Revision ID: 0022
Revises: 0017
Create Date: 2026-12-04 18:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("max_retries", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("restarts", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("lost_handle", sa.JSON(none_as_null=True), nullable=True))
        batch.add_column(sa.Column("dispatch_seconds", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("dispatch_seconds")
        batch.drop_column("lost_handle")
        batch.drop_column("restarts")
        batch.drop_column("max_retries")
