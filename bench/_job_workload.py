"""What the benchmarks' jobs run (``python bench/_job_workload.py MODE ...``).

Standard library and the ``sparktrainer`` helper only; started by the server's executor as
a job's command, so it sees the job's environment (``SPARKTRAINER_METRICS_FILE``, the job
token). Every mode writes what the benchmark needs to read back as one JSON file, renamed
into place so a reader never sees half of it.

Modes:
  burst OUT N METRICS [RELEASE] log N points of METRICS metrics each, as fast as possible;
                               then, with RELEASE, wait for that file before exiting
  paced OUT GO RATE COUNT      wait for file GO, then log COUNT points at RATE per second,
                               each carrying its send time as the metric ``t_sent``
  hold OUT STOP MAX_S          write the job token to OUT, then wait for file STOP (or MAX_S)
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def _write(path: Path, data: dict[str, object]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


def _wait_for(path: Path, max_s: float) -> bool:
    deadline = time.monotonic() + max_s
    while not path.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def burst(out: Path, count: int, metrics: int, release: Path | None) -> None:
    import sparktrainer

    names = ["loss"] if metrics == 1 else [f"m{i}" for i in range(metrics)]
    log = sparktrainer.log
    started = time.time()
    for step in range(count):
        value = step * 1e-6
        log(dict.fromkeys(names, value), step=step)
    sparktrainer.flush()
    _write(out, {"started": started, "ended": time.time(), "points": count, "metrics": metrics})
    if release is not None:
        _wait_for(release, 600)


def paced(out: Path, go: Path, rate: float, count: int) -> None:
    import sparktrainer

    if not _wait_for(go, 300):
        _write(out, {"error": "no go signal"})
        return
    log = sparktrainer.log
    started = time.time()
    late = 0
    for step in range(count):
        due = started + step / rate
        wait = due - time.time()
        if wait > 0:
            time.sleep(wait)
        elif wait < -0.005:
            late += 1
        log({"t_sent": time.time()}, step=step)
    _write(out, {"started": started, "ended": time.time(), "points": count, "late": late})


def hold(out: Path, stop: Path, max_s: float) -> None:
    _write(out, {"token": os.environ["SPARKTRAINER_JOB_TOKEN"], "started": time.time()})
    _wait_for(stop, max_s)


def main(argv: list[str]) -> None:
    mode, out = argv[0], Path(argv[1])
    if mode == "burst":
        burst(out, int(argv[2]), int(argv[3]), Path(argv[4]) if len(argv) > 4 else None)
    elif mode == "paced":
        paced(out, Path(argv[2]), float(argv[3]), int(argv[4]))
    elif mode == "hold":
        hold(out, Path(argv[2]), float(argv[3]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
