"""Jobs that need no GPU on the embedded default on a machine without GPUs: a real
``sparktrainer serve`` (no ``SPARKTRAINER_GPUS``, no NVIDIA driver here) is a CPU node."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.jobs.helpers import FINAL, PY
from tests.runtime.servers import Server


def test_a_job_without_gpus_runs_on_a_server_without_gpus(
    database_url: str, tmp_path: Path
) -> None:
    server = Server(tmp_path / "data", database_url, SPARKTRAINER_NODE_NAME="cpu-box")
    server.start()
    try:
        assert server.get("/api/gpus") == []
        show_devices = f"{PY} -c 'import os; print(repr(os.environ[\"CUDA_VISIBLE_DEVICES\"]))'"
        job_id = server.submit(f"echo prepared on the cpu; {show_devices}", gpu_count=0)

        done = server.wait(job_id, FINAL)
        assert done["status"] == "completed", done
        assert (done["node"], done["gpus"], done["exit_code"]) == ("cpu-box", [], 0)
        logs = httpx.get(
            f"{server.base}/api/jobs/{job_id}/logs",
            params={"stream": "stdout"},
            headers=server.headers,
        )
        assert logs.status_code == 200, logs.text
        # No GPU is visible to a job that asked for none.
        assert logs.text.splitlines() == ["prepared on the cpu", "''"]

        # A job that needs a GPU is still refused, naming the setting that provides some.
        refused = server.post("/api/jobs", {"name": "gpu", "command": "true", "gpu_count": 1})
        assert refused.status_code == 400, refused.text
        assert "SPARKTRAINER_GPUS" in refused.json()["message"]
    finally:
        server.kill()
