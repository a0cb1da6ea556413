"""Item 1: a metric point the database cannot store is refused at every way in.

The audit's point (a step of 2**63, a NUL in a name on PostgreSQL, an infinite value)
was answered 200, and the writer then retried its batch forever: no job's metrics were
stored and every exiting job stayed ``running``. Now each is a 400 over HTTP and a
skipped, counted line from the metrics file, and other points keep flowing.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from spark_trainer.context import AppContext
from tests.conftest import Account
from tests.jobs.helpers import PY, blocker, submit, wait_for, wait_until

BAD_POINTS: list[dict[str, Any]] = [
    {"step": 2**63, "metrics": {"x": 1}},
    {"step": -1, "metrics": {"x": 1}},
    {"step": True, "metrics": {"x": 1}},
    {"step": 1, "metrics": {"a\u0000b": 1}},
    {"step": 1, "metrics": {"a\u001bb": 1}},
    {"step": 1, "metrics": {"x": 1e400}},
    {"step": 1, "metrics": {"x": "1"}},
    {"step": 1, "metrics": {"x": 1}, "ts": 1e400},
]


def _stored_steps(client: TestClient, account: Account, job_id: str) -> list[int]:
    response = client.get(f"/api/jobs/{job_id}/metrics", headers=account.headers)
    assert response.status_code == 200, response.text
    return [step for series in response.json()["metrics"] for step in series["steps"]]


def test_points_out_of_range_are_400_and_nothing_is_stored(
    client: TestClient, alice: Account, tmp_path: Path
) -> None:
    release = tmp_path / "go"
    job = submit(client, alice.headers, command=blocker(release))
    job_id = job["id"]
    wait_for(client, alice.headers, job_id, {"running"})
    url = f"/api/jobs/{job_id}/metrics"
    for point in BAD_POINTS:
        # Sent as raw JSON: 1e400 and 2**63 must reach the server as the audit sent them.
        raw = json.dumps({"points": [point]}).replace("Infinity", "1e400")
        bad = client.post(
            url, content=raw, headers={**alice.headers, "Content-Type": "application/json"}
        )
        assert bad.status_code == 400, (point, bad.text)
        assert set(bad.json()) == {"error", "message", "status"}
    # The writer is not wedged: the next good point is stored, and the job completes.
    good = client.post(
        url, json={"points": [{"step": 7, "metrics": {"x": 1}}]}, headers=alice.headers
    )
    assert good.status_code == 200, good.text
    release.touch()
    assert wait_for(client, alice.headers, job_id, {"completed", "failed"})["status"] == "completed"
    wait_until(lambda: _stored_steps(client, alice, job_id) == [7], what="the good point")


def test_the_metrics_file_skips_and_counts_a_bad_line(
    client: TestClient, ctx: AppContext, alice: Account
) -> None:
    # What sparktrainer.log({'x': 1}, step=2**63) writes, between two good lines; read
    # again after a restart it would have wedged the writer once more.
    lines = [
        {"step": 1, "metrics": {"x": 1.0}},
        {"step": 2**63, "metrics": {"x": 1.0}},
        {"step": 3, "metrics": {"a\u0000b": 1.0}},
        {"step": 4, "metrics": {"x": 4.0}},
    ]
    script = (
        "import json, os\n"
        "with open(os.environ['SPARKTRAINER_METRICS_FILE'], 'a') as f:\n"
        f"    for line in {lines!r}:\n"
        "        f.write(json.dumps(line) + '\\n')\n"
    )
    job = submit(client, alice.headers, command=f"{PY} -c {shlex.quote(script)}")
    done = wait_for(client, alice.headers, job["id"], {"completed", "failed", "cancelled"})
    assert done["status"] == "completed", done
    wait_until(lambda: _stored_steps(client, alice, job["id"]) == [1, 4], what="good lines")
    assert ctx.jobs.tailer.skipped_lines[job["id"]] == 2

    # And the next job's points are stored: nothing is stuck behind the bad lines.
    other = submit(client, alice.headers, command=f"{PY} -c {shlex.quote(script)}")
    assert wait_for(client, alice.headers, other["id"], {"completed", "failed"})["status"] == (
        "completed"
    )
    wait_until(lambda: _stored_steps(client, alice, other["id"]) == [1, 4], what="next job")
