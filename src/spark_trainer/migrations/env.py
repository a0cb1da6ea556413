"""Alembic environment: runs on the connection handed over by ``db.migrate`` or on the URL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from spark_trainer.models import Base

config = context.config
target_metadata = Base.metadata


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_on(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        from spark_trainer.settings import Settings

        url = Settings().effective_database_url
    engine = create_engine(url)
    with engine.connect() as conn:
        _run_on(conn)
    engine.dispose()


def _ours(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    # Optuna keeps its tables (studies, trials, ...) in the same database and creates
    # them itself; autogenerate must not propose dropping them.
    return not (type_ == "table" and reflected and compare_to is None)


def _run_on(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_object=_ours,
        # SQLite can't ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run()
