"""job kinds, nodes, gpu allocations, job outbox, leases

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 18:37:38.308395
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

import spark_trainer.db.types

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=255), nullable=False),
        sa.Column("expires_at", spark_trainer.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_leases")),
    )
    op.create_table(
        "nodes",
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("gpus", sa.JSON(), nullable=False),
        sa.Column("gpu_count", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column(
            "heartbeat_at", spark_trainer.db.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("created_at", spark_trainer.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_nodes")),
    )
    op.create_table(
        "gpu_allocations",
        sa.Column("node", sa.String(length=255), nullable=False),
        sa.Column("gpu_index", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.String(length=40), nullable=False),
        sa.Column(
            "allocated_at", spark_trainer.db.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_gpu_allocations_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("node", "gpu_index", name=op.f("pk_gpu_allocations")),
    )
    with op.batch_alter_table("gpu_allocations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_gpu_allocations_job_id"), ["job_id"], unique=False)

    op.create_table(
        "job_outbox",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("job_id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("parent_id", sa.String(length=40), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", spark_trainer.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_job_outbox_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_outbox")),
    )
    with op.batch_alter_table("job_outbox", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_job_outbox_job_id"), ["job_id"], unique=False)

    op.create_table(
        "job_outbox_deliveries",
        sa.Column("event_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("handler", sa.String(length=100), nullable=False),
        sa.Column("delivered_at", spark_trainer.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column(
            "next_attempt_at", spark_trainer.db.types.UTCDateTime(timezone=True), nullable=True
        ),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["job_outbox.id"],
            name=op.f("fk_job_outbox_deliveries_event_id_job_outbox"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("event_id", "handler", name=op.f("pk_job_outbox_deliveries")),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("kind", sa.String(length=32), nullable=False, server_default="training")
        )
        batch_op.add_column(sa.Column("parent_id", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("params", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("handle", sa.JSON(), nullable=True))
        batch_op.add_column(
            sa.Column("metrics_seq_reserved", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch_op.create_index(batch_op.f("ix_jobs_parent_id"), ["parent_id"], unique=False)

    # Running jobs keep their process: the local executor's handle is the pid and start time.
    jobs = sa.table(
        "jobs",
        sa.column("id", sa.String),
        sa.column("status", sa.String),
        sa.column("pid", sa.Integer),
        sa.column("process_started_at", sa.Float),
        sa.column("handle", sa.JSON),
        sa.column("node", sa.String),
        sa.column("gpus", sa.JSON),
        sa.column("started_at", spark_trainer.db.types.UTCDateTime(timezone=True)),
    )
    allocations = sa.table(
        "gpu_allocations",
        sa.column("node", sa.String),
        sa.column("gpu_index", sa.Integer),
        sa.column("job_id", sa.String),
        sa.column("allocated_at", spark_trainer.db.types.UTCDateTime(timezone=True)),
    )
    conn = op.get_bind()
    running = conn.execute(
        sa.select(
            jobs.c.id,
            jobs.c.pid,
            jobs.c.process_started_at,
            jobs.c.node,
            jobs.c.gpus,
            jobs.c.started_at,
        ).where(jobs.c.status == "running")
    ).all()
    for row in running:
        if row.pid is not None and row.process_started_at is not None:
            conn.execute(
                jobs.update()
                .where(jobs.c.id == row.id)
                .values(
                    handle={
                        "executor": "local",
                        "data": {"pid": row.pid, "started_at": row.process_started_at},
                    }
                )
            )
        for gpu in row.gpus or []:
            conn.execute(
                allocations.insert().values(
                    node=row.node,
                    gpu_index=gpu,
                    job_id=row.id,
                    allocated_at=row.started_at or datetime.now(UTC),
                )
            )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("pid")
        batch_op.drop_column("process_started_at")


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_jobs_parent_id"))
        batch_op.add_column(sa.Column("process_started_at", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("pid", sa.Integer(), nullable=True))
        batch_op.drop_column("metrics_seq_reserved")
        batch_op.drop_column("handle")
        batch_op.drop_column("params")
        batch_op.drop_column("parent_id")
        batch_op.drop_column("kind")

    op.drop_table("job_outbox_deliveries")
    with op.batch_alter_table("job_outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_job_outbox_job_id"))

    op.drop_table("job_outbox")
    with op.batch_alter_table("gpu_allocations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_gpu_allocations_job_id"))

    op.drop_table("gpu_allocations")
    op.drop_table("nodes")
    op.drop_table("leases")
