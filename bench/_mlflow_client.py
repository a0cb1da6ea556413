"""The MLflow side of metrics_ingest's comparison; runs under the interpreter that has mlflow.

``python bench/_mlflow_client.py URL BATCH_POINTS BATCH_SIZE CLIENTS DURATION_S`` against a
running ``mlflow server``:

1. ``log_batch``: BATCH_POINTS points of one metric in batches of BATCH_SIZE (1,000 is
   MLflow's limit per call), one client, back to back → points/s (each call returns once
   the points are committed);
2. ``get_metric_history`` of that metric (BATCH_POINTS points) → seconds;
3. ``log_metric``: one client, one point per call, for DURATION_S → points/s; then
   CLIENTS threads, each its own client and run, for DURATION_S → points/s in all and per
   client.

Prints one ``BENCH_JSON {...}`` line. Imports only mlflow and the standard library, since
the project's environment does not have mlflow (see bench/README.md).
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid

MARKER = "BENCH_JSON "


def main(argv: list[str]) -> None:
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    url = argv[0]
    batch_points, batch_size, clients, duration = (
        int(argv[1]),
        int(argv[2]),
        int(argv[3]),
        float(argv[4]),
    )
    client = MlflowClient(tracking_uri=url)
    experiment = client.create_experiment(f"bench-{uuid.uuid4().hex[:8]}")
    run_id = client.create_run(experiment).info.run_id

    now_ms = int(time.time() * 1000)
    batches = [
        [
            Metric("loss", (start + i) * 1e-6, now_ms, start + i)
            for i in range(min(batch_size, batch_points - start))
        ]
        for start in range(0, batch_points, batch_size)
    ]
    started = time.perf_counter()
    for batch in batches:
        client.log_batch(run_id, metrics=batch)
    batch_s = time.perf_counter() - started

    started = time.perf_counter()
    history = client.get_metric_history(run_id, "loss")
    history_s = time.perf_counter() - started
    if len(history) != batch_points:
        raise SystemExit(f"get_metric_history returned {len(history)} of {batch_points} points")

    single_one = 0
    stop_at = time.perf_counter() + duration
    while time.perf_counter() < stop_at:
        client.log_metric(run_id, "one", single_one * 1e-6, step=single_one)
        single_one += 1

    counts = [0] * clients
    errors = [0] * clients
    stop_at = time.perf_counter() + duration + 1.0  # +1 s: every thread has begun by then
    begin_at = stop_at - duration

    def single(index: int) -> None:
        own = MlflowClient(tracking_uri=url)
        own_run = own.create_run(experiment).info.run_id
        step = 0
        while time.perf_counter() < begin_at:
            time.sleep(0.001)
        while time.perf_counter() < stop_at:
            try:
                own.log_metric(own_run, "loss", step * 1e-6, step=step)
                counts[index] += 1
            except Exception:
                errors[index] += 1
            step += 1

    threads = [threading.Thread(target=single, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    total = sum(counts)
    print(
        MARKER
        + json.dumps(
            {
                "batch_points": batch_points,
                "batch_size": batch_size,
                "batch_s": batch_s,
                "batch_points_per_s": batch_points / batch_s,
                "history_points": len(history),
                "history_s": history_s,
                "single1_points_per_s": single_one / duration,
                "single_clients": clients,
                "single_points_per_s": total / duration,
                "single_per_client_per_s": total / duration / clients,
                "single_errors": sum(errors),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
