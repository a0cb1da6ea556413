"""The device check: the text_lora recipe on a real GPU, and NVML read as the server does.

``gpu_checks/run_device.sh`` runs it on a machine whose ``python3`` has torch (CUDA),
transformers, peft, accelerate, PyYAML and nvidia-ml-py, but not SparkTrainer's server
stack. It

1. builds the tiny GPT-2 of the tests and a GPT-2-small-sized random model (bf16
   training on a GPU, so the GPU does real work);
2. runs bench/recipe.py's comparison (recipe tokens/s vs a bare ``Trainer`` script, same
   run) on both;
3. runs the recipe once end to end on one GPU as a job would (``CUDA_VISIBLE_DEVICES``,
   ``SPARKTRAINER_OUTPUT_DIR``, a metrics file) and checks the adapter is saved and the
   loss went down;
4. scores MMLU-format questions with the evaluation job's scorer
   (``spark_trainer.evaluations.scorers``, bf16 on the GPU) against bench/_bare_mmlu.py's
   bare ``transformers`` loop on the same device, same questions, fresh processes;
5. reads every GPU through NVML (name, UUID, memory, utilisation, temperature, power).

Without a GPU it runs the same steps smaller, on the CPU (that is how it is tested). It
prints a summary and writes ``device_check.json`` (and the runs' logs) into ``$OUT``
when set.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.evaluation import SUBJECTS, _questions  # noqa: E402
from bench.recipe import compare, write_data  # noqa: E402
from tests.tinylm import WORDS, build_tiny_lm  # noqa: E402


def build_gpt2_small(directory: Path, tokenizer_from: Path, *, small: bool) -> Path:
    """A randomly initialised GPT-2 of GPT-2 small's shape (12 layers, 768 wide; ~85 M
    parameters with the tiny tokenizer's vocabulary); 2 layers, 256 wide when ``small``."""
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_from)
    layers, width, heads = (2, 256, 4) if small else (12, 768, 12)
    config = GPT2Config(
        vocab_size=tokenizer.vocab_size,
        n_layer=layers,
        n_head=heads,
        n_embd=width,
        n_positions=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    GPT2LMHeadModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def nvml_readings() -> list[dict[str, Any]] | str:
    """What spark_trainer.gpus.inventory reads, read the same way (its module needs the
    server's settings, absent here)."""
    try:
        import pynvml
    except ImportError:
        return "pynvml not installed"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return f"NVML unavailable: {exc}"

    def text(value: Any) -> str:
        return value.decode() if isinstance(value, bytes) else str(value)

    def read(call: Any) -> Any:
        try:
            return call()
        except pynvml.NVMLError as exc:
            return f"error: {exc}"

    try:
        found = []
        for index in range(int(pynvml.nvmlDeviceGetCount())):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            found.append(
                {
                    "index": index,
                    "name": text(pynvml.nvmlDeviceGetName(handle)),
                    "uuid": text(pynvml.nvmlDeviceGetUUID(handle)),
                    "memory_total": int(memory.total),
                    "memory_used": int(memory.used),
                    "utilization": read(
                        lambda h=handle: float(pynvml.nvmlDeviceGetUtilizationRates(h).gpu)
                    ),
                    "temperature": read(
                        lambda h=handle: float(
                            pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU)
                        )
                    ),
                    "power_w": read(lambda h=handle: pynvml.nvmlDeviceGetPowerUsage(h) / 1000.0),
                }
            )
        return found
    finally:
        pynvml.nvmlShutdown()


def recipe_job(root: Path, model: Path, data: Path, *, gpu: bool, steps: int) -> dict[str, Any]:
    """One recipe run as a job on one GPU (or the CPU) would run it."""
    work = root / "job"
    work.mkdir()
    (work / "config.yaml").write_text(
        f"""\
base_model: {model}
dataset: {{path: {data}, format: text}}
lora: {{r: 16, alpha: 32, dropout: 0.0}}
training:
  max_steps: {steps}
  batch_size: 16
  learning_rate: 0.002
  lr_scheduler: constant
  eval_split: 0.05
  checkpoint_steps: {max(steps // 2, 1)}
  max_seq_length: 128
  precision: auto
output: {{merge: true}}
"""
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPARKTRAINER_")}
    env.update(
        SPARKTRAINER_OUTPUT_DIR=str(work / "output"),
        SPARKTRAINER_METRICS_FILE=str(work / "metrics.jsonl"),
        SPARKTRAINER_REASON_FILE=str(work / "reason.txt"),
    )
    if gpu:
        env.update(CUDA_VISIBLE_DEVICES="0", CUDA_DEVICE_ORDER="PCI_BUS_ID")
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "spark_trainer.recipes.text_lora", "--config", "config.yaml"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    seconds = time.perf_counter() - started
    points = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]
    losses = [p["metrics"]["loss"] for p in points if "loss" in p.get("metrics", {})]
    output = work / "output"
    result = {
        "exit_code": done.returncode,
        "seconds": round(seconds, 1),
        "steps_logged": len(losses),
        "first_losses": losses[:3],
        "last_losses": losses[-3:],
        "adapter_saved": (output / "adapter_model.safetensors").is_file(),
        "merged_saved": (output / "merged" / "config.json").is_file(),
        "summary": next(
            (line for line in done.stdout.splitlines() if line.startswith("text_lora: done ")),
            None,
        ),
        "stderr_tail": done.stderr[-1500:],
    }
    result["ok"] = bool(
        done.returncode == 0
        and result["adapter_saved"]
        and len(losses) >= 6
        and sum(losses[-3:]) < sum(losses[:3])
    )
    return result


# The evaluation job's scoring phase without its spec and config parsing (pydantic is not
# on the device): the same reader, selection, scorer and summary the job runs.
JOB_SCORER = """
import json, sys
from pathlib import Path
from spark_trainer.evaluations.scorers import mmlu
from spark_trainer.evaluations.scorers.lm import LoadedLM
model_dir, path, shots, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
work, requested = mmlu.select(
    mmlu.read_file(Path(path), "test"), subjects=None, split="test", dev=None,
    num_shots=shots, max_per_subject=None,
)
scorer = mmlu.lm_scorer(LoadedLM.load(Path(model_dir)), batch)
scored, seconds, cpu = mmlu.score(work, scorer, batch=batch, progress=lambda n: None)
summary = mmlu.summarize(scored, requested, shots, seconds, cpu)
print(json.dumps({"questions": summary["questions"], "scoring_seconds": seconds,
                  "scoring_cpu_seconds": cpu, "accuracy": summary["overall_accuracy"]}))
"""


def mmlu_scoring(
    root: Path, model: Path, *, per_subject: int, shots: int, batch: int, rounds: int
) -> dict[str, Any]:
    """Questions/s of the scoring phase, the job's scorer against the bare loop, rounds
    alternating and each side's best kept."""
    from tests.tinylm import WORDS as words

    questions = root / "mmlu.jsonl"
    total = _questions(questions, list(words), per_subject, shots)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPARKTRAINER_")}
    env["PYTHONPATH"] = f"{REPO / 'src'}:{REPO}"
    args = [str(model), str(questions), str(shots), str(batch)]
    sides = {
        "job": [sys.executable, "-c", JOB_SCORER, *args],
        "bare": [sys.executable, str(REPO / "bench" / "_bare_mmlu.py"), *args],
    }
    best: dict[str, dict[str, Any]] = {}
    for _ in range(rounds):
        for side, command in sides.items():
            done = subprocess.run(
                command, env=env, capture_output=True, text=True, timeout=300, check=False
            )
            if done.returncode != 0:
                return {"error": f"{side} exited {done.returncode}", "stderr": done.stderr[-1500:]}
            figures = json.loads(done.stdout.strip().splitlines()[-1])
            if side not in best or figures["scoring_seconds"] < best[side]["scoring_seconds"]:
                best[side] = figures
    job_qps = total / best["job"]["scoring_seconds"]
    bare_qps = total / best["bare"]["scoring_seconds"]
    return {
        "questions": total,
        "subjects": len(SUBJECTS),
        "num_shots": shots,
        "batch": batch,
        "job_questions_per_s": round(job_qps, 1),
        "bare_questions_per_s": round(bare_qps, 1),
        "overhead_pct": round(100 * (bare_qps / job_qps - 1), 1),
        "job_accuracy": best["job"]["accuracy"],
        "bare_accuracy": best["bare"]["accuracy"],
    }


def main() -> int:
    import torch

    gpu = torch.cuda.is_available()
    out = Path(os.environ["OUT"]) if os.environ.get("OUT") else None
    summary: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0) if gpu else "cpu",
        "gpus_visible": torch.cuda.device_count() if gpu else 0,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "bf16": bool(gpu and torch.cuda.is_bf16_supported()),
    }
    import peft
    import transformers

    summary["transformers"] = transformers.__version__
    summary["peft"] = peft.__version__
    summary["nvml"] = nvml_readings()

    def save() -> None:
        # After every stage: a run cut short by the time limit still leaves its figures.
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            (out / "device_check.json").write_text(json.dumps(summary, indent=2) + "\n")

    save()
    precision = "bf16" if summary["bf16"] else ("fp16" if gpu else "fp32")
    with tempfile.TemporaryDirectory(prefix="device-check-") as tmp:
        root = Path(tmp)
        tiny = build_tiny_lm(root / "tiny")
        data = write_data(root / "data.jsonl", WORDS, sentences=2000 if gpu else 400)
        bigger = build_gpt2_small(root / "gpt2-small", tiny, small=not gpu)
        cases = [
            ("tiny gpt2, fp32", tiny, "fp32", 150 if gpu else 10, 8, 64),
            (f"gpt2-small shape, {precision}", bigger, precision, 100 if gpu else 4, 16, 256),
        ]
        summary["recipe_vs_bare"] = {}
        for name, model, case_precision, steps, batch, seq_len in cases:
            case_root = root / name.split(",")[0].replace(" ", "-")
            case_root.mkdir()
            print(f"recipe vs bare Trainer: {name}, {steps} steps", flush=True)
            figures = compare(
                case_root,
                model,
                data,
                steps=steps,
                batch=batch,
                seq_len=seq_len,
                rounds=2 if gpu else 1,
                precision=case_precision,
            )
            summary["recipe_vs_bare"][name] = {k: round(v, 3) for k, v in figures.items()}
            save()
        print("one recipe job on one GPU" if gpu else "one recipe job on the CPU", flush=True)
        summary["recipe_job"] = recipe_job(root, bigger, data, gpu=gpu, steps=60 if gpu else 8)
        save()
        print("MMLU scoring: the evaluation job's scorer vs a bare loop", flush=True)
        summary["mmlu_scoring"] = mmlu_scoring(
            root,
            bigger,
            per_subject=500 if gpu else 10,
            shots=5 if gpu else 1,
            batch=32 if gpu else 4,
            rounds=2,
        )
        summary["nvml_after"] = nvml_readings()
    save()
    print(json.dumps(summary, indent=2))
    ok = (
        summary["recipe_job"]["ok"]
        and all(v["ratio"] > 0 for v in summary["recipe_vs_bare"].values())
        and "error" not in summary["mmlu_scoring"]
    )
    print("DEVICE CHECK " + ("PASSED" if ok else "FAILED"), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
