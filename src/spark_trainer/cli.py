"""The server's part of the ``sparktrainer`` command: run the server, administer users.

The console script belongs to the SDK distribution (``sparktrainer.cli``, with the client
commands); these commands join it through the ``sparktrainer.commands`` entry points
(``register``), so the two distributions never both install a ``sparktrainer`` script.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from spark_trainer.bootstrap import prepare
from spark_trainer.context import AppContext
from spark_trainer.errors import SparkTrainerError
from spark_trainer.identity import service as identity
from spark_trainer.identity.schemas import UserCreate, UserUpdate
from spark_trainer.models import Role, Tier
from spark_trainer.settings import Settings

if TYPE_CHECKING:
    import uvicorn

users_app = typer.Typer(
    help="Administer users (works directly on the database).", no_args_is_help=True
)

console = Console()
err_console = Console(stderr=True)

DataDirOption = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Data directory [env: SPARKTRAINER_DATA_DIR]"),
]


def _settings(**overrides: Any) -> Settings:
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        err_console.print(f"[red]Invalid configuration:[/red]\n{exc}")
        raise typer.Exit(2) from None


def serve(
    host: Annotated[
        str | None, typer.Option(help="Interface to listen on [env: SPARKTRAINER_HOST]")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port to listen on [env: SPARKTRAINER_PORT]")
    ] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Start the API server (embedded SQLite unless SPARKTRAINER_DATABASE_URL is set)."""

    from spark_trainer.app import create_app
    from spark_trainer.gpus.inventory import NO_GPUS_HINT
    from spark_trainer.observability.logging import configure_logging
    from spark_trainer.serving import StreamEndingServer

    settings = _settings(host=host, port=port, data_dir=data_dir)
    problem = settings.shared_services_problem()
    if problem is not None:
        err_console.print(f"[red]Invalid configuration:[/red] {problem}", highlight=False)
        raise typer.Exit(2)
    configure_logging(settings.log_level, settings.log_format)
    ctx = AppContext.build(settings)
    generated = prepare(ctx)
    if generated is not None:
        # Printed once, to the terminal only: it never goes through the logger.
        console.print(
            "\n[bold]Created user 'admin'.[/bold] Its generated password, shown only now:\n\n"
            f"    {generated}\n\n"
            "Set SPARKTRAINER_ADMIN_PASSWORD before the first start to choose it yourself.\n",
            highlight=False,
        )
    if not ctx.gpu_inventory.devices() and not ctx.gpu_inventory.virtual:
        err_console.print(f"[yellow]{NO_GPUS_HINT}[/yellow]", highlight=False)
    StreamEndingServer(server_config(settings, create_app(settings, ctx)), ctx).run()


def worker(data_dir: DataDirOption = None) -> None:
    """Run a node of a distributed deployment (SPARKTRAINER_EXECUTOR=celery): its GPUs, or
    a CPU node for jobs with gpu_count 0 on a machine without any."""

    from spark_trainer.observability.logging import configure_logging
    from spark_trainer.worker.node import WorkerNode

    settings = _settings(data_dir=data_dir)
    problem = settings.shared_services_problem()
    if settings.executor != "celery":
        problem = "sparktrainer worker runs in distributed mode: set SPARKTRAINER_EXECUTOR=celery"
    if problem is not None:
        err_console.print(f"[red]Invalid configuration:[/red] {problem}", highlight=False)
        raise typer.Exit(2)
    configure_logging(settings.log_level, settings.log_format)
    WorkerNode(settings).run()


def server_config(settings: Settings, app: Any) -> uvicorn.Config:
    """How uvicorn serves the API (``serve`` and the tests that need a real server)."""
    import uvicorn

    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=settings.graceful_shutdown_seconds,
        # uvicorn believes X-Forwarded-For from 127.0.0.1 unless told otherwise, and jobs
        # run on this machine: a job could pose as any client (and dodge the login
        # limiter). Forwarded headers count only from the proxies configured.
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=list(settings.trusted_proxies) or [],
        # The sans-I/O protocol writes each frame straight to the socket; the default
        # one awaits a drain per message, which dominated fan-out to many subscribers.
        ws="websockets-sansio",
    )


def _context(data_dir: Path | None) -> AppContext:
    ctx = AppContext.build(_settings(data_dir=data_dir))
    generated = prepare(ctx)
    if generated is not None:
        console.print(f"Created user 'admin' with generated password: {generated}", highlight=False)
    return ctx


def _fail(exc: SparkTrainerError) -> typer.Exit:
    err_console.print(f"[red]{exc.message}[/red]")
    return typer.Exit(1)


@users_app.command("create")
def users_create(
    username: str,
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True)],
    role: Annotated[Role, typer.Option()] = Role.USER,
    tier: Annotated[Tier, typer.Option()] = Tier.STANDARD,
    data_dir: DataDirOption = None,
) -> None:
    """Create a user."""
    try:
        data = UserCreate(username=username, password=password, role=role, tier=tier)
    except ValidationError as exc:
        err_console.print(f"[red]{exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}[/red]")
        raise typer.Exit(2) from None
    ctx = _context(data_dir)
    try:
        with ctx.session_factory.begin() as session:
            user = identity.create_user(session, data)
            console.print(f"Created {user.role} '{user.username}' ({user.id}), tier {user.tier}")
    except SparkTrainerError as exc:
        raise _fail(exc) from None


@users_app.command("list")
def users_list(data_dir: DataDirOption = None) -> None:
    """List users."""
    ctx = _context(data_dir)
    table = Table("id", "username", "role", "tier", "active", "created")
    with ctx.session_factory() as session:
        offset = 0
        while True:
            users, total = identity.list_users(session, limit=200, offset=offset)
            for u in users:
                table.add_row(
                    u.id,
                    u.username,
                    u.role,
                    u.tier,
                    "yes" if u.is_active else "no",
                    u.created_at.strftime("%Y-%m-%d %H:%M"),
                )
            offset += len(users)
            if not users or offset >= total:
                break
    console.print(table)


def _update(username: str, data: UserUpdate, data_dir: Path | None, done: str) -> None:
    ctx = _context(data_dir)
    try:
        with ctx.session_factory.begin() as session:
            identity.update_user(session, username, data, actor=None)
    except SparkTrainerError as exc:
        raise _fail(exc) from None
    console.print(done)


@users_app.command("set-tier")
def users_set_tier(username: str, tier: Tier, data_dir: DataDirOption = None) -> None:
    """Change a user's rate-limit tier (standard or premium)."""
    _update(username, UserUpdate(tier=tier), data_dir, f"'{username}' is now {tier}")


@users_app.command("set-role")
def users_set_role(username: str, role: Role, data_dir: DataDirOption = None) -> None:
    """Change a user's role (admin or user)."""
    _update(username, UserUpdate(role=role), data_dir, f"'{username}' is now {role}")


@users_app.command("disable")
def users_disable(username: str, data_dir: DataDirOption = None) -> None:
    """Disable a user: their tokens and API keys stop working at once."""
    _update(username, UserUpdate(is_active=False), data_dir, f"'{username}' is disabled")


@users_app.command("enable")
def users_enable(username: str, data_dir: DataDirOption = None) -> None:
    """Enable a disabled user again."""
    _update(username, UserUpdate(is_active=True), data_dir, f"'{username}' is enabled")


def register(root: typer.Typer) -> None:
    """Adds the server commands to the ``sparktrainer`` command line."""
    root.command()(serve)
    root.command()(worker)
    root.add_typer(users_app, name="users")


def main() -> None:
    # ``python -m spark_trainer``: the same command line, with these commands for sure
    # (an entry point may not be installed yet in a fresh source checkout).
    from sparktrainer.cli import main as sparktrainer_main

    sparktrainer_main([register])
