"""The data directory's permissions: only the server's own user may read it.

It holds the embedded database (password hashes, key digests), the signing key and every
job's logs and outputs. The directory is 0700, so nothing under it is reachable by other
local users whatever its own mode; the database files are 0600 on top. Where jobs run as
another user (a root server), it is 0711 instead: that user passes through it to its own
job directories, without listing it or reading the server's files.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.engine import make_url

from spark_trainer.runtime.environment import JobUser
from spark_trainer.settings import Settings

DIR_MODE = 0o700
PASSABLE_DIR_MODE = 0o711
FILE_MODE = 0o600
# SQLite creates its journal files with the database file's mode.
_SQLITE_SUFFIXES = ("", "-wal", "-shm", "-journal")


def secure_data_dir(settings: Settings) -> None:
    data_dir = settings.data_dir
    # Every start and admin command (`sparktrainer users ...`) comes here, also beside a
    # running server: 0700 would lock its running and next jobs out of their directories.
    mode = PASSABLE_DIR_MODE if JobUser.from_settings(settings, quiet=True).switches else DIR_MODE
    data_dir.mkdir(mode=mode, parents=True, exist_ok=True)
    data_dir.chmod(mode)
    if settings.is_sqlite:
        database = make_url(settings.effective_database_url).database
        if database and database != ":memory:":
            _secure_sqlite(Path(database))


def _secure_sqlite(path: Path) -> None:
    # Created here, empty and 0600, before SQLite creates it with the umask's 0644.
    fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    os.close(fd)
    for suffix in _SQLITE_SUFFIXES:
        existing = path.with_name(path.name + suffix)
        if existing.exists():
            existing.chmod(FILE_MODE)
