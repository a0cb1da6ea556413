"""The ``sparktrainer`` command.

Client commands (``login``, ``jobs``, ``datasets``, ``models``) live here, on the SDK.
Server commands (``serve``, ``users``, ...) come from the server distribution through the
``sparktrainer.commands`` entry-point group, so one command serves both and only this
distribution declares the ``sparktrainer`` console script. The entry point's name is the
command's: a plugin is imported only when its command (or ``--help``) is asked for, so
``sparktrainer jobs list`` never loads the server.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from enum import StrEnum
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.live import Live
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TransferSpeedColumn,
)
from rich.table import Table

from sparktrainer._sync.client import SparkTrainerClient
from sparktrainer.errors import SparkTrainerError

PLUGIN_GROUP = "sparktrainer.commands"
DEFAULT_URL = "http://localhost:5001"

app = typer.Typer(
    help="SparkTrainer: queue, run and track GPU training jobs on your own machines.",
    no_args_is_help=True,
    add_completion=False,
)
jobs_app = typer.Typer(help="Submit, inspect and follow jobs.", no_args_is_help=True)
datasets_app = typer.Typer(help="Upload, list and download datasets.", no_args_is_help=True)
models_app = typer.Typer(help="List and tag registered models.", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")
app.add_typer(datasets_app, name="datasets")
app.add_typer(models_app, name="models")
hpo_app = typer.Typer(help="Create, inspect and cancel HPO studies.", no_args_is_help=True)
app.add_typer(hpo_app, name="hpo")

console = Console()
err_console = Console(stderr=True)


class Output(StrEnum):
    table = "table"
    json = "json"


OutputOption = Annotated[
    Output, typer.Option("--output", "-o", help="table for people, json for scripts")
]


# --- configuration -------------------------------------------------------------------


def config_path() -> Path:
    """``$SPARKTRAINER_CONFIG``, else ``$XDG_CONFIG_HOME/sparktrainer/config.json``."""
    explicit = os.environ.get("SPARKTRAINER_CONFIG")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "sparktrainer" / "config.json"


def load_config() -> dict[str, str]:
    path = config_path()
    if not path.exists():
        return {}
    data: dict[str, str] = json.loads(path.read_text(encoding="utf-8"))
    return data


def save_config(values: dict[str, str]) -> Path:
    path = config_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Created 0600 from the start: the API key is never readable by others, not even
    # between creating the file and changing its mode.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        os.fchmod(handle.fileno(), 0o600)
        json.dump(values, handle, indent=2)
    return path


def client() -> SparkTrainerClient:
    config = load_config()
    url = os.environ.get("SPARKTRAINER_URL") or config.get("url")
    key = os.environ.get("SPARKTRAINER_API_KEY") or config.get("api_key")
    if not url or not key:
        err_console.print("Not logged in: run [bold]sparktrainer login[/bold] first.")
        raise typer.Exit(2)
    return SparkTrainerClient(base_url=url, api_key=key)


# --- output --------------------------------------------------------------------------


def emit(value: BaseModel | Sequence[BaseModel] | dict[str, Any], output: Output) -> None:
    if output is Output.json:
        if isinstance(value, BaseModel):
            print(value.model_dump_json(indent=2))
        elif isinstance(value, dict):
            print(json.dumps(value, indent=2))
        else:
            print(json.dumps([v.model_dump(mode="json") for v in value], indent=2))
        return
    data = value.model_dump(mode="json") if isinstance(value, BaseModel) else value
    if isinstance(data, dict):
        table = Table("field", "value", show_header=False)
        for key, item in data.items():
            text = item if isinstance(item, str) else json.dumps(item)
            table.add_row(key, text)
        console.print(table)


def table(rows: Iterable[BaseModel], columns: Sequence[str], output: Output) -> None:
    items = list(rows)
    if output is Output.json:
        print(json.dumps([item.model_dump(mode="json") for item in items], indent=2))
        return
    view = Table(*columns)
    for item in items:
        data = item.model_dump(mode="json")
        view.add_row(*("" if data.get(c) is None else str(data.get(c)) for c in columns))
    console.print(view)


def failing(function: Callable[..., None]) -> Callable[..., None]:
    """API errors become one red line and exit status 1, not a traceback."""
    import functools

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            function(*args, **kwargs)
        except SparkTrainerError as exc:
            err_console.print(f"[red]{exc}[/red]")
            raise typer.Exit(1) from None

    return wrapper


# --- login ---------------------------------------------------------------------------


@app.command()
@failing
def login(
    url: Annotated[str, typer.Option(help="The server", envvar="SPARKTRAINER_URL")] = DEFAULT_URL,
    username: Annotated[str | None, typer.Option(help="Log in with a password")] = None,
    password: Annotated[str | None, typer.Option(help="Prompted for when not given")] = None,
    api_key: Annotated[str | None, typer.Option(help="Use this API key instead")] = None,
) -> None:
    """Log in and keep an API key in your config file (mode 0600)."""
    if api_key is None:
        if username is None:
            username = typer.prompt("Username")
        if password is None:
            password = typer.prompt("Password", hide_input=True)
        with SparkTrainerClient(base_url=url, username=username, password=password) as session:
            created = session.api_keys.create(f"sparktrainer-cli@{socket.gethostname()}"[:100])
            session.logout()
        api_key = created.key
    with SparkTrainerClient(base_url=url, api_key=api_key) as checked:
        me = checked.users.me()
    path = save_config({"url": url, "api_key": api_key})
    console.print(f"Logged in to {url} as [bold]{me.username}[/bold] (credentials in {path})")


# --- jobs ----------------------------------------------------------------------------


def _environment(pairs: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise typer.BadParameter(f"{pair!r}: expected KEY=VALUE", param_hint="--env")
        env[key] = value
    return env


@jobs_app.command("submit")
@failing
def jobs_submit(
    command: Annotated[str, typer.Argument(help="Shell command to run")],
    name: Annotated[str | None, typer.Option(help="Default: the command's first word")] = None,
    gpus: Annotated[int, typer.Option("--gpus", help="Whole GPUs the job needs")] = 1,
    priority: Annotated[int | None, typer.Option()] = None,
    env: Annotated[list[str] | None, typer.Option("--env", "-e", help="KEY=VALUE")] = None,
    experiment: Annotated[str | None, typer.Option(help="Experiment id")] = None,
    dataset: Annotated[str | None, typer.Option(help="Dataset id")] = None,
    working_dir: Annotated[
        str | None,
        typer.Option(
            help="Absolute directory, on the machine that runs the job, the command starts "
            "in; default: a fresh directory of the job's own"
        ),
    ] = None,
    output: OutputOption = Output.table,
) -> None:
    """Submit a job."""
    job = client().jobs.create(
        name=name or (Path(command.split()[0]).name if command.split() else "job"),
        command=command,
        gpu_count=gpus,
        priority=priority,
        environment=_environment(env or []) or None,
        experiment_id=experiment,
        dataset_id=dataset,
        working_dir=working_dir,
    )
    if output is Output.json:
        emit(job, output)
    else:
        console.print(f"Submitted [bold]{job.id}[/bold] ({job.name}, {job.gpu_count} GPUs)")


@jobs_app.command("list")
@failing
def jobs_list(
    status: Annotated[str | None, typer.Option(help="pending, running, completed, ...")] = None,
    limit: Annotated[int, typer.Option()] = 20,
    output: OutputOption = Output.table,
) -> None:
    """List your jobs, newest first."""
    page = client().jobs.list(status=status, limit=limit)
    table(page.items, ["id", "name", "status", "gpu_count", "created_at"], output)


@jobs_app.command("get")
@failing
def jobs_get(job_id: str, output: OutputOption = Output.table) -> None:
    """Show a job."""
    emit(client().jobs.get(job_id), output)


@jobs_app.command("cancel")
@failing
def jobs_cancel(job_id: str, output: OutputOption = Output.table) -> None:
    """Cancel a job."""
    job = client().jobs.cancel(job_id)
    if output is Output.json:
        emit(job, output)
    else:
        console.print(f"{job.id} is {job.status}")


@jobs_app.command("logs")
@failing
def jobs_logs(
    job_id: str,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Until the job ends")] = False,
    stderr: Annotated[bool, typer.Option("--stderr", help="stderr instead of stdout")] = False,
    tail: Annotated[int | None, typer.Option(help="Only the last N lines")] = None,
) -> None:
    """Print a job's output."""
    stream = "stderr" if stderr else "stdout"
    api = client()
    if not follow:
        sys.stdout.write(api.jobs.logs(job_id, stream=stream, tail=tail))
        return
    for text in api.jobs.follow_logs(job_id, stream=stream):
        sys.stdout.write(text)
        sys.stdout.flush()


@jobs_app.command("watch")
@failing
def jobs_watch(job_id: str, output: OutputOption = Output.table) -> None:
    """Live metrics of a job, until it ends."""
    stream = client().jobs.stream_metrics(job_id)
    if output is Output.json:
        for point in stream:
            print(json.dumps(point.to_dict()), flush=True)
        if stream.end is not None:
            print(json.dumps({"event": "end", **stream.end.__dict__}), flush=True)
        return
    latest: dict[str, float] = {}
    step = 0
    started = time.monotonic()

    def render() -> Table:
        view = Table(title=f"{job_id}  step {step}  ({time.monotonic() - started:.0f} s)")
        view.add_column("metric")
        view.add_column("latest", justify="right")
        for name, value in sorted(latest.items()):
            view.add_row(name, f"{value:.6g}")
        return view

    with Live(render(), console=console, refresh_per_second=4) as live:
        for point in stream:
            step = point.step
            latest.update(point.values)
            live.update(render())
    if stream.end is not None:
        console.print(f"Job ended: {stream.end.status} (exit code {stream.end.exit_code})")


# --- datasets and models ---------------------------------------------------------------


def _progress() -> Progress:
    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=err_console,
    )


@datasets_app.command("upload")
@failing
def datasets_upload(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    name: Annotated[str | None, typer.Option(help="Default: the file's stem")] = None,
    output: OutputOption = Output.table,
) -> None:
    """Upload a file as a dataset, or as the next version of one."""
    with _progress() as bar:
        task = bar.add_task(f"uploading {path.name}", total=path.stat().st_size)
        dataset = client().datasets.upload(
            path, name=name, progress=lambda done, _: bar.update(task, completed=done)
        )
    if output is Output.json:
        emit(dataset, output)
    else:
        version = dataset.latest_version
        console.print(f"[bold]{dataset.id}[/bold] {dataset.name} {version.version} {version.hash}")


@datasets_app.command("list")
@failing
def datasets_list(
    name: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option()] = 20,
    output: OutputOption = Output.table,
) -> None:
    """List your datasets."""
    page = client().datasets.list(name=name, limit=limit)
    table(page.items, ["id", "name", "version_count", "created_at"], output)


@datasets_app.command("download")
@failing
def datasets_download(
    dataset_id: str,
    version: Annotated[str, typer.Option(help='"latest" or e.g. v1.1.0')] = "latest",
    to: Annotated[Path | None, typer.Option("--to", help="Default: the uploaded file name")] = None,
) -> None:
    """Download a dataset version (an interrupted download resumes when run again)."""
    api = client()
    if to is None:
        found = next(
            (
                v
                for v in api.datasets.versions(dataset_id).versions
                if version in {v.version, "latest"}
            ),
            None,
        )
        to = Path(Path(found.filename).name if found and found.filename else f"{dataset_id}.data")
    with _progress() as bar:
        task = bar.add_task(f"downloading {to.name}", total=None)
        api.datasets.download(
            dataset_id,
            to,
            version=version,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    err_console.print(f"saved {to}")


@models_app.command("list")
@failing
def models_list(
    name: Annotated[str | None, typer.Option()] = None,
    tag: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option()] = 20,
    output: OutputOption = Output.table,
) -> None:
    """List registered model versions."""
    page = client().models.list(name=name, tag=tag, limit=limit)
    table(page.items, ["id", "name", "version", "tags", "total_size", "created_at"], output)


@models_app.command("tag")
@failing
def models_tag(model_id: str, tag: str, output: OutputOption = Output.table) -> None:
    """Tag a model version (the tag moves off any other version of that name)."""
    model = client().models.tag(model_id, tag)
    if output is Output.json:
        emit(model, output)
    else:
        console.print(f"{model.name} v{model.version} is tagged {', '.join(model.tags)}")


# --- hpo ---------------------------------------------------------------------------


@hpo_app.command("create")
@failing
def hpo_create(
    spec: Annotated[
        Path, typer.Argument(help="JSON file with the study's body (POST /api/hpo/studies)")
    ],
    output: OutputOption = Output.table,
) -> None:
    """Create a study from a JSON body: name, search_space, n_trials, command, ..."""
    body = json.loads(spec.read_text(encoding="utf-8"))
    if not isinstance(body, dict):
        err_console.print(f"[red]{spec} does not hold a JSON object[/red]")
        raise typer.Exit(2)
    study = client().hpo.create(**body)
    if output is Output.json:
        emit(study, output)
    else:
        console.print(
            f"Created [bold]{study.id}[/bold] ({study.name}, {study.n_trials_requested} trials)"
        )


@hpo_app.command("list")
@failing
def hpo_list(
    limit: Annotated[int, typer.Option()] = 20, output: OutputOption = Output.table
) -> None:
    """List your studies, newest first."""
    page = client().hpo.list(limit=limit)
    table(page.items, ["id", "name", "status", "n_trials", "best_value", "created_at"], output)


@hpo_app.command("get")
@failing
def hpo_get(study_id: str, output: OutputOption = Output.table) -> None:
    """Show a study with its trials."""
    emit(client().hpo.get(study_id), output)


@hpo_app.command("cancel")
@failing
def hpo_cancel(study_id: str, output: OutputOption = Output.table) -> None:
    """Cancel a study: its pending trials at once, its running ones stopped."""
    study = client().hpo.cancel(study_id)
    if output is Output.json:
        emit(study, output)
    else:
        console.print(f"{study.id} is {study.status}")


# --- entry point -----------------------------------------------------------------------

Registrar = Callable[[typer.Typer], None]


def _plugins(argv: Sequence[str]) -> list[Registrar]:
    """The server's (or other plugins') commands needed for this command line."""
    wanted = next((a for a in argv if not a.startswith("-")), None)
    registrars: list[Registrar] = []
    for point in entry_points(group=PLUGIN_GROUP):
        if wanted is None or point.name == wanted:
            registrar = point.load()
            if registrar not in registrars:
                registrars.append(registrar)
    return registrars


def main(registrars: Sequence[Registrar] | None = None) -> None:
    """Runs the command line; ``registrars`` add commands (default: the entry points)."""
    for register in registrars if registrars is not None else _plugins(sys.argv[1:]):
        register(app)
    app()
