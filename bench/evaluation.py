"""MMLU scoring speed: the evaluation job's program against a bare transformers loop,
and the same evaluation end to end through the API and the scheduler.

Both score the same MMLU-format questions (table layout, written here in the tiny
model's vocabulary) with the tiny offline GPT-2 (tests/tinylm.py), each in a fresh
process: the job's own program (``python -m spark_trainer.evaluations.run --spec …``,
with the metrics file set as in a job, so every batch's ``questions_done`` is really
written) and ``bench/_bare_mmlu.py`` (the same log-likelihood method, written plainly).
Rounds alternate the two; each reports the scoring phase's wall and process-CPU seconds.

The target (the job's overhead below 10 %) is judged on questions per CPU-second of the
scoring phase, best round of each side: on a shared machine the wall clock measures the
neighbours as much as the program (one round can take 5x the next). Both sides run torch
on the same thread count (``--eval-threads``, default 1: with more threads than free
cores, torch's threads wait on each other and the CPU figure counts that waiting too).
The wall figure is printed beside it with its own verdict.

End to end (``--eval-e2e-rounds``, default 2, 0 to skip): a server on SQLite, the tiny
model registered from a job's output, the questions uploaded as a dataset, then per
round ``POST /api/evaluations`` → the evaluation ``completed`` with its results (polled
every 50 ms): scheduler dispatch, the job's process start, model load, scoring, and the
result collector. It is set beside the bare loop's whole process (start, imports, load,
scoring), with no target: on this workload start-up dominates both.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bench._common import Result, wait_for_quiet

NAME = "evaluation"
DESCRIPTION = "MMLU questions/s: the evaluation job's program vs a bare transformers loop"
TARGET_OVERHEAD_PCT = 10.0
REPO = Path(__file__).resolve().parent.parent
SUBJECTS = ("abstract_algebra", "college_physics", "high_school_computer_science", "virology")
# Writes the model's files as a job's output, which the registry records as a model.
COPY_MODEL = """
import os, shutil, sys
shutil.copytree(sys.argv[1], os.environ["SPARKTRAINER_OUTPUT_DIR"], dirs_exist_ok=True)
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(NAME)
    group.add_argument("--eval-questions", type=int, default=100, help="test questions a subject")
    group.add_argument("--eval-rounds", type=int, default=5, help="runs of each side")
    group.add_argument("--eval-shots", type=int, default=1)
    group.add_argument("--eval-batch", type=int, default=8)
    group.add_argument(
        "--eval-threads", type=int, default=1, help="torch threads, the same on both sides"
    )
    group.add_argument(
        "--eval-e2e-rounds",
        type=int,
        default=2,
        help="evaluations submitted through the API (0: skip the end-to-end figure)",
    )


def _questions(path: Path, words: list[str], per_subject: int, shots: int) -> int:
    rng = random.Random(7)
    rows = []
    for subject in SUBJECTS:
        for split, count in (("dev", shots), ("test", per_subject)):
            for _ in range(count):
                rows.append(
                    {
                        "subject": subject,
                        "split": split,
                        "question": " ".join(rng.choice(words) for _ in range(rng.randint(4, 9))),
                        "choices": [rng.choice(words) for _ in range(4)],
                        "answer": rng.randrange(4),
                    }
                )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return per_subject * len(SUBJECTS)


def _timed(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[str, float]:
    started = time.perf_counter()
    done = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=1800, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{command[:4]} failed:\n{done.stderr[-2000:]}")
    return done.stdout, time.perf_counter() - started


def _overhead_pct(job: float, bare: float) -> float:
    return (1 - job / bare) * 100


def _verdict(overhead: float) -> str:
    return "met" if overhead < TARGET_OVERHEAD_PCT else "missed"


def _side_by_side(
    args: argparse.Namespace, root: Path, model: Path, data: Path, spec_argument: str, total: int
) -> dict[str, list[float]]:
    """Alternating rounds of the job's program and the bare loop; per-round figures."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPARKTRAINER_")}
    env["TOKENIZERS_PARALLELISM"] = "false"
    env["OMP_NUM_THREADS"] = str(args.eval_threads)
    job_env = {
        **env,
        "SPARKTRAINER_METRICS_FILE": str(root / "metrics.jsonl"),
        "SPARKTRAINER_OUTPUT_DIR": str(root / "output"),
    }
    # The job's working directory: it lays the model out in model/ there.
    workdir = root / "job"
    workdir.mkdir()
    job_cmd = [sys.executable, "-m", "spark_trainer.evaluations.run", "--spec", spec_argument]
    bare_cmd = [
        sys.executable,
        str(REPO / "bench" / "_bare_mmlu.py"),
        str(model),
        str(data),
        str(args.eval_shots),
        str(args.eval_batch),
    ]
    figures: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        figures.setdefault(name, []).append(value)

    for round_number in range(args.eval_rounds):
        wait_for_quiet(args.quiet_wait)
        load = os.getloadavg()[0]
        _, wall = _timed(job_cmd, workdir, job_env)
        results = json.loads((root / "output" / "results.json").read_text())
        assert results["questions"] == total
        add("job_qps", total / results["scoring_seconds"])
        add("job_cpu_qps", total / results["scoring_cpu_seconds"])
        add("job_process_s", wall)
        wait_for_quiet(args.quiet_wait)
        out, wall = _timed(bare_cmd, root, env)
        bare = json.loads(out.strip().splitlines()[-1])
        # The same method on the same model and questions: the same answers.
        assert abs(bare["accuracy"] - results["overall_accuracy"]) < 1e-9, (bare, results)
        add("bare_qps", total / bare["scoring_seconds"])
        add("bare_cpu_qps", total / bare["scoring_cpu_seconds"])
        add("bare_process_s", wall)
        add("load", load)
        print(
            f"  round {round_number + 1} (load {load:.1f}): job {figures['job_qps'][-1]:,.0f} "
            f"q/s, {figures['job_cpu_qps'][-1]:,.0f} q/CPU-s ({figures['job_process_s'][-1]:.1f} "
            f"s in all); bare loop {figures['bare_qps'][-1]:,.0f} q/s, "
            f"{figures['bare_cpu_qps'][-1]:,.0f} q/CPU-s ({figures['bare_process_s'][-1]:.1f} "
            "s in all)",
            flush=True,
        )
    return figures


def _through_the_api(
    args: argparse.Namespace, model: Path, data: Path, total: int
) -> list[tuple[float, dict[str, Any]]]:
    """Submits the evaluation through a real server; (seconds to results, results) a round."""
    from bench import _jobs

    env = {
        "OMP_NUM_THREADS": str(args.eval_threads),
        # The job sees only allowlisted server variables; the thread count must reach it.
        "SPARKTRAINER_JOB_ENV_ALLOWLIST": json.dumps(
            ["PATH", "LANG", "LC_ALL", "TMPDIR", "HF_HUB_OFFLINE", "OMP_NUM_THREADS"]
        ),
    }
    rounds: list[tuple[float, dict[str, Any]]] = []
    with _jobs.backend_server("sqlite", args, NAME, env=env) as backend:
        assert backend is not None
        client, auth = backend.client, backend.auth
        command = f"python -c {shlex.quote(COPY_MODEL)} {shlex.quote(str(model))}"
        job_id = _jobs.submit(backend, command, name="bench-tiny-lm", gpu_count=0)
        _jobs.wait_status(backend, job_id, ["completed"])
        model_id = _registered_model(client, auth, job_id)
        upload = client.post(
            "/api/datasets",
            data={"name": "bench-mmlu"},
            files={"file": ("mmlu.jsonl", data.read_bytes(), "application/octet-stream")},
            headers=auth,
        )
        upload.raise_for_status()
        body = {
            "model_id": model_id,
            "benchmark": "mmlu",
            "config": {
                "num_shots": args.eval_shots,
                "batch_size": args.eval_batch,
                "dataset_id": upload.json()["id"],
            },
        }
        for round_number in range(args.eval_e2e_rounds):
            wait_for_quiet(args.quiet_wait)
            load = os.getloadavg()[0]
            started = time.perf_counter()
            created = client.post("/api/evaluations", json=body, headers=auth)
            created.raise_for_status()
            done = _finished(client, auth, created.json()["id"])
            seconds, seen = time.perf_counter() - started, time.time()
            results = done["results"]
            assert done["status"] == "completed" and results["questions"] == total, done
            job = _jobs.job(backend, done["job_id"])
            created_at, started_at, finished_at = (
                datetime.fromisoformat(job[k]).timestamp()
                for k in ("created_at", "started_at", "finished_at")
            )
            rounds.append((seconds, results))
            print(
                f"  through the API, round {round_number + 1} (load {load:.1f}): submit → "
                f"results {seconds:.2f} s: dispatch {started_at - created_at:.2f} s, the job's "
                f"process {finished_at - started_at:.2f} s (of it: start-up and imports "
                f"{finished_at - started_at - results['wall_seconds']:.2f} s, model load and "
                f"data {results['wall_seconds'] - results['scoring_seconds']:.2f} s, scoring "
                f"{results['scoring_seconds']:.2f} s), job end → results seen "
                f"{seen - finished_at:.2f} s",
                flush=True,
            )
    return rounds


def _registered_model(client: Any, auth: dict[str, str], job_id: str) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        items = client.get("/api/models", params={"name": "bench-tiny-lm"}, headers=auth)
        items.raise_for_status()
        for found in items.json()["items"]:
            if found["source_job_id"] == job_id:
                model_id: str = found["id"]
                return model_id
        time.sleep(0.1)
    raise RuntimeError(f"the model of job {job_id} was not registered within 60 s")


def _finished(client: Any, auth: dict[str, str], evaluation_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        response = client.get(f"/api/evaluations/{evaluation_id}", headers=auth)
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        if body["status"] in ("completed", "failed", "cancelled"):
            return body
        time.sleep(0.05)
    raise RuntimeError(f"evaluation {evaluation_id} not finished within 600 s")


def run(args: argparse.Namespace) -> list[Result]:
    sys.path.insert(0, str(REPO))
    from tests.tinylm import WORDS, build_tiny_lm

    from spark_trainer.evaluations.spec import ModelFiles, RunSpec, StoredFile
    from spark_trainer.models import Benchmark

    with tempfile.TemporaryDirectory(prefix="bench-evaluation-") as tmp:
        root = Path(tmp)
        # Readable by the job's OS user (``nobody`` under a root server), which copies
        # the model into its output to register it.
        root.chmod(0o755)
        model = build_tiny_lm(root / "tiny-lm")
        data = root / "mmlu.jsonl"
        total = _questions(data, WORDS, args.eval_questions, args.eval_shots)
        spec = RunSpec(
            evaluation_id="eval-bench",
            benchmark=Benchmark.MMLU,
            config={"num_shots": args.eval_shots, "batch_size": args.eval_batch},
            model=ModelFiles(files={f.name: str(f) for f in model.iterdir() if f.is_file()}),
            datasets={"questions": StoredFile(path=str(data), format="jsonl")},
        )
        figures = _side_by_side(args, root, model, data, spec.to_argument(), total)
        points = sum(1 for _ in (root / "metrics.jsonl").open())
        e2e = _through_the_api(args, model, data, total) if args.eval_e2e_rounds > 0 else []

    job_cpu, bare_cpu = max(figures["job_cpu_qps"]), max(figures["bare_cpu_qps"])
    job_wall, bare_wall = max(figures["job_qps"]), max(figures["bare_qps"])
    cpu_overhead = _overhead_pct(job_cpu, bare_cpu)
    wall_overhead = _overhead_pct(job_wall, bare_wall)
    paired = statistics.median(
        _overhead_pct(j, b)
        for j, b in zip(figures["job_cpu_qps"], figures["bare_cpu_qps"], strict=True)
    )
    loads = f"load {min(figures['load']):.1f}-{max(figures['load']):.1f}"
    print(
        f"  scoring phase, CPU ({loads}, {args.eval_threads} thread(s)): job {job_cpu:,.0f} vs "
        f"bare {bare_cpu:,.0f} questions/CPU-s, overhead {cpu_overhead:+.1f} % (median of "
        f"paired rounds {paired:+.1f} %); target < {TARGET_OVERHEAD_PCT:.0f} %: "
        f"{_verdict(cpu_overhead)}",
        flush=True,
    )
    print(
        f"  scoring phase, wall: job {job_wall:,.0f} vs bare {bare_wall:,.0f} questions/s, "
        f"overhead {wall_overhead:+.1f} %; target < {TARGET_OVERHEAD_PCT:.0f} %: "
        f"{_verdict(wall_overhead)}; {points} progress points written",
        flush=True,
    )
    metrics = {
        "job_questions/cpu_s": job_cpu,
        "bare_questions/cpu_s": bare_cpu,
        "overhead_cpu_%": cpu_overhead,
        "job_questions/s": job_wall,
        "bare_questions/s": bare_wall,
        "overhead_wall_%": wall_overhead,
        "target_%": TARGET_OVERHEAD_PCT,
        "job_process_s": min(figures["job_process_s"]),
        "bare_process_s": min(figures["bare_process_s"]),
    }
    if e2e:
        best = min(seconds for seconds, _ in e2e)
        metrics["api_submit_to_results_s"] = best
        print(
            f"  end to end through the API (no target): submit → results {best:.2f} s vs the "
            f"bare loop's whole process {metrics['bare_process_s']:.2f} s "
            f"(x{best / metrics['bare_process_s']:.2f}); the scoring itself is the figure above",
            flush=True,
        )
    return [
        Result(
            benchmark=NAME,
            case=f"cpu, {total} questions, {args.eval_shots}-shot, batch {args.eval_batch}, "
            f"{args.eval_threads} thread(s)",
            metrics=metrics,
            info={
                "target": _verdict(cpu_overhead),
                "target_wall": _verdict(wall_overhead),
                "device": "cpu",
                "load": loads,
            },
        )
    ]
