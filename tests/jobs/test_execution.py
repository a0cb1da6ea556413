"""Jobs run for real: processes, exit codes, logs, environment and GPU allocation."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import Account
from tests.jobs.helpers import FINAL, PY, blocker, get, logs, submit, wait_for, wait_until


def test_submit_answers_the_spec_shape(client: TestClient, alice: Account) -> None:
    job = submit(
        client,
        alice.headers,
        name="llama-finetuning",
        command="true",
        gpu_count=4,
        priority=10,
        environment={"CUDA_VISIBLE_DEVICES": "0,1,2,3"},
    )
    assert job["id"].startswith("job-")
    assert job["name"] == "llama-finetuning"
    assert job["status"] == "pending"
    assert job["gpu_count"] == 4
    assert job["priority"] == 10
    assert job["created_at"].endswith("Z")
    done = wait_for(client, alice.headers, job["id"], FINAL)
    assert done["status"] == "completed"
    assert [(e["from_status"], e["to_status"]) for e in done["events"]] == [
        ("pending", "running"),
        ("running", "completed"),
    ]


def test_stdout_stderr_and_exit_codes(client: TestClient, alice: Account) -> None:
    ok = submit(client, alice.headers, command="echo to-out; echo to-err >&2; exit 0")
    failed = submit(client, alice.headers, command="echo oops >&2; exit 1")
    killed = submit(client, alice.headers, command="exit 137")
    signalled = submit(client, alice.headers, command="kill -9 $$")

    ok_done = wait_for(client, alice.headers, ok["id"], FINAL)
    assert (ok_done["status"], ok_done["exit_code"], ok_done["status_reason"]) == (
        "completed",
        0,
        None,
    )
    assert logs(client, alice.headers, ok["id"]) == "to-out\n"
    assert logs(client, alice.headers, ok["id"], "stderr") == "to-err\n"
    assert ok_done["started_at"] <= ok_done["finished_at"]

    failed_done = wait_for(client, alice.headers, failed["id"], FINAL)
    assert failed_done["status"] == "failed"
    assert failed_done["exit_code"] == 1
    assert failed_done["status_reason"] == "exited with code 1"
    assert logs(client, alice.headers, failed["id"], "stderr") == "oops\n"

    killed_done = wait_for(client, alice.headers, killed["id"], FINAL)
    assert (killed_done["status"], killed_done["exit_code"]) == ("failed", 137)

    signalled_done = wait_for(client, alice.headers, signalled["id"], FINAL)
    assert signalled_done["status"] == "failed"
    assert signalled_done["exit_code"] == 137
    assert signalled_done["status_reason"] == "killed by signal 9 (SIGKILL)"


def test_environment_gpus_and_output_dir(
    client: TestClient, alice: Account, tmp_path: Path
) -> None:
    os.environ["SPARKTRAINER_SECRET_PROBE"] = "must-not-leak"
    try:
        job = submit(
            client,
            alice.headers,
            gpu_count=2,
            environment={"MY_SETTING": "42", "CUDA_VISIBLE_DEVICES": "7"},
            command=(
                "echo $CUDA_VISIBLE_DEVICES; echo $MY_SETTING; echo $SPARKTRAINER_JOB_ID; "
                'echo "probe=$SPARKTRAINER_SECRET_PROBE"; pwd; '
                'echo model > "$SPARKTRAINER_OUTPUT_DIR/weights.bin"'
            ),
        )
        done = wait_for(client, alice.headers, job["id"], FINAL)
    finally:
        del os.environ["SPARKTRAINER_SECRET_PROBE"]
    assert done["status"] == "completed"
    assert len(done["gpus"]) == 2
    visible, setting, job_id, probe, cwd = logs(client, alice.headers, job["id"]).splitlines()
    assert visible == ",".join(str(g) for g in done["gpus"])
    assert setting == "42"
    assert job_id == job["id"]
    assert probe == "probe="
    job_dir = Path(cwd).parent
    assert (job_dir / "output" / "weights.bin").read_text() == "model\n"
    assert (job_dir / "stdout.log").exists()


def test_working_dir(client: TestClient, alice: Account, tmp_path: Path) -> None:
    job = submit(client, alice.headers, command="pwd", working_dir=str(tmp_path))
    wait_for(client, alice.headers, job["id"], FINAL)
    assert logs(client, alice.headers, job["id"]).strip() == str(tmp_path)

    missing = client.post(
        "/api/jobs",
        json={"name": "x", "command": "pwd", "working_dir": str(tmp_path / "nope")},
        headers=alice.headers,
    )
    assert missing.status_code == 400
    relative = client.post(
        "/api/jobs",
        json={"name": "x", "command": "pwd", "working_dir": "relative/dir"},
        headers=alice.headers,
    )
    assert relative.status_code == 400
    assert "working_dir" in relative.json()["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "command": "true", "gpu_count": 5}, "largest node"),
        ({"name": "x", "command": "true", "gpu_count": -1}, "gpu_count"),
        ({"name": "x"}, "command"),
        ({"name": "", "command": "true"}, "name"),
        ({"name": "x", "command": "true", "environment": {"BAD-NAME": "1"}}, "environment"),
        ({"name": "x", "command": "true", "timeout_seconds": 0}, "timeout_seconds"),
    ],
)
def test_bad_submissions_are_400_and_create_nothing(
    client: TestClient, alice: Account, body: dict[str, object], field: str
) -> None:
    response = client.post("/api/jobs", json=body, headers=alice.headers)
    assert response.status_code == 400
    assert field in response.json()["message"]
    assert client.get("/api/jobs", headers=alice.headers).json()["total"] == 0


def test_list_filters_and_pages(client: TestClient, alice: Account, tmp_path: Path) -> None:
    release = tmp_path / "go"
    running = submit(client, alice.headers, command=blocker(release), gpu_count=4)
    wait_for(client, alice.headers, running["id"], {"running"})
    queued = [submit(client, alice.headers, command="true", name=f"q{i}") for i in range(3)]

    page = client.get(
        "/api/jobs", params={"status": "pending", "limit": 2}, headers=alice.headers
    ).json()
    assert page["total"] == 3
    assert [j["id"] for j in page["items"]] == [queued[2]["id"], queued[1]["id"]]
    rest = client.get(
        "/api/jobs", params={"status": "pending", "limit": 2, "offset": 2}, headers=alice.headers
    ).json()
    assert [j["id"] for j in rest["items"]] == [queued[0]["id"]]
    running_page = client.get("/api/jobs", params={"status": "running"}, headers=alice.headers)
    assert [j["id"] for j in running_page.json()["items"]] == [running["id"]]
    assert (
        client.get("/api/jobs", params={"status": "bogus"}, headers=alice.headers).status_code
        == 400
    )
    release.touch()
    for job in queued:
        wait_for(client, alice.headers, job["id"], FINAL)


def test_log_tail_offset_and_follow(client: TestClient, alice: Account, tmp_path: Path) -> None:
    release = tmp_path / "go"
    command = blocker(release, before="for i in 1 2 3 4 5; do echo line$i; done") + "; echo last"
    job = submit(client, alice.headers, command=command)
    wait_for(client, alice.headers, job["id"], {"running"})

    def tail_ready() -> bool:
        return logs(client, alice.headers, job["id"]).count("\n") == 5

    wait_until(tail_ready, what="five lines of output")
    tail = client.get(f"/api/jobs/{job['id']}/logs", params={"tail": 2}, headers=alice.headers)
    assert tail.text == "line4\nline5\n"
    assert tail.headers["X-Log-Offset"] == str(len("line1\nline2\nline3\n"))
    part = client.get(f"/api/jobs/{job['id']}/logs", params={"offset": 6}, headers=alice.headers)
    assert part.text.startswith("line2\n")
    assert part.headers["X-Log-Next-Offset"] == str(6 * 5)

    with client.stream(
        "GET", f"/api/jobs/{job['id']}/logs", params={"follow": "true"}, headers=alice.headers
    ) as followed:
        release.touch()
        text = b"".join(followed.iter_bytes()).decode()
    assert text == "line1\nline2\nline3\nline4\nline5\nlast\n"
    assert get(client, alice.headers, job["id"])["status"] == "completed"


def test_python_job_uses_the_sdk_helper(client: TestClient, alice: Account) -> None:
    script = (
        "import sparktrainer\n"
        "for i in range(3):\n"
        "    sparktrainer.log({'loss': 1.0 / (i + 1), 'lr': 0.001}, step=i * 10)\n"
    )
    job = submit(client, alice.headers, command=f"{PY} -c {shlex.quote(script)}")
    done = wait_for(client, alice.headers, job["id"], FINAL)
    assert done["status"] == "completed", logs(client, alice.headers, job["id"], "stderr")
    history = client.get(f"/api/jobs/{job['id']}/metrics", headers=alice.headers).json()
    series = {s["name"]: s for s in history["metrics"]}
    assert series["loss"]["steps"] == [0, 10, 20]
    assert series["loss"]["values"] == pytest.approx([1.0, 0.5, 1 / 3])
    assert series["lr"]["values"] == [0.001] * 3
