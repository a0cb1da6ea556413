"""The metrics tailer under a race: the job ends while its file is being read."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from sqlalchemy import func, select

from spark_trainer.context import AppContext
from spark_trainer.metrics.pipeline import FileTailer
from spark_trainer.models import Job, MetricPoint
from tests.conftest import Account


def test_final_drain_racing_the_tailer_stores_each_line_once(
    ctx: AppContext, alice: Account, tmp_path: Path
) -> None:
    with ctx.session_factory.begin() as session:
        session.add(
            Job(
                id="job-00000000000000aa",
                owner_id=alice.user.id,
                name="race",
                command="true",
                gpu_count=0,
                environment={},
                gpus=[],
            )
        )
    metrics_file = tmp_path / "metrics.jsonl"
    lines = 150_000  # several 4 MiB reads
    metrics_file.write_text(
        "".join(
            json.dumps({"step": i, "metrics": {"loss": i / lines}}) + "\n" for i in range(lines)
        )
    )
    pipeline = ctx.jobs.pipeline
    tailer = FileTailer(pipeline, interval=0.0005)
    pipeline.start()
    tailer.follow("job-00000000000000aa", metrics_file)
    tailer.start()
    # The job "ends" while the tailer thread is mid-file.
    while pipeline.file_offset("job-00000000000000aa") == 0:
        time.sleep(0.001)
    drainer = threading.Thread(target=tailer.drain, args=("job-00000000000000aa",))
    drainer.start()
    drainer.join()
    tailer.stop()
    pipeline.forget("job-00000000000000aa")
    pipeline.stop()
    with ctx.engine.connect() as conn:
        stored = conn.scalar(
            select(func.count()).where(MetricPoint.job_id == "job-00000000000000aa")
        )
        distinct_steps = conn.scalar(
            select(func.count(func.distinct(MetricPoint.step))).where(
                MetricPoint.job_id == "job-00000000000000aa"
            )
        )
    assert stored == lines
    assert distinct_steps == lines
