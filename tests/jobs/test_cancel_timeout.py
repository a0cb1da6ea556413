"""Cancel and timeout reach the whole process tree, and free the GPUs."""

from __future__ import annotations

import os
from pathlib import Path

import psutil
from fastapi.testclient import TestClient

from tests.conftest import Account
from tests.jobs.helpers import FINAL, blocker, get, submit, wait_for, wait_until


def _group_of(pid_file: Path) -> list[psutil.Process]:
    wait_until(lambda: pid_file.exists() and pid_file.read_text().strip() != "", what="pid file")
    pgid = os.getpgid(int(pid_file.read_text()))
    return [p for p in psutil.process_iter() if _pgid(p) == pgid]


def _pgid(process: psutil.Process) -> int | None:
    try:
        return os.getpgid(process.pid)
    except (ProcessLookupError, psutil.Error):
        return None


def _all_gone(processes: list[psutil.Process]) -> bool:
    return not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in processes)


def test_cancel_pending_job_is_immediate(
    client: TestClient, alice: Account, tmp_path: Path
) -> None:
    release = tmp_path / "go"
    hog = submit(client, alice.headers, command=blocker(release), gpu_count=4)
    wait_for(client, alice.headers, hog["id"], {"running"})
    queued = submit(client, alice.headers, command="touch should-not-run")
    response = client.post(f"/api/jobs/{queued['id']}/cancel", headers=alice.headers)
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert response.json()["status_reason"] == "cancelled by user"
    release.touch()
    wait_for(client, alice.headers, hog["id"], FINAL)
    assert get(client, alice.headers, queued["id"])["started_at"] is None


def test_cancel_running_job_kills_its_whole_process_tree(
    client: TestClient, alice: Account, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    job = submit(
        client,
        alice.headers,
        gpu_count=2,
        command=f"sleep 300 & sleep 300 & echo $$ > {pid_file}; wait",
    )
    wait_for(client, alice.headers, job["id"], {"running"})
    group = _group_of(pid_file)
    assert len(group) >= 4  # the shim, the shell, two sleeps

    response = client.post(f"/api/jobs/{job['id']}/cancel", headers=alice.headers)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "cancelled"
    assert body["status_reason"] == "cancelled by user"
    assert body["finished_at"] is not None
    wait_until(lambda: _all_gone(group), what="the job's processes to exit")

    # Its GPUs are free again: a job needing all four starts.
    after = submit(client, alice.headers, command="true", gpu_count=4)
    assert wait_for(client, alice.headers, after["id"], FINAL)["status"] == "completed"

    again = client.post(f"/api/jobs/{job['id']}/cancel", headers=alice.headers)
    assert again.status_code == 409
    assert again.json()["error"] == "Conflict"


def test_job_ignoring_sigterm_is_killed_after_the_grace_period(
    client: TestClient, alice: Account, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    job = submit(
        client,
        alice.headers,
        command=f"trap '' TERM; echo $$ > {pid_file}; while true; do sleep 0.1; done",
    )
    wait_for(client, alice.headers, job["id"], {"running"})
    group = _group_of(pid_file)
    response = client.post(f"/api/jobs/{job['id']}/cancel", headers=alice.headers)
    # The settings' grace is 2 s; the cancel call waits up to 5 s for the exit.
    assert response.json()["status"] == "cancelled"
    wait_until(lambda: _all_gone(group), what="SIGKILL")


def test_job_that_traps_sigterm_can_finish_cleanly(
    client: TestClient, alice: Account, tmp_path: Path
) -> None:
    job = submit(
        client,
        alice.headers,
        command=(
            "trap 'echo saving checkpoint; exit 0' TERM; echo ready; "
            "while true; do sleep 0.05; done"
        ),
    )
    wait_for(client, alice.headers, job["id"], {"running"})
    wait_until(
        lambda: client.get(f"/api/jobs/{job['id']}/logs", headers=alice.headers).text == "ready\n",
        what="the trap to be installed",
    )
    done = client.post(f"/api/jobs/{job['id']}/cancel", headers=alice.headers).json()
    assert done["status"] == "cancelled"
    assert done["exit_code"] == 0
    log = client.get(f"/api/jobs/{job['id']}/logs", headers=alice.headers).text
    assert log == "ready\nsaving checkpoint\n"


def test_timeout_fails_the_job_and_kills_it(
    client: TestClient, alice: Account, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    job = submit(
        client,
        alice.headers,
        command=f"echo $$ > {pid_file}; sleep 300",
        timeout_seconds=1,
    )
    group = _group_of(pid_file)
    done = wait_for(client, alice.headers, job["id"], FINAL)
    assert done["status"] == "failed"
    assert done["status_reason"] == "timed out after 1 s"
    assert done["exit_code"] == 128 + 15
    wait_until(lambda: _all_gone(group), what="the timed-out job to exit")
