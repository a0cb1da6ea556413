"""HPO study overhead: 50 trivial trials at parallelism 4, against Optuna's own ``optimize``.

Per backend, the real server (``SPARKTRAINER_GPUS=64``) runs a TPE study (seed 0) whose
trial is a Python process that reports ``loss = (x - 1)^2 + (y + 2)^2`` with
``sparktrainer.log`` and exits. Measured from the client: the study's wall time (POST to
``completed``). From the trials' jobs: each one's own run time (``started_at`` →
``finished_at``: interpreter start, imports, the report, exit).

``overhead_per_trial_s`` = (wall * parallelism - sum of run times) / trials: the time a trial's
slot is not running a trial process (asking Optuna, submitting, scheduling, launching,
recording the end, telling Optuna), per trial. Target < 1 s. Beside it, in the same run,
Optuna's in-process ``study.optimize`` of the same objective (no processes at all) and a
bare ``python -c 'import sparktrainer'`` (what each trial process costs at least), so the
ratio shows what running trials as jobs adds.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from datetime import datetime

from bench._common import Result, wait_for_quiet
from bench._jobs import CpuMeter, add_shared_arguments, backend_server, backends_of, target_note

NAME = "hpo"
DESCRIPTION = "HPO per-trial overhead, 50 trivial trials at parallelism 4, vs Optuna in-process"
TARGET_OVERHEAD_S = 1.0
TRIAL = (
    f"{sys.executable} -c "
    '"import sys, sparktrainer; x, y = float(sys.argv[1]), float(sys.argv[2]); '
    "sparktrainer.log({'loss': (x - 1) ** 2 + (y + 2) ** 2})\" @@x@@ @@y@@"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_shared_arguments(parser)
    group = parser.add_argument_group(NAME)
    group.add_argument("--hpo-trials", type=int, default=50, help="trials (default 50)")
    group.add_argument("--hpo-parallelism", type=int, default=4, help="parallelism (default 4)")


def _optuna_in_process(trials: int) -> float:
    """Seconds per trial of Optuna's own optimize of the same objective."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", -10, 10)
        y = trial.suggest_float("y", -10, 10)
        return (x - 1) ** 2 + (y + 2) ** 2

    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    started = time.perf_counter()
    study.optimize(objective, n_trials=trials)
    return (time.perf_counter() - started) / trials


def _bare_process_s(rounds: int = 5) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import sparktrainer"], check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _stamp(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _bench(backend: str, args: argparse.Namespace, optuna_s: float, bare_s: float) -> Result:
    trials, parallelism = args.hpo_trials, args.hpo_parallelism
    with backend_server(backend, args, NAME) as b:
        if b is None:
            return Result(NAME, backend, {}, {"skipped": "postgres unreachable"})
        body = {
            "name": "bench",
            "search_space": {
                "x": {"type": "float", "low": -10, "high": 10},
                "y": {"type": "float", "low": -10, "high": 10},
            },
            "n_trials": trials,
            "parallelism": parallelism,
            "command": TRIAL,
            "gpu_count": 1,
            "seed": 0,
        }
        if args.quiet_wait > 0:
            wait_for_quiet(args.quiet_wait)
        with CpuMeter(b.server.pid) as cpu:
            started = time.monotonic()
            response = b.client.post("/api/hpo/studies", json=body, headers=b.auth)
            response.raise_for_status()
            study_id = response.json()["id"]
            while True:
                study = b.client.get(f"/api/hpo/studies/{study_id}", headers=b.auth).json()
                if study["status"] in ("completed", "failed", "cancelled"):
                    break
                time.sleep(0.05)
            wall = time.monotonic() - started
        runs = [
            _stamp(t["finished_at"]) - _stamp(t["started_at"])
            for t in study["trials"]
            if t["started_at"] and t["finished_at"]
        ]
        overhead = (wall * parallelism - sum(runs)) / trials
        figures = {
            "wall_s": wall,
            "wall_per_trial_s": wall / trials,
            "trial_run_p50_s": statistics.median(runs),
            "overhead_per_trial_s": overhead,
            "target_overhead_s": TARGET_OVERHEAD_S,
            "optuna_in_process_per_trial_s": optuna_s,
            "bare_trial_process_s": bare_s,
            "best_value": float(study["best_value"]),
            **cpu.figures(),
        }
        print(
            f"{NAME} {backend}: {trials} trials at parallelism {parallelism} in {wall:.1f} s "
            f"({study['status']}); trial run p50 {figures['trial_run_p50_s']:.2f} s; overhead "
            f"{overhead:.3f} s/trial "
            f"{target_note(overhead, TARGET_OVERHEAD_S, lower_is_better=True)}"
            f" | Optuna in-process {1000 * optuna_s:.1f} ms/trial; bare trial process "
            f"{bare_s:.2f} s; best {study['best_value']:.3f}",
            flush=True,
        )
        return Result(
            NAME,
            backend,
            figures,
            {"met": str(overhead < TARGET_OVERHEAD_S).lower(), "status": study["status"]},
        )


def run(args: argparse.Namespace) -> list[Result]:
    optuna_s = _optuna_in_process(args.hpo_trials)
    bare_s = _bare_process_s()
    return [_bench(backend, args, optuna_s, bare_s) for backend in backends_of(args)]
