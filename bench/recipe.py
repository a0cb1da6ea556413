"""The text_lora recipe's overhead: its training tokens/s against a bare Trainer script.

Both train the same tiny GPT-2 (tests/tinylm.py) with the same LoRA settings, data,
batch size, sequence length and number of steps, each in a fresh process: the recipe as
``python -m spark_trainer.recipes.text_lora --config config.yaml`` with a metrics file
set as in a job (so every step's ``sparktrainer.log`` really writes a point), the
baseline as ``bench/_bare_trainer.py`` (plain ``Trainer``, ``datasets`` and the stock
collator). Tokens/s is non-padding input tokens over the ``trainer.train()`` wall time,
measured the same way in both. Runs alternate, and each side keeps its best run, so a
burst of other load on the machine does not decide the comparison. Target: overhead
below 5 %.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from bench._common import Result, wait_for_quiet

NAME = "recipe"
DESCRIPTION = "text_lora recipe tokens/s vs a bare transformers Trainer script (tiny GPT-2)"
TARGET_OVERHEAD_PCT = 5.0
REPO = Path(__file__).resolve().parent.parent
SENTENCES = 400


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(NAME)
    group.add_argument("--recipe-steps", type=int, default=150, help="training steps per run")
    group.add_argument("--recipe-rounds", type=int, default=2, help="runs of each side")
    group.add_argument("--recipe-batch", type=int, default=8)
    group.add_argument("--recipe-seq-len", type=int, default=64)


def _recipe_config(
    model: Path, data: Path, steps: int, batch: int, seq_len: int, precision: str
) -> str:
    return f"""\
base_model: {model}
dataset: {{path: {data}, format: text}}
lora: {{r: 8, alpha: 16, dropout: 0.05}}
training:
  max_steps: {steps}
  batch_size: {batch}
  learning_rate: 0.0002
  lr_scheduler: cosine
  seed: 42
  logging_steps: 1
  checkpoint_steps: {steps + 1}
  max_seq_length: {seq_len}
  precision: {precision}
"""


def _run(command: list[str], cwd: Path, env: dict[str, str], marker: str) -> float:
    done = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=1800, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{command[:4]} failed:\n{done.stderr[-2000:]}")
    line = next(x for x in reversed(done.stdout.splitlines()) if x.startswith(marker))
    figures = json.loads(line.removeprefix(marker))
    return float(figures["tokens_seen"]) / float(figures["train_runtime"])


def write_data(path: Path, words: list[str], sentences: int = SENTENCES) -> Path:
    with path.open("w") as handle:
        for i in range(sentences):
            line = [words[(i * 7 + k * 3) % len(words)] for k in range(8 + i % 24)]
            handle.write(json.dumps({"text": " ".join(line)}) + "\n")
    return path


def compare(
    root: Path,
    model: Path,
    data: Path,
    *,
    steps: int,
    batch: int,
    seq_len: int,
    rounds: int,
    precision: str = "fp32",
    settle: Callable[[], object] = lambda: None,
) -> dict[str, float]:
    """Tokens/s of the recipe and of the bare Trainer script on the same model and data,
    alternating, each side's best of ``rounds``; ``settle`` runs before each run (waiting
    for a quiet machine). Runs on whatever device the processes see (the GPU when one is
    visible); only torch, transformers, peft and PyYAML are needed."""
    (root / "config.yaml").write_text(_recipe_config(model, data, steps, batch, seq_len, precision))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPARKTRAINER_")}
    recipe_env = {
        **env,
        "SPARKTRAINER_METRICS_FILE": str(root / "metrics.jsonl"),
        "SPARKTRAINER_OUTPUT_DIR": str(root / "output"),
    }
    recipe_cmd = [
        sys.executable,
        "-m",
        "spark_trainer.recipes.text_lora",
        "--config",
        "config.yaml",
    ]
    bare_cmd = [
        sys.executable,
        str(REPO / "bench" / "_bare_trainer.py"),
        *(str(x) for x in (model, data, steps, batch, seq_len, precision)),
    ]
    recipe_rates: list[float] = []
    bare_rates: list[float] = []
    for round_number in range(rounds):
        settle()
        # A fresh run each time, not a resume of the previous one.
        shutil.rmtree(root / "checkpoints", ignore_errors=True)
        recipe_rates.append(_run(recipe_cmd, root, recipe_env, "text_lora: done "))
        settle()
        bare_rates.append(_run(bare_cmd, root, env, ""))
        print(
            f"  round {round_number + 1}: recipe {recipe_rates[-1]:,.0f} tokens/s, "
            f"bare Trainer {bare_rates[-1]:,.0f} tokens/s",
            flush=True,
        )
    recipe, bare = max(recipe_rates), max(bare_rates)
    with (root / "metrics.jsonl").open() as points:
        written = sum(1 for _ in points)
    return {
        "recipe_tokens/s": recipe,
        "bare_tokens/s": bare,
        "ratio": recipe / bare,
        "overhead_%": (1 - recipe / bare) * 100,
        "metric_points": written,
    }


def run(args: argparse.Namespace) -> list[Result]:
    sys.path.insert(0, str(REPO))
    from tests.tinylm import WORDS, build_tiny_lm

    steps, batch, seq_len = args.recipe_steps, args.recipe_batch, args.recipe_seq_len
    with tempfile.TemporaryDirectory(prefix="bench-recipe-") as tmp:
        root = Path(tmp)
        figures = compare(
            root,
            build_tiny_lm(root / "model"),
            write_data(root / "data.jsonl", WORDS),
            steps=steps,
            batch=batch,
            seq_len=seq_len,
            rounds=args.recipe_rounds,
            settle=lambda: wait_for_quiet(args.quiet_wait),
        )
    overhead = figures["overhead_%"]
    met = overhead < TARGET_OVERHEAD_PCT
    print(
        f"  recipe overhead {overhead:+.1f} % (target < {TARGET_OVERHEAD_PCT:.0f} %: "
        f"{'met' if met else 'missed'}); ratio recipe/bare {figures['ratio']:.3f}; "
        f"{figures['metric_points']:.0f} metric points written",
        flush=True,
    )
    return [
        Result(
            benchmark=NAME,
            case=f"cpu, {steps} steps, batch {batch}, seq {seq_len}",
            metrics={
                "recipe_tokens/s": figures["recipe_tokens/s"],
                "bare_tokens/s": figures["bare_tokens/s"],
                "ratio": figures["ratio"],
                "overhead_%": overhead,
                "target_%": TARGET_OVERHEAD_PCT,
            },
            info={"target": "met" if met else "missed", "device": "cpu"},
        )
    ]
