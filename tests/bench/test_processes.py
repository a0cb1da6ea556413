"""Benchmarks leave no process behind: what they start is gone when they end, also on a
failure or Ctrl-C, and an MLflow peer that fails to start is reported, not a crash or a
ratio. Real processes throughout."""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import psutil
import pytest
from bench._common import stop_process
from bench._jobs import login
from bench._server import running_server

from bench import metrics_ingest
from tests.jobs.helpers import wait_until


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_stop_process_kills_what_ignores_sigterm_and_what_it_started(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    # A parent that ignores SIGTERM, with a child in a session of its own (as a job's is).
    parent_source = textwrap.dedent(
        f"""
        import signal, subprocess, sys, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        child = subprocess.Popen(["sleep", "300"], start_new_session=True)
        open({str(pids)!r} + ".tmp", "w").write(str(child.pid))
        __import__("os").replace({str(pids)!r} + ".tmp", {str(pids)!r})
        time.sleep(300)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", parent_source])
    wait_until(pids.exists, what="the child to start")
    child = int(pids.read_text())

    code = stop_process(proc, grace_s=0.5)

    assert code == -signal.SIGKILL
    assert _gone(proc.pid) and _gone(child)
    assert stop_process(proc) == -signal.SIGKILL  # a second stop only reports


@pytest.mark.parametrize("ending", [RuntimeError, KeyboardInterrupt])
def test_a_bench_server_and_its_jobs_are_gone_after_a_failure_or_ctrl_c(
    tmp_path: Path, ending: type[BaseException]
) -> None:
    pids = tmp_path / "job-pids"
    seen: dict[str, int] = {}
    with pytest.raises(ending), running_server(tmp_path / "data") as server:
        seen["server"] = server.pid
        with httpx.Client(base_url=server.base_url, timeout=30) as client:
            headers = {"Authorization": f"Bearer {login(client)}"}
            command = f"sleep 300 & echo $$ $! > {pids}.tmp; mv {pids}.tmp {pids}; wait"
            submitted = client.post(
                "/api/jobs",
                json={"name": "left-running", "command": command, "gpu_count": 0},
                headers=headers,
            )
            assert submitted.status_code == 201, submitted.text
        wait_until(pids.exists, timeout=60, what="the job to start")
        shell, sleeper = (int(pid) for pid in pids.read_text().split())
        assert not _gone(shell) and not _gone(sleeper)
        raise ending("the benchmark failed")

    assert _gone(seen["server"])
    assert _gone(shell) and _gone(sleeper)


def test_an_mlflow_peer_that_fails_to_start_is_reported_not_measured(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # An interpreter that imports mlflow, next to an ``mlflow`` command that cannot serve:
    # a broken MLflow install, as the benchmark finds it.
    package = tmp_path / "site" / "mlflow"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    venv = tmp_path / "mlflow-venv" / "bin"
    venv.mkdir(parents=True)
    python = venv / "python"
    python.write_text(f'#!/bin/sh\nPYTHONPATH={tmp_path / "site"} exec {sys.executable} "$@"\n')
    server = venv / "mlflow"
    server.write_text("#!/bin/sh\necho 'mlflow: broken install' >&2\nexit 3\n")
    for script in (python, server):
        script.chmod(0o700)
    parser = argparse.ArgumentParser()
    metrics_ingest.add_arguments(parser)
    args = parser.parse_args(["--mlflow-python", str(python)])
    args.quiet_wait = 0.0  # the runner's option (bench/run.py)

    result = metrics_ingest._mlflow("sqlite", args, ours={})

    assert result.metrics == {}
    assert result.info == {"mlflow": "failed, not measured: mlflow server exited with 3"}
    printed = capsys.readouterr().out
    assert "vs MLflow: failed, not measured (mlflow server exited with 3)" in printed
    assert "mlflow: broken install" in printed
    assert " x" not in printed  # no ratio
