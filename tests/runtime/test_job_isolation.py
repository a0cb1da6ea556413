"""A job cannot become the server: as root, jobs run as an unprivileged user that cannot
read the secret key or the database, and see only the allowlisted environment."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from spark_trainer.app import create_app
from spark_trainer.context import AppContext
from spark_trainer.identity import tokens
from spark_trainer.kit.ids import IdPrefix, new_id
from spark_trainer.kit.time import utcnow
from spark_trainer.models import User
from spark_trainer.runtime.environment import JobUser, JobUserError
from spark_trainer.settings import DEFAULT_JOB_ENV_ALLOWLIST, Settings
from tests.conftest import PASSWORD, Account
from tests.jobs.helpers import FINAL, logs, submit, wait_for

PLATFORM = {
    "SPARKTRAINER_JOB_ID",
    "SPARKTRAINER_OUTPUT_DIR",
    "SPARKTRAINER_METRICS_FILE",
    "SPARKTRAINER_API_URL",
    "SPARKTRAINER_JOB_TOKEN",
    "SPARKTRAINER_REASON_FILE",
    "CUDA_DEVICE_ORDER",
    "CUDA_VISIBLE_DEVICES",
    "PYTHONUNBUFFERED",
    "HOME",
}
# What /bin/sh itself adds to the environment it passes on.
SHELL_OWN = {"PWD", "SHLVL", "OLDPWD", "_"}

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs a root server")


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Outside pytest's 0700 tmp tree, which no other user could enter at all.
    parent = Path(tempfile.mkdtemp(prefix="sparktrainer-isolation-"))
    parent.chmod(0o755)
    yield parent / "data"
    shutil.rmtree(parent, ignore_errors=True)


def _account(ctx: AppContext, password_hash: str) -> Account:
    user = User(id=new_id(IdPrefix.USER), username="isolated", password_hash=password_hash)
    with ctx.session_factory.begin() as session:
        session.add(user)
    token = tokens.encode_token(
        key=ctx.tokens.key,
        subject=user.id,
        token_type="access",
        now=utcnow(),
        ttl_seconds=ctx.tokens.access_ttl,
        jti="isolation",
    )
    return Account(user=user, password=PASSWORD, token=token)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_job_cannot_read_the_servers_secrets(
    settings_factory: Callable[..., Settings],
    password_hash: str,
    database_url: str,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data_dir.mkdir()
    # The embedded database in the data directory, as `sparktrainer serve` lays it out.
    shutil.copyfile(database_url.removeprefix("sqlite:///"), data_dir / "sparktrainer.db")
    monkeypatch.setenv("PGPASSWORD", "must-not-leak")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "must-not-leak")
    # The default job user: what `sparktrainer serve` as root does with no setting.
    settings = settings_factory(
        data_dir=data_dir, database_url=None, secret_key=None, job_user=None
    )
    settings.signing_key  # noqa: B018 - generated into the data directory now
    ctx = AppContext.build(settings)
    with TestClient(create_app(settings, ctx)) as client:
        owner = _account(ctx, password_hash)
        script = (
            'cat "$DATA/secret_key"; echo "secret: $?"; '
            'cat "$DATA/sparktrainer.db" > /dev/null; echo "database: $?"; '
            "id -un; python -c 'import sparktrainer'; echo \"sdk: $?\"; env"
        )
        job = submit(client, owner.headers, command=script, environment={"DATA": str(data_dir)})
        done = wait_for(client, owner.headers, job["id"], FINAL)
        out = logs(client, owner.headers, job["id"])
        err = logs(client, owner.headers, job["id"], "stderr")
    assert done["status"] == "completed", (done, err)
    assert "secret: 1" in out and "database: 1" in out, out
    assert err.count("Permission denied") == 2, err
    lines = out.splitlines()
    assert lines[2] == "nobody"
    # The job user's `python` imports the SDK, even where the server's own interpreter
    # (and source tree) lie in a home directory that user cannot enter.
    assert lines[3] == "sdk: 0", err
    seen = {line.split("=", 1)[0] for line in lines[4:] if "=" in line}
    allowed = set(DEFAULT_JOB_ENV_ALLOWLIST) | PLATFORM | SHELL_OWN | {"DATA"}
    assert seen <= allowed, seen - allowed
    assert "PGPASSWORD" not in seen and "AWS_SECRET_ACCESS_KEY" not in seen
    # The job's directory is the job user's; the server's files are not readable by it.
    job_dir = data_dir / "jobs" / job["id"]
    assert job_dir.stat().st_uid != 0
    assert stat.S_IMODE((data_dir / "secret_key").stat().st_mode) == 0o600
    assert stat.S_IMODE((data_dir / "sparktrainer.db").stat().st_mode) == 0o600


def test_an_admin_command_beside_the_server_leaves_jobs_their_directories(
    settings_factory: Callable[..., Settings], password_hash: str, data_dir: Path
) -> None:
    settings = settings_factory(data_dir=data_dir, secret_key=None, job_user=None)
    ctx = AppContext.build(settings)
    with TestClient(create_app(settings, ctx)) as client:
        owner = _account(ctx, password_hash)
        assert stat.S_IMODE(data_dir.stat().st_mode) == 0o711
        # `sparktrainer users ...` as an operator runs it on the server's machine, as root.
        env = {k: v for k, v in os.environ.items() if not k.startswith("SPARKTRAINER_")}
        env.update(
            SPARKTRAINER_DATA_DIR=str(data_dir),
            SPARKTRAINER_DATABASE_URL=settings.effective_database_url,
        )
        listed = subprocess.run(
            [sys.executable, "-m", "spark_trainer", "users", "list"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert listed.returncode == 0, listed.stderr
        # Passable, not listable: the job user reaches its own directory below it.
        assert stat.S_IMODE(data_dir.stat().st_mode) == 0o711
        job = submit(
            client,
            owner.headers,
            command='id -un; cat "$DATA/secret_key"; echo "secret: $?"',
            environment={"DATA": str(data_dir)},
        )
        done = wait_for(client, owner.headers, job["id"], FINAL)
        out = logs(client, owner.headers, job["id"])
    assert done["status"] == "completed", done
    assert out.splitlines() == ["nobody", "secret: 1"]
    assert stat.S_IMODE((data_dir / "secret_key").stat().st_mode) == 0o600


def test_a_working_dir_the_job_user_cannot_enter_fails_the_launch(
    settings_factory: Callable[..., Settings], password_hash: str, data_dir: Path
) -> None:
    # Root's own 0700 directory: the server can enter it, the job user cannot.
    private = data_dir.parent / "private"
    private.mkdir(mode=0o700)
    settings = settings_factory(data_dir=data_dir, job_user="nobody")
    ctx = AppContext.build(settings)
    with TestClient(create_app(settings, ctx)) as client:
        owner = _account(ctx, password_hash)
        job = submit(client, owner.headers, command="pwd", working_dir=str(private))
        done = wait_for(client, owner.headers, job["id"], FINAL)
        out = logs(client, owner.headers, job["id"])
    reason = (
        f"launch failed: user 'nobody' cannot enter the working directory {private}: "
        "Permission denied"
    )
    assert done["status"] == "failed", done
    assert done["status_reason"] == reason
    assert [event["reason"] for event in done["events"]][-1] == reason
    assert done["exit_code"] is None and out == ""


def test_an_unreachable_data_dir_is_named_with_its_fix(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    # pytest's tmp tree is 0700 root's: the job user cannot pass through it.
    data_dir = tmp_path / "data"
    jobs_dir = data_dir / "jobs"
    jobs_dir.mkdir(parents=True)
    configured = JobUser.from_settings(settings_factory(data_dir=data_dir, job_user="nobody"))
    with pytest.raises(JobUserError, match=r"cannot enter .*jobs\. Fix: put SPARKTRAINER_DATA_DIR"):
        configured.checked(data_dir, jobs_dir)
    # The default user gives way to the server's own rather than failing every job.
    default = JobUser.from_settings(settings_factory(data_dir=data_dir, job_user=None))
    assert default.switches
    assert not default.checked(data_dir, jobs_dir).switches


def test_a_missing_default_job_user_is_warned_of_once_per_start(
    settings_factory: Callable[..., Settings],
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A machine without `nobody`: jobs run as the server's user, said once, not once per
    # component that asks (the data directory's set-up and the engine).
    monkeypatch.setattr("spark_trainer.runtime.environment.DEFAULT_ROOT_JOB_USER", "no-such-user")
    settings = settings_factory(data_dir=data_dir, job_user=None)
    with caplog.at_level("WARNING", logger="spark_trainer.runtime.environment"):
        ctx = AppContext.build(settings)
        with TestClient(create_app(settings, ctx)) as client:
            assert client.get("/healthz").status_code == 200
    warned = [r for r in caplog.records if "no user 'no-such-user'" in r.getMessage()]
    assert len(warned) == 1, [r.getMessage() for r in warned]
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700  # no job user to pass through
