"""jobs: indexes for the newest-first lists (all jobs, an experiment's runs)

The admin's job list sorted every job for each page (SQLite: a temporary B-tree over the
whole table); an experiment's runs did the same within the experiment. The experiment's
index gains the order's columns and replaces the single-column one.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-05 02:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_jobs_created", "jobs", ["created_at", "id"])
    op.create_index("ix_jobs_experiment_created", "jobs", ["experiment_id", "created_at", "id"])
    op.drop_index("ix_jobs_experiment_id", table_name="jobs")


def downgrade() -> None:
    op.create_index("ix_jobs_experiment_id", "jobs", ["experiment_id"])
    op.drop_index("ix_jobs_experiment_created", table_name="jobs")
    op.drop_index("ix_jobs_created", table_name="jobs")
