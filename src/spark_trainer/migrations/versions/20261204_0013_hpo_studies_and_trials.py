"""hpo studies and trials; on PostgreSQL, the schema Optuna's own tables live in

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04 15:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import spark_trainer.db.types

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# spark_trainer.studies.storage.OPTUNA_SCHEMA when this was written.
OPTUNA_SCHEMA = "optuna"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # Optuna keeps its own alembic_version table; in a schema of its own it never meets
        # SparkTrainer's, so plain optuna.load_study works (see studies.storage).
        op.execute(f"CREATE SCHEMA IF NOT EXISTS {OPTUNA_SCHEMA}")
    op.create_table(
        "hpo_studies",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("owner_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("objective", sa.String(length=16), nullable=False),
        sa.Column("search_space", sa.JSON(), nullable=False),
        sa.Column("n_trials", sa.Integer(), nullable=False),
        sa.Column("parallelism", sa.Integer(), nullable=False),
        sa.Column("command", sa.Text(), nullable=False),
        sa.Column("metric", sa.String(length=128), nullable=False),
        sa.Column("metric_value", sa.String(length=8), nullable=False),
        sa.Column("gpu_count", sa.Integer(), nullable=False),
        sa.Column("environment", sa.JSON(), nullable=False),
        sa.Column("timeout_seconds", sa.Integer(), nullable=True),
        sa.Column("experiment_id", sa.String(length=40), nullable=True),
        sa.Column("dataset_id", sa.String(length=40), nullable=True),
        sa.Column("dataset_version", sa.String(length=32), nullable=True),
        sa.Column("sampler", sa.String(length=16), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=True),
        sa.Column("pruner", sa.String(length=16), nullable=False),
        sa.Column("pruner_startup_trials", sa.Integer(), nullable=False),
        sa.Column("pruner_warmup_steps", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("started_at", spark_trainer.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", spark_trainer.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("parameter_importance", sa.JSON(), nullable=True),
        sa.Column("created_at", spark_trainer.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name=op.f("fk_hpo_studies_experiment_id_experiments"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["users.id"],
            name=op.f("fk_hpo_studies_owner_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hpo_studies")),
    )
    with op.batch_alter_table("hpo_studies", schema=None) as batch_op:
        batch_op.create_index(
            "ix_hpo_studies_owner_created", ["owner_id", "created_at"], unique=False
        )
        batch_op.create_index("ix_hpo_studies_status", ["status"], unique=False)

    op.create_table(
        "hpo_trials",
        sa.Column("study_id", sa.String(length=40), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("optuna_trial_id", sa.BigInteger(), nullable=False),
        sa.Column("job_id", sa.String(length=40), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("reported_step", sa.BigInteger(), nullable=False),
        sa.Column("optuna_told", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_hpo_trials_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["study_id"],
            ["hpo_studies.id"],
            name=op.f("fk_hpo_trials_study_id_hpo_studies"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("study_id", "number", name=op.f("pk_hpo_trials")),
        sa.UniqueConstraint("optuna_trial_id", name=op.f("uq_hpo_trials_optuna_trial_id")),
    )
    with op.batch_alter_table("hpo_trials", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_hpo_trials_job_id"), ["job_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("hpo_trials", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_hpo_trials_job_id"))

    op.drop_table("hpo_trials")
    with op.batch_alter_table("hpo_studies", schema=None) as batch_op:
        batch_op.drop_index("ix_hpo_studies_status")
        batch_op.drop_index("ix_hpo_studies_owner_created")

    op.drop_table("hpo_studies")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP SCHEMA IF EXISTS {OPTUNA_SCHEMA} CASCADE")
