"""Shared fixtures: a migrated database per backend, an app, users and their tokens.

Every test that takes ``client`` runs twice, on SQLite and on PostgreSQL. The schema
is built by the real Alembic migrations once per worker; each test then starts from
empty tables (a copied SQLite file, or TRUNCATE on PostgreSQL).
"""

from __future__ import annotations

import contextlib
import getpass
import os
import secrets
import shutil
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from spark_trainer.app import create_app
from spark_trainer.context import AppContext
from spark_trainer.db.migrate import upgrade_to_head
from spark_trainer.identity import tokens
from spark_trainer.identity.passwords import hash_password
from spark_trainer.kit.ids import IdPrefix, new_id
from spark_trainer.kit.time import utcnow
from spark_trainer.models import Base, Role, Tier, User
from spark_trainer.settings import Settings
from tests.services import require_postgres

SECRET_KEY = "test-signing-key-" + "x" * 32
PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def _no_stray_job_processes(tmp_path: Path) -> Iterator[None]:
    """Job processes outlive the server by design (a restart adopts them); a test that
    ends with a job still running must not leave it behind, so every process whose
    command line names this test's directory is killed afterwards."""
    yield
    marker = str(tmp_path)
    for process in psutil.process_iter(["pid", "cmdline"]):
        cmdline = process.info["cmdline"] or []
        if process.pid == os.getpid() or not any(marker in part for part in cmdline):
            continue
        with contextlib.suppress(OSError, psutil.Error):
            group = os.getpgid(process.pid)
            if group != os.getpgrp():
                os.killpg(group, signal.SIGKILL)  # a job's shim: its whole process group
            else:
                process.kill()


@pytest.fixture(scope="session")
def password_hash() -> str:
    # argon2 costs ~0.2 s a hash on these cores; fixtures reuse one.
    return hash_password(PASSWORD)


@pytest.fixture(scope="session")
def worker_id_str(request: pytest.FixtureRequest) -> str:
    return str(getattr(request.config, "workerinput", {}).get("workerid", "main"))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = create_engine(f"sqlite:///{path}")
    upgrade_to_head(engine)
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def postgres_database(worker_id_str: str) -> Iterator[str]:
    admin_url = make_url(require_postgres())
    name = f"sparktrainer_test_{worker_id_str}_{secrets.token_hex(3)}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin_url.set(database=name).render_as_string(hide_password=False)
    engine = create_engine(url)
    upgrade_to_head(engine)
    engine.dispose()
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        target = tmp_path / "sparktrainer.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), target)
        return f"sqlite:///{target}"
    url: str = request.getfixturevalue("postgres_database")
    engine = create_engine(url)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} CASCADE"))
    engine.dispose()
    return url


@pytest.fixture
def settings_factory(tmp_path: Path, database_url: str) -> Callable[..., Settings]:
    def make(**overrides: object) -> Settings:
        values: dict[str, object] = {
            "data_dir": tmp_path / "data",
            "database_url": database_url,
            "secret_key": SECRET_KEY,
            "admin_password": PASSWORD,
            "log_format": "text",
            # A virtual 4-GPU node, so the scheduler is exercised on a machine without GPUs.
            "gpus": 4,
            "kill_grace_seconds": 2.0,
            # Test jobs read and write this test's tmp_path (0700): they run as the test's
            # own user. The isolation tests set a job user of their own.
            "job_user": getpass.getuser(),
        }
        values.update(overrides)
        return Settings(**values)  # type: ignore[arg-type]

    return make


@pytest.fixture
def settings(settings_factory: Callable[..., Settings]) -> Settings:
    return settings_factory()


@pytest.fixture
def ctx(settings: Settings) -> Iterator[AppContext]:
    context = AppContext.build(settings)
    yield context
    context.close()


@pytest.fixture
def client(settings: Settings, ctx: AppContext) -> Iterator[TestClient]:
    with TestClient(create_app(settings, ctx)) as test_client:
        yield test_client


@dataclass
class Account:
    user: User
    password: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture
def make_account(ctx: AppContext, password_hash: str) -> Callable[..., Account]:
    """Creates a user straight in the database and mints a real access token for it."""

    def make(
        username: str | None = None, *, role: Role = Role.USER, tier: Tier = Tier.STANDARD
    ) -> Account:
        user = User(
            id=new_id(IdPrefix.USER),
            username=username or f"user-{secrets.token_hex(4)}",
            password_hash=password_hash,
            role=role,
            tier=tier,
        )
        with ctx.session_factory.begin() as session:
            session.add(user)
        token = tokens.encode_token(
            key=ctx.tokens.key,
            subject=user.id,
            token_type="access",
            now=utcnow(),
            ttl_seconds=ctx.tokens.access_ttl,
            jti=secrets.token_hex(8),
        )
        return Account(user=user, password=PASSWORD, token=token)

    return make


@pytest.fixture
def admin(make_account: Callable[..., Account]) -> Account:
    return make_account("admin", role=Role.ADMIN, tier=Tier.PREMIUM)


@pytest.fixture
def alice(make_account: Callable[..., Account]) -> Account:
    return make_account("alice")


@pytest.fixture
def bob(make_account: Callable[..., Account]) -> Account:
    return make_account("bob")


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny GPT-2 with its tokenizer, as a Hugging Face directory (see tests/tinylm.py)."""
    from tests.tinylm import build_tiny_lm

    return build_tiny_lm(tmp_path_factory.mktemp("tiny-lm") / "model")
