"""MMLU scoring speed: the evaluation job's program against a bare transformers loop.

Both score the same MMLU-format questions (table layout, written here in the tiny
model's vocabulary) with the tiny offline GPT-2 (tests/tinylm.py), each in a fresh
process: the job's own program (``python -m spark_trainer.evaluations.run --spec …``,
with the metrics file set as in a job, so every batch's ``questions_done`` is really
written) and ``bench/_bare_mmlu.py`` (the same log-likelihood method, written plainly).
Questions/s is questions over the scoring phase, measured the same way in both;
process start and model load are reported beside it. Submitting through the scheduler
adds its dispatch latency once per evaluation, which ``bench.run job_dispatch`` measures.
Runs alternate and each side keeps its best. Target: the job's overhead below 10 %.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._common import Result, wait_for_quiet

NAME = "evaluation"
DESCRIPTION = "MMLU questions/s: the evaluation job's program vs a bare transformers loop"
TARGET_OVERHEAD_PCT = 10.0
REPO = Path(__file__).resolve().parent.parent
SUBJECTS = ("abstract_algebra", "college_physics", "high_school_computer_science", "virology")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(NAME)
    group.add_argument("--eval-questions", type=int, default=100, help="test questions a subject")
    group.add_argument("--eval-rounds", type=int, default=2, help="runs of each side")
    group.add_argument("--eval-shots", type=int, default=1)
    group.add_argument("--eval-batch", type=int, default=8)


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


def run(args: argparse.Namespace) -> list[Result]:
    sys.path.insert(0, str(REPO))
    from tests.tinylm import WORDS, build_tiny_lm

    from spark_trainer.evaluations.spec import ModelFiles, RunSpec, StoredFile
    from spark_trainer.models import Benchmark

    with tempfile.TemporaryDirectory(prefix="bench-evaluation-") as tmp:
        root = Path(tmp)
        model = build_tiny_lm(root / "tiny-lm")
        # The job's working directory: it lays the model out in model/ there.
        workdir = root / "job"
        workdir.mkdir()
        data = root / "mmlu.jsonl"
        total = _questions(data, WORDS, args.eval_questions, args.eval_shots)
        spec = RunSpec(
            evaluation_id="eval-bench",
            benchmark=Benchmark.MMLU,
            config={"num_shots": args.eval_shots, "batch_size": args.eval_batch},
            model=ModelFiles(files={f.name: str(f) for f in model.iterdir() if f.is_file()}),
            datasets={"questions": StoredFile(path=str(data), format="jsonl")},
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("SPARKTRAINER_")}
        env["TOKENIZERS_PARALLELISM"] = "false"
        job_env = {
            **env,
            "SPARKTRAINER_METRICS_FILE": str(root / "metrics.jsonl"),
            "SPARKTRAINER_OUTPUT_DIR": str(root / "output"),
        }
        job_cmd = [
            sys.executable,
            "-m",
            "spark_trainer.evaluations.run",
            "--spec",
            spec.to_argument(),
        ]
        bare_cmd = [
            sys.executable,
            str(REPO / "bench" / "_bare_mmlu.py"),
            str(model),
            str(data),
            str(args.eval_shots),
            str(args.eval_batch),
        ]
        job_rates: list[float] = []
        bare_rates: list[float] = []
        job_walls: list[float] = []
        bare_walls: list[float] = []
        for round_number in range(args.eval_rounds):
            wait_for_quiet(args.quiet_wait)
            _, wall = _timed(job_cmd, workdir, job_env)
            results = json.loads((root / "output" / "results.json").read_text())
            assert results["questions"] == total
            job_rates.append(total / results["scoring_seconds"])
            job_walls.append(wall)
            wait_for_quiet(args.quiet_wait)
            out, wall = _timed(bare_cmd, root, env)
            bare = json.loads(out.strip().splitlines()[-1])
            # The same method on the same model and questions: the same answers.
            assert abs(bare["accuracy"] - results["overall_accuracy"]) < 1e-9, (bare, results)
            bare_rates.append(total / bare["scoring_seconds"])
            bare_walls.append(wall)
            print(
                f"  round {round_number + 1}: job {job_rates[-1]:,.1f} q/s "
                f"({job_walls[-1]:.1f} s in all), bare loop {bare_rates[-1]:,.1f} q/s "
                f"({bare_walls[-1]:.1f} s in all)",
                flush=True,
            )
        points = sum(1 for _ in (root / "metrics.jsonl").open())
    job, bare_rate = max(job_rates), max(bare_rates)
    overhead = (1 - job / bare_rate) * 100
    met = overhead < TARGET_OVERHEAD_PCT
    print(
        f"  job overhead {overhead:+.1f} % (target < {TARGET_OVERHEAD_PCT:.0f} %: "
        f"{'met' if met else 'missed'}); {points} progress points written",
        flush=True,
    )
    return [
        Result(
            benchmark=NAME,
            case=f"cpu, {total} questions, {args.eval_shots}-shot, batch {args.eval_batch}",
            metrics={
                "job_questions/s": job,
                "bare_questions/s": bare_rate,
                "ratio": job / bare_rate,
                "overhead_%": overhead,
                "target_%": TARGET_OVERHEAD_PCT,
                "job_process_s": min(job_walls),
                "bare_process_s": min(bare_walls),
            },
            info={"target": "met" if met else "missed", "device": "cpu"},
        )
    ]
