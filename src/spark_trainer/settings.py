"""The one settings object, read from ``SPARKTRAINER_*`` environment variables.

Business code receives a :class:`Settings` instance; it never reads ``os.environ``.
Bad configuration fails here, at start-up, not at the first request.
"""

from __future__ import annotations

import os
import secrets
import socket
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SECRET_KEY_FILE = "secret_key"  # noqa: S105 - a file name
MIN_SECRET_LENGTH = 32


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SPARKTRAINER_", extra="ignore")

    data_dir: Path = Field(
        default=Path("sparktrainer-data"),
        description="Where the embedded database, the generated secret, logs and artifacts live.",
    )
    host: str = Field(default="127.0.0.1", description="Interface the API listens on.")
    port: int = Field(default=5001, ge=1, le=65535, description="Port the API listens on.")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL. Unset: SQLite in the data directory. "
        "PostgreSQL: postgresql+psycopg://user:pass@host/db.",
    )
    redis_url: str | None = Field(
        default=None,
        description="Redis URL. Set: rate limits are shared between API processes through it.",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="Key that signs tokens. Unset: generated once and kept in the data directory.",
    )
    admin_password: SecretStr | None = Field(
        default=None,
        description="Password of the admin user created on first start. Unset: generated, "
        "printed once.",
    )
    access_token_ttl_seconds: int = Field(default=3600, ge=60)
    refresh_token_ttl_seconds: int = Field(default=30 * 24 * 3600, ge=300)
    rate_limit_standard_per_minute: int = Field(default=100, ge=1)
    rate_limit_premium_per_minute: int = Field(default=1000, ge=1)
    login_attempts_per_minute: int = Field(
        default=10, ge=1, description="Login attempts allowed per username and client address."
    )
    max_request_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="Largest request body outside uploads."
    )
    max_upload_bytes: int = Field(
        default=50 * 1024**3, ge=1, description="Largest file one dataset upload may carry."
    )
    artifacts_dir: Path | None = Field(
        default=None,
        description="Where dataset and model files are kept (content-addressed by md5, laid "
        "out like a DVC 3 cache). Unset: DATA_DIR/artifacts.",
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="Origins allowed by CORS; empty turns CORS off."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"
    graceful_shutdown_seconds: int = Field(default=30, ge=0)
    user_cache_seconds: float = Field(
        default=5.0,
        ge=0,
        le=300,
        description="How long the user behind a token or API key is cached. A change to the "
        "user (disabled, role, tier, password) or a revoked key takes effect at once in every "
        "API process sharing SPARKTRAINER_REDIS_URL; this bounds it when that bus is down.",
    )

    node_name: str = Field(
        default_factory=socket.gethostname,
        description="Name of this machine as a GPU node in the scheduler.",
    )
    reserve_after_seconds: float = Field(
        default=120.0,
        ge=0,
        description="How long a job that does not fit may wait before it reserves a node, "
        "so that smaller jobs stop overtaking it (see the scheduling policy).",
    )
    kill_grace_seconds: float = Field(
        default=10.0,
        ge=0,
        description="Time between SIGTERM and SIGKILL when a job is cancelled or times out.",
    )
    public_url: str | None = Field(
        default=None,
        description="URL jobs use to reach this API (metrics ingestion). "
        "Default: http://<host>:<port>.",
    )
    gpus: int | None = Field(
        default=None,
        ge=0,
        le=1024,
        description="Configure a virtual inventory of this many GPUs instead of reading NVML "
        "(for machines without GPUs; reported as virtual in /api/gpus).",
    )

    @field_validator("secret_key")
    @classmethod
    def _secret_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_SECRET_LENGTH:
            raise ValueError(f"must be at least {MIN_SECRET_LENGTH} characters")
        return value

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if value.startswith("postgresql://"):
            # psycopg 3 is the driver we ship; plain postgresql:// would ask for psycopg2.
            return "postgresql+psycopg://" + value.removeprefix("postgresql://")
        if not value.startswith(("sqlite", "postgresql+psycopg")):
            raise ValueError("only sqlite:// and postgresql+psycopg:// URLs are supported")
        return value

    @model_validator(mode="after")
    def _absolute_data_dir(self) -> Settings:
        self.data_dir = self.data_dir.expanduser().resolve()
        return self

    @property
    def api_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host  # noqa: S104
        return f"http://{host}:{self.port}"

    @property
    def artifacts_root(self) -> Path:
        return (self.artifacts_dir or self.data_dir / "artifacts").expanduser().resolve()

    @cached_property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'sparktrainer.db'}"

    @property
    def is_sqlite(self) -> bool:
        return self.effective_database_url.startswith("sqlite")

    @cached_property
    def signing_key(self) -> str:
        """The token signing key: configured, or generated once and kept (mode 0600)."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value()
        path = self.data_dir / SECRET_KEY_FILE
        if path.exists():
            return path.read_text().strip()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        # O_EXCL: two processes starting at once must not each write their own key.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_text().strip()
        with os.fdopen(fd, "w") as handle:
            handle.write(key)
        return key
