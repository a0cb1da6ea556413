"""Where Optuna keeps a study: its RDB storage, apart from SparkTrainer's own tables.

Optuna versions its schema in an ``alembic_version`` table, the same name SparkTrainer's
migrations use, and refuses to open a database whose table records another project's
revision. So its tables live where that table is its own, and a plain
``optuna.load_study(study_name=..., storage=URL)`` opens them without any flag:

- PostgreSQL: the same database, schema ``optuna`` (created by migration 0013), selected
  with ``?options=-csearch_path%3Doptuna`` on the database URL;
- SQLite: a file beside the database file, ``<name>-optuna.db``, which also keeps Optuna's
  writes from waiting on SparkTrainer's for the one SQLite write lock.
"""

from __future__ import annotations

from pathlib import Path

from optuna.storages import RDBStorage
from sqlalchemy import make_url

from spark_trainer.settings import Settings

OPTUNA_SCHEMA = "optuna"


def storage_url(settings: Settings) -> str:
    """The URL to hand Optuna (with the database's password, so never logged)."""
    sqlite_path = settings.sqlite_path
    if sqlite_path is not None:
        return f"sqlite:///{_sqlite_file(sqlite_path)}"
    url = make_url(settings.effective_database_url)
    return url.update_query_dict({"options": f"-csearch_path={OPTUNA_SCHEMA}"}).render_as_string(
        hide_password=False
    )


def _sqlite_file(database: Path) -> Path:
    return database.with_name(f"{database.stem}-optuna.db")


def open_storage(settings: Settings) -> RDBStorage:
    """Opens (creating on first use) Optuna's storage for this server's database."""
    url = storage_url(settings)
    sqlite = settings.sqlite_path is not None
    engine_kwargs: dict[str, object] = (
        # Optuna's writes wait for the file's lock rather than failing under load.
        {"connect_args": {"timeout": 30}} if sqlite else {"pool_pre_ping": True}
    )
    storage = RDBStorage(url, engine_kwargs=engine_kwargs)
    if sqlite and settings.sqlite_path is not None:
        # Same protection as the database file: the study's parameters are the owner's.
        _sqlite_file(settings.sqlite_path).chmod(0o600)
    return storage
