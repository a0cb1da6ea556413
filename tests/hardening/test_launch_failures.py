"""Item 2: any failure to launch fails the job with its reason and frees its GPUs.

The audit's command with a NUL byte made ``Popen`` raise ``ValueError`` (only
``LaunchError`` was caught): the job stayed ``running`` holding 4 GPUs forever, a cancel
answered 200 and changed nothing. A NUL can no longer arrive over the API (a 400, see
test_text_and_types), so these tests put the failure where the API cannot stop it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from spark_trainer.context import AppContext
from spark_trainer.models import Job
from tests.conftest import Account
from tests.jobs.helpers import blocker, submit, wait_for


def _assert_launch_failed_and_gpus_free(
    client: TestClient, account: Account, job_id: str, reason: str
) -> None:
    job = wait_for(client, account.headers, job_id, {"completed", "failed", "cancelled"})
    assert job["status"] == "failed", job
    assert job["status_reason"].startswith("launch failed: "), job
    assert reason in job["status_reason"], job
    gpus = client.get("/api/gpus", headers=account.headers).json()
    assert not any(gpu["in_use"] for gpu in gpus), gpus
    # Cancelling an ended job is a conflict, not a 200 that changes nothing.
    assert client.post(f"/api/jobs/{job_id}/cancel", headers=account.headers).status_code == 409
    # The 4 GPUs really are free: a job needing all of them runs.
    after = submit(client, account.headers, command="true", gpu_count=4)
    assert wait_for(client, account.headers, after["id"], {"completed", "failed"})["status"] == (
        "completed"
    )


def test_a_working_dir_gone_before_start_fails_the_job(
    client: TestClient, alice: Account, tmp_path: Path
) -> None:
    release, workdir = tmp_path / "go", tmp_path / "project"
    workdir.mkdir()
    first = submit(client, alice.headers, command=blocker(release), gpu_count=4)
    wait_for(client, alice.headers, first["id"], {"running"})
    queued = submit(client, alice.headers, command="true", gpu_count=4, working_dir=str(workdir))
    shutil.rmtree(workdir)
    release.touch()
    _assert_launch_failed_and_gpus_free(client, alice, queued["id"], "project")


# SQLite only: PostgreSQL cannot store a NUL byte at all; SQLite could, and did.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_nul_in_the_stored_command_fails_the_job(
    client: TestClient, ctx: AppContext, alice: Account, tmp_path: Path
) -> None:
    release = tmp_path / "go"
    first = submit(client, alice.headers, command=blocker(release), gpu_count=4)
    wait_for(client, alice.headers, first["id"], {"running"})
    queued = submit(client, alice.headers, command="echo a", gpu_count=4)
    with ctx.session_factory.begin() as session:
        session.execute(update(Job).where(Job.id == queued["id"]).values(command="echo a\0b"))
    release.touch()
    _assert_launch_failed_and_gpus_free(client, alice, queued["id"], "null byte")
