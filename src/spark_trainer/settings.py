"""The one settings object, read from ``SPARKTRAINER_*`` environment variables.

Business code receives a :class:`Settings` instance; it never reads ``os.environ``.
Bad configuration fails here, at start-up, not at the first request.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import socket
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url

SECRET_KEY_FILE = "secret_key"  # noqa: S105 - a file name
# What a job inherits from the server's environment: enough to find programs, speak the
# locale and use the proxy; never credentials. PATH is rebuilt (see runtime.environment).
DEFAULT_JOB_ENV_ALLOWLIST = (
    "PATH",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TERM",
    "TMPDIR",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "LD_LIBRARY_PATH",
    "CUDA_HOME",
    "HF_HOME",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
)
MIN_SECRET_LENGTH = 32
DEFAULT_VIRTUAL_GPU_GB = 80
MAX_VIRTUAL_GPUS = 1024
_VIRTUAL_GPUS = re.compile(r"^\s*(\d{1,4})\s*(?:[xX]\s*(\d{1,5})\s*(?:GB|GiB|G)?)?\s*$", re.I)


def parse_virtual_gpus(spec: str) -> tuple[int, int]:
    """'4' or '4x80GB' → (4, 80 GiB in bytes). GB are binary, as NVML reports memory:
    an '80GB' A100 has 85899345920 bytes."""
    found = _VIRTUAL_GPUS.match(spec)
    if found is None:
        raise ValueError("must be a GPU count ('4') or count x memory per GPU ('4x80GB')")
    count = int(found.group(1))
    gigabytes = int(found.group(2) or DEFAULT_VIRTUAL_GPU_GB)
    if count > MAX_VIRTUAL_GPUS or gigabytes < 1:
        raise ValueError(f"at most {MAX_VIRTUAL_GPUS} GPUs of at least 1GB each")
    return count, gigabytes * 1024**3


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SPARKTRAINER_", extra="ignore")

    data_dir: Path = Field(
        default=Path("sparktrainer-data"),
        description="Where the embedded database, the generated secret, logs and artifacts live.",
    )
    host: str = Field(default="127.0.0.1", description="Interface the API listens on.")
    web_dir: Path = Field(
        default=Path(__file__).resolve().parents[2] / "web" / "dist",
        description="The built dashboard (`npm run build` in `web/`), served at `/`.",
    )
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
    # Seconds are allowed so tests (and the SDKs' refresh tests) can cross an expiry quickly.
    access_token_ttl_seconds: int = Field(default=3600, ge=1)
    refresh_token_ttl_seconds: int = Field(default=30 * 24 * 3600, ge=300)
    rate_limit_standard_per_minute: int = Field(default=100, ge=1)
    rate_limit_premium_per_minute: int = Field(default=1000, ge=1)
    rate_limit_window_seconds: int = Field(
        default=60,
        ge=1,
        description="Length of one rate-limit window; the per-minute limits apply to it. "
        "Shorter windows are for tests that must see a limit reset.",
    )
    login_attempts_per_minute: int = Field(
        default=10, ge=1, description="Login attempts allowed per username and client address."
    )
    max_request_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="Largest request body outside uploads."
    )
    max_upload_bytes: int = Field(
        default=50 * 1024**3, ge=1, description="Largest file one dataset upload may carry."
    )
    body_read_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="A request body (an upload included) that sends nothing for this long "
        "answers 408.",
    )
    max_uploads_per_user: int = Field(
        default=4,
        ge=1,
        le=1000,
        description="Uploads one user may have in progress at once on an API process; "
        "more answer 429.",
    )
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Addresses (or CIDR networks) of reverse proxies whose X-Forwarded-For "
        "and X-Forwarded-Proto are believed. Empty: forwarded headers are ignored and the "
        'client is the socket\'s peer. JSON list or comma-separated: ["10.0.0.5"].',
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
    deployment_port_min: int = Field(
        default=20000, ge=1024, le=65535, description="Lowest port a deployment replica gets."
    )
    deployment_port_max: int = Field(
        default=29999, ge=1024, le=65535, description="Highest port a deployment replica gets."
    )
    gpus: str | None = Field(
        default=None,
        description="A virtual inventory instead of NVML's, for machines without GPUs: "
        f"'4' (four GPUs of {DEFAULT_VIRTUAL_GPU_GB}GB) or '4x24GB'. Reported with "
        '"virtual": true in /api/gpus, with zero readings.',
    )

    executor: Literal["local", "fake", "celery"] = Field(
        default="local",
        description="What runs job processes: `local` (child processes of this server), "
        "`fake` (simulated, for tests) or `celery` (distributed mode: API processes run no "
        "jobs; each placement is sent through Celery to the `sparktrainer worker` of its "
        "node, on the queue `node.<name>`).",
    )
    broker_url: str | None = Field(
        default=None,
        description="Celery's broker in distributed mode (a Redis URL). Default: "
        "SPARKTRAINER_REDIS_URL.",
    )
    leader_lease_seconds: float = Field(
        default=10.0,
        gt=0,
        description="How long the scheduling leader's lease lasts without renewal; another "
        "API process takes over scheduling at most this long (plus one second) after the "
        "leader dies.",
    )
    node_heartbeat_seconds: float = Field(
        default=2.0, gt=0, description="How often a process with GPUs heartbeats its node."
    )
    node_stale_seconds: float = Field(
        default=60.0,
        gt=0,
        description="A node silent this long gets no new jobs, and its running jobs fail as lost.",
    )
    job_user: str | None = Field(
        default=None,
        description="OS user job processes run as. Unset: `nobody` when the server runs as "
        "root, else the server's own user. Jobs then cannot read the data directory, the "
        "database file or the secret key.",
    )
    job_env_allowlist: list[str] = Field(
        default_factory=lambda: list(DEFAULT_JOB_ENV_ALLOWLIST),
        description="Server environment variables a job inherits (besides the platform's "
        "SPARKTRAINER_* ones and the job's own `environment`).",
    )

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _proxy_list(cls, value: object) -> object:
        if isinstance(value, str):
            if value.strip().startswith("["):
                return json.loads(value)
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_addresses(cls, value: list[str]) -> list[str]:
        for entry in value:
            ipaddress.ip_network(entry, strict=False)  # ValueError names the bad entry
        return value

    @field_validator("gpus", mode="before")
    @classmethod
    def _gpus_text(cls, value: object) -> object:
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return value

    @field_validator("gpus")
    @classmethod
    def _gpus_spec(cls, value: str | None) -> str | None:
        if value is not None:
            parse_virtual_gpus(value)
        return value

    @property
    def virtual_gpus(self) -> tuple[int, int] | None:
        """(count, memory of each in bytes) of the configured virtual inventory, or None."""
        return None if self.gpus is None else parse_virtual_gpus(self.gpus)

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
        if self.deployment_port_min > self.deployment_port_max:
            raise ValueError("deployment_port_min must not exceed deployment_port_max")
        return self

    @property
    def api_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host  # noqa: S104
        return f"http://{host}:{self.port}"

    @property
    def effective_broker_url(self) -> str | None:
        return self.broker_url or self.redis_url

    @property
    def artifacts_root(self) -> Path:
        return (self.artifacts_dir or self.data_dir / "artifacts").expanduser().resolve()

    @cached_property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'sparktrainer.db'}"

    @property
    def is_sqlite(self) -> bool:
        return self.effective_database_url.startswith("sqlite")

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite database file, when the database is one."""
        if not self.is_sqlite:
            return None
        database = make_url(self.effective_database_url).database
        return Path(database) if database and database != ":memory:" else None

    def shared_services_problem(self) -> str | None:
        """With a shared database or Redis, every API process must sign tokens with the
        same key: a key generated per data directory would make each reject the others'."""
        if self.executor == "celery" and (self.is_sqlite or not self.redis_url):
            return (
                "SPARKTRAINER_EXECUTOR=celery (distributed mode) needs a shared PostgreSQL "
                "database (SPARKTRAINER_DATABASE_URL) and Redis (SPARKTRAINER_REDIS_URL: "
                "live streams, cancels, and Celery's broker unless SPARKTRAINER_BROKER_URL)"
            )
        shared = [
            name
            for name, value in (
                ("SPARKTRAINER_DATABASE_URL", self.database_url and not self.is_sqlite),
                ("SPARKTRAINER_REDIS_URL", self.redis_url),
            )
            if value
        ]
        if shared and self.secret_key is None:
            return (
                f"SPARKTRAINER_SECRET_KEY must be set when {' and '.join(shared)} point at a "
                "shared service: every API process signs and checks tokens with it. Generate "
                "one with: python -c 'import secrets; print(secrets.token_urlsafe(48))'"
            )
        return None

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
