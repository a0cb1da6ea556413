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
import subprocess
import sys
import tempfile
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


def _recipe_config(model: Path, data: Path, steps: int, batch: int, seq_len: int) -> str:
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


def run(args: argparse.Namespace) -> list[Result]:
    sys.path.insert(0, str(REPO))
    from tests.tinylm import WORDS, build_tiny_lm

    steps, batch, seq_len = args.recipe_steps, args.recipe_batch, args.recipe_seq_len
    with tempfile.TemporaryDirectory(prefix="bench-recipe-") as tmp:
        root = Path(tmp)
        model = build_tiny_lm(root / "model")
        data = root / "data.jsonl"
        with data.open("w") as handle:
            for i in range(SENTENCES):
                words = [WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(8 + i % 24)]
                handle.write(json.dumps({"text": " ".join(words)}) + "\n")
        (root / "config.yaml").write_text(_recipe_config(model, data, steps, batch, seq_len))
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
            str(model),
            str(data),
            str(steps),
            str(batch),
            str(seq_len),
        ]
        recipe_rates: list[float] = []
        bare_rates: list[float] = []
        for round_number in range(args.recipe_rounds):
            wait_for_quiet(args.quiet_wait)
            for checkpoints in root.glob("checkpoints"):
                # A fresh run each time, not a resume of the previous one.
                subprocess.run(["rm", "-rf", str(checkpoints)], check=True)  # noqa: S607
            recipe_rates.append(_run(recipe_cmd, root, recipe_env, "text_lora: done "))
            wait_for_quiet(args.quiet_wait)
            bare_rates.append(_run(bare_cmd, root, env, ""))
            print(
                f"  round {round_number + 1}: recipe {recipe_rates[-1]:,.0f} tokens/s, "
                f"bare Trainer {bare_rates[-1]:,.0f} tokens/s",
                flush=True,
            )
        points = sum(1 for _ in (root / "metrics.jsonl").open())
    recipe, bare = max(recipe_rates), max(bare_rates)
    overhead = (1 - recipe / bare) * 100
    met = overhead < TARGET_OVERHEAD_PCT
    print(
        f"  recipe overhead {overhead:+.1f} % (target < {TARGET_OVERHEAD_PCT:.0f} %: "
        f"{'met' if met else 'missed'}); ratio recipe/bare {recipe / bare:.3f}; "
        f"{points} metric points written",
        flush=True,
    )
    return [
        Result(
            benchmark=NAME,
            case=f"cpu, {steps} steps, batch {batch}, seq {seq_len}",
            metrics={
                "recipe_tokens/s": recipe,
                "bare_tokens/s": bare,
                "ratio": recipe / bare,
                "overhead_%": overhead,
                "target_%": TARGET_OVERHEAD_PCT,
            },
            info={"target": "met" if met else "missed", "device": "cpu"},
        )
    ]
