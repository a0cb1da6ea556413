"""metric points: on PostgreSQL, their job is checked once per statement, not per row

The foreign key to ``jobs`` ran a check query for every inserted point: a COPY of 5,000
points paid 5,000 of them. Statement-level triggers keep what it guaranteed with one
query per statement: a point whose job does not exist is refused (the same SQLSTATE,
23503, and message), and deleting (or truncating) jobs deletes their points, as ON DELETE
CASCADE did. The referenced jobs are locked FOR KEY SHARE, as the foreign key's check
does, so a job deleted concurrently either waits for the points' transaction (and then
deletes them) or makes their insert fail.

SQLite keeps its foreign key: its check is a local index probe.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-05 18:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FOREIGN_KEY = "fk_metric_points_job_id_jobs"

UPGRADE = [
    f"ALTER TABLE metric_points DROP CONSTRAINT {FOREIGN_KEY}",
    """
    CREATE FUNCTION metric_points_job_exists() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        missing text;
    BEGIN
        PERFORM 1 FROM jobs WHERE id IN (SELECT job_id FROM new_points) FOR KEY SHARE;
        SELECT p.job_id INTO missing FROM (SELECT DISTINCT job_id FROM new_points) AS p
        WHERE NOT EXISTS (SELECT 1 FROM jobs WHERE jobs.id = p.job_id) LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'insert or update on table "metric_points" violates foreign key '
                'constraint "fk_metric_points_job_id_jobs"'
                USING ERRCODE = 'foreign_key_violation', TABLE = 'metric_points',
                CONSTRAINT = 'fk_metric_points_job_id_jobs',
                DETAIL = 'Key (job_id)=(' || missing || ') is not present in table "jobs".';
        END IF;
        RETURN NULL;
    END $$
    """,
    # Transition tables allow one event per trigger.
    "CREATE TRIGGER metric_points_job_inserted AFTER INSERT ON metric_points"
    " REFERENCING NEW TABLE AS new_points FOR EACH STATEMENT"
    " EXECUTE FUNCTION metric_points_job_exists()",
    "CREATE TRIGGER metric_points_job_updated AFTER UPDATE ON metric_points"
    " REFERENCING NEW TABLE AS new_points FOR EACH STATEMENT"
    " EXECUTE FUNCTION metric_points_job_exists()",
    """
    CREATE FUNCTION jobs_delete_metric_points() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM metric_points WHERE job_id IN (SELECT id FROM deleted_jobs);
        RETURN NULL;
    END $$
    """,
    "CREATE TRIGGER jobs_metric_points_deleted AFTER DELETE ON jobs"
    " REFERENCING OLD TABLE AS deleted_jobs FOR EACH STATEMENT"
    " EXECUTE FUNCTION jobs_delete_metric_points()",
    """
    CREATE FUNCTION jobs_truncate_metric_points() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        -- Not TRUNCATE: it fails when the same statement truncates metric_points too.
        DELETE FROM metric_points;
        RETURN NULL;
    END $$
    """,
    "CREATE TRIGGER jobs_metric_points_truncated AFTER TRUNCATE ON jobs"
    " FOR EACH STATEMENT EXECUTE FUNCTION jobs_truncate_metric_points()",
    # A job's id never changes; the foreign key refused a change that left points behind
    # (ON UPDATE NO ACTION), and so does this. Row-level with a column list: it runs only
    # for an UPDATE that sets id, never for the status and progress updates.
    """
    CREATE FUNCTION jobs_id_keeps_metric_points() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF OLD.id IS DISTINCT FROM NEW.id
            AND EXISTS (SELECT 1 FROM metric_points WHERE job_id = OLD.id) THEN
            RAISE EXCEPTION 'update or delete on table "jobs" violates foreign key '
                'constraint "fk_metric_points_job_id_jobs" on table "metric_points"'
                USING ERRCODE = 'foreign_key_violation', TABLE = 'jobs',
                CONSTRAINT = 'fk_metric_points_job_id_jobs',
                DETAIL = 'Key (id)=(' || OLD.id || ') is still referenced from table '
                    '"metric_points".';
        END IF;
        RETURN NULL;
    END $$
    """,
    "CREATE TRIGGER jobs_id_updated AFTER UPDATE OF id ON jobs"
    " FOR EACH ROW EXECUTE FUNCTION jobs_id_keeps_metric_points()",
]

DOWNGRADE = [
    "DROP TRIGGER jobs_id_updated ON jobs",
    "DROP FUNCTION jobs_id_keeps_metric_points()",
    "DROP TRIGGER jobs_metric_points_truncated ON jobs",
    "DROP FUNCTION jobs_truncate_metric_points()",
    "DROP TRIGGER jobs_metric_points_deleted ON jobs",
    "DROP FUNCTION jobs_delete_metric_points()",
    "DROP TRIGGER metric_points_job_updated ON metric_points",
    "DROP TRIGGER metric_points_job_inserted ON metric_points",
    "DROP FUNCTION metric_points_job_exists()",
    f"ALTER TABLE metric_points ADD CONSTRAINT {FOREIGN_KEY} FOREIGN KEY (job_id)"
    " REFERENCES jobs (id) ON DELETE CASCADE",
]


def _run(statements: list[str]) -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        for statement in statements:
            # As written: no bind parameters, and no escaping of the function bodies.
            bind.exec_driver_sql(statement)


def upgrade() -> None:
    _run(UPGRADE)


def downgrade() -> None:
    _run(DOWNGRADE)
