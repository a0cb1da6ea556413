"""The user CLI (`sparktrainer login`, `jobs`, `datasets`, `models`) as a real process."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from tests.sdk.conftest import LiveServer
from tests.sdk.test_client import logging_job

CLI = [sys.executable, "-c", "from sparktrainer.cli import main; main()"]


def run(config: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPARKTRAINER_")}
    env["SPARKTRAINER_CONFIG"] = str(config)
    env["COLUMNS"] = "200"
    result = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=120)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_login_jobs_datasets_models(live_server: LiveServer, tmp_path: Path) -> None:
    config = tmp_path / "conf" / "config.json"
    out = run(
        config, "login", "--url", live_server.url, "--username", "admin",
        "--password", live_server.admin_password,
    )  # fmt: skip
    assert "as admin" in out.stdout
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert json.loads(config.read_text())["api_key"].startswith("stk_")

    submit = ["jobs", "submit", logging_job(5), "--name", "cli", "--gpus", "1", "-o", "json"]
    submitted = json.loads(run(config, *submit).stdout)
    job_id = submitted["id"]
    watched = run(config, "jobs", "watch", job_id, "--output", "json").stdout.splitlines()
    assert [json.loads(line)["step"] for line in watched[:-1]] == [0, 1, 2, 3, 4]
    assert json.loads(watched[-1])["status"] == "completed"
    listed = json.loads(run(config, "jobs", "list", "--output", "json").stdout)
    assert job_id in [job["id"] for job in listed]
    assert json.loads(run(config, "jobs", "get", job_id, "-o", "json").stdout)["status"] == (
        "completed"
    )
    assert "job-" in run(config, "jobs", "list").stdout  # the table

    echo = json.loads(run(config, "jobs", "submit", "echo hello from the job", "-o", "json").stdout)
    assert run(config, "jobs", "logs", echo["id"], "-f").stdout == "hello from the job\n"
    cancelled = run(config, "jobs", "cancel", echo["id"], check=False)
    assert cancelled.returncode == 1 and "409" in cancelled.stderr  # it had ended

    pwd = ["jobs", "submit", "pwd", "--working-dir", str(tmp_path), "-o", "json"]
    in_dir = json.loads(run(config, *pwd).stdout)
    assert in_dir["working_dir"] == str(tmp_path)
    assert run(config, "jobs", "logs", in_dir["id"], "-f").stdout == f"{tmp_path}\n"

    data = tmp_path / "tiny.csv"
    data.write_text("a,b\n1,2\n")
    uploaded = json.loads(run(config, "datasets", "upload", str(data), "-o", "json").stdout)
    assert uploaded["name"] == "tiny"
    names = [d["name"] for d in json.loads(run(config, "datasets", "list", "-o", "json").stdout)]
    assert "tiny" in names
    target = tmp_path / "back.csv"
    run(config, "datasets", "download", uploaded["id"], "--to", str(target))
    assert target.read_text() == "a,b\n1,2\n"
    assert json.loads(run(config, "models", "list", "-o", "json").stdout) == []
    missing = run(config, "models", "tag", "model-0000000000000000", "prod", check=False)
    assert missing.returncode == 1 and "404" in missing.stderr


def test_not_logged_in(tmp_path: Path) -> None:
    result = run(tmp_path / "none.json", "jobs", "list", check=False)
    assert result.returncode == 2 and "sparktrainer login" in result.stderr
