"""The evaluation job's program: ``python -m spark_trainer.evaluations.run --spec JSON``.

It scores one model on one benchmark, reports progress as job metrics
(``questions_done``, ``questions_total``) through ``sparktrainer.log``, and writes its
results to ``results.json`` in the job's output directory (per-item detail, where there
is any, to ``predictions.jsonl`` next to it), which the server's result collector reads
once the job has ended. Any failure exits non-zero with the reason on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from spark_trainer.evaluations.configs import CocoConfig, MmluConfig, SafetyConfig
from spark_trainer.evaluations.spec import PREDICTIONS_FILE, RESULTS_FILE, RunSpec, output_dir
from spark_trainer.kit.benchmarks import Benchmark

Progress = Callable[[int], None]


def _reporter(total: int) -> Progress:
    import sparktrainer

    sparktrainer.log({"questions_done": 0, "questions_total": total}, step=0)

    def report(done: int) -> None:
        sparktrainer.log({"questions_done": done, "questions_total": total}, step=done)

    return report


def _load_lm(spec: RunSpec, workdir: Path) -> Any:
    from spark_trainer.evaluations.scorers.lm import LoadedLM

    assert spec.model is not None
    model_dir = spec.model.materialize(workdir / "model")
    base_dir = spec.base_model.materialize(workdir / "base") if spec.base_model else None
    return LoadedLM.load(model_dir, base_dir)


def _endpoint_token(spec: RunSpec) -> str | None:
    # A deployment's endpoint takes the job's own token (its owner's deployments only).
    return os.environ.get("SPARKTRAINER_JOB_TOKEN") if spec.endpoint_job_token else None


def run_mmlu(spec: RunSpec, workdir: Path, out: Path, progress: ProgressFactory) -> dict[str, Any]:
    from spark_trainer.evaluations.scorers import mmlu

    config = MmluConfig.model_validate(spec.config)
    questions = spec.datasets.get("questions")
    if questions is None:
        splits = mmlu.load_hub(config.split)
    else:
        splits = mmlu.read_file(Path(questions.path), config.split)
    dev_file = spec.datasets.get("dev")
    dev = mmlu.read_file(Path(dev_file.path), "dev").get("dev") if dev_file else None
    if dev_file is not None and dev is None:
        raise mmlu.DataError("the dev dataset has no 'dev' split")
    work, requested = mmlu.select(
        splits,
        subjects=config.subjects,
        split=config.split,
        dev=dev,
        num_shots=config.num_shots,
        max_per_subject=config.max_questions_per_subject,
    )
    report = progress(len(work))
    if spec.endpoint_url is not None:
        scorer = mmlu.endpoint_scorer(
            spec.endpoint_url, config.endpoint_model, token=_endpoint_token(spec)
        )
    else:
        scorer = mmlu.lm_scorer(_load_lm(spec, workdir), config.batch_size)
    scored, seconds, cpu_seconds = mmlu.score(
        work, scorer, batch=config.batch_size, progress=report
    )
    with (out / PREDICTIONS_FILE).open("w", encoding="utf-8") as handle:
        for item in scored:
            row = {
                "subject": item.question.subject,
                "answer": mmlu.LETTERS[item.question.answer],
                "predicted": mmlu.LETTERS[item.predicted],
                "logprobs": list(item.logprobs),
            }
            handle.write(json.dumps(row) + "\n")
    return mmlu.summarize(scored, requested, config.num_shots, seconds, cpu_seconds)


def run_coco(spec: RunSpec, progress: ProgressFactory) -> dict[str, Any]:
    from spark_trainer.evaluations.scorers import coco

    config = CocoConfig.model_validate(spec.config)
    annotations = Path(spec.datasets["annotations"].path)
    predictions = Path(spec.datasets["predictions"].path)
    report = progress(1)
    if config.task == "captions":
        results = coco.captioning(annotations, predictions, meteor=config.meteor)
    else:
        results = coco.detection(annotations, predictions, config.task)
    report(1)
    return results


def run_safety(
    spec: RunSpec, workdir: Path, out: Path, progress: ProgressFactory
) -> dict[str, Any]:
    from spark_trainer.evaluations.scorers import safety

    config = SafetyConfig.model_validate(spec.config)
    probes = safety.builtin_probes() if config.probe_set == "builtin" else []
    custom = spec.datasets.get("probes")
    if custom is not None:
        probes += safety.read_probes(Path(custom.path))
    if config.categories is not None:
        probes = [p for p in probes if p.category in config.categories]
    probes = safety.expand_variants(probes, config.variants)[: config.max_probes]
    if not probes:
        raise safety.ProbeDataError("no probes match the requested categories and variants")
    report = progress(len(probes))
    complete: Callable[[str], str]
    if spec.endpoint_url is not None:
        complete = safety.endpoint_completer(
            spec.endpoint_url,
            config.endpoint_model,
            config.max_new_tokens,
            token=_endpoint_token(spec),
        )
    else:
        lm = _load_lm(spec, workdir)

        def complete(prompt: str) -> str:
            text: str = lm.generate(prompt, config.max_new_tokens)
            return text

    judged = safety.run(probes, complete, report)
    with (out / PREDICTIONS_FILE).open("w", encoding="utf-8") as handle:
        for item in judged:
            row = {
                "id": item.probe.id,
                "kind": item.probe.kind,
                "category": item.probe.category,
                "variant": item.probe.variant,
                "completion": item.completion,
                "refused": item.refused,
            }
            handle.write(json.dumps(row) + "\n")
    return safety.summarize(judged, config.worst_examples)


ProgressFactory = Callable[[int], Progress]


def evaluate(
    spec: RunSpec, *, workdir: Path, out: Path, progress: ProgressFactory = _reporter
) -> dict[str, Any]:
    """Runs the evaluation and writes ``results.json`` into ``out``; returns the results."""
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    if spec.benchmark == Benchmark.MMLU:
        results = run_mmlu(spec, workdir, out, progress)
    elif spec.benchmark == Benchmark.COCO:
        results = run_coco(spec, progress)
    else:
        results = run_safety(spec, workdir, out, progress)
    results["wall_seconds"] = round(time.perf_counter() - started, 3)
    # Written whole, then renamed: the collector never reads half a file.
    partial = out / f".{RESULTS_FILE}.partial"
    partial.write_text(json.dumps(results, indent=2, allow_nan=False), encoding="utf-8")
    partial.replace(out / RESULTS_FILE)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spark_trainer.evaluations.run")
    parser.add_argument("--spec", required=True, help="The run's specification, as JSON.")
    args = parser.parse_args(argv)
    spec = RunSpec.model_validate_json(args.spec)
    if spec.model is not None:
        import torch

        # More threads than cores only adds contention on a shared CPU machine.
        torch.set_num_threads(max(1, min(torch.get_num_threads(), 8)))
    try:
        results = evaluate(spec, workdir=Path.cwd(), out=output_dir())
    except (ValueError, KeyError, OSError) as exc:
        print(f"evaluation failed: {exc}", file=sys.stderr)
        return 2
    headline = {k: v for k, v in results.items() if isinstance(v, int | float | str)}
    print(json.dumps(headline))
    return 0


if __name__ == "__main__":
    sys.exit(main())
