"""The recipe's entry point: check everything, then train with ``transformers.Trainer``.

Order matters: the config, the dataset's records and the base model are all checked
before the first step, so a mistake fails the job in seconds with a message naming it
(stderr, and the job's ``status_reason``). Only then, with several GPUs, does the recipe
relaunch itself under ``torch.distributed.run``, one process per GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from spark_trainer.recipes.text_lora import data
from spark_trainer.recipes.text_lora.config import RecipeConfig, load_config
from spark_trainer.recipes.text_lora.errors import EXIT_INVALID, RecipeError, report
from spark_trainer.recipes.text_lora.sources import BaseModel, dataset_path, resolve_base_model

# 128 + SIGTERM, what a shell reports for a process the signal ended.
EXIT_TERMINATED = 128 + signal.SIGTERM
METADATA_FILE = "sparktrainer.json"
MERGED_DIR = "merged"

# Target modules per architecture (config.model_type) where peft's own table has none or
# a narrower choice; anything else falls back to peft's table.
TARGET_MODULES: dict[str, list[str]] = {
    "gpt2": ["c_attn"],
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "mistral": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "gemma": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "gpt_neox": ["query_key_value"],
    "falcon": ["query_key_value"],
    "bloom": ["query_key_value"],
    "opt": ["q_proj", "v_proj"],
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m spark_trainer.recipes.text_lora",
        description="LoRA fine-tuning of a causal language model (transformers + peft).",
    )
    parser.add_argument("--config", required=True, type=Path, help="the recipe's YAML file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        config = load_config(args.config)
        records = data.read_records(dataset_path(config))
        if not records:
            raise RecipeError("the dataset has no records")
        fmt = data.detect_format(records, config.dataset)
        examples = data.extract(records, fmt, config.dataset)
        base = resolve_base_model(config)
        gpus = _gpus_to_use()
        if gpus > 1:
            _relaunch(args, gpus)
        return _train(config, examples, fmt, base)
    except RecipeError as exc:
        report(str(exc))
        return EXIT_INVALID


def _world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def _is_main_process() -> bool:
    return os.environ.get("RANK", "0") == "0"


def _gpus_to_use() -> int:
    """GPUs for data parallelism: 0 when already one of the launcher's workers (or without
    CUDA), else every GPU the job was given (its CUDA_VISIBLE_DEVICES)."""
    if "LOCAL_RANK" in os.environ:
        return 0
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def relaunch_command(config: Path, gpus: int, python: str = sys.executable) -> list[str]:
    """The command that runs this recipe data parallel, one worker process per GPU.

    ``--standalone`` gives the job a rendezvous of its own on a free local port, so two
    multi-GPU jobs on one node do not meet; workers see the job's GPUs through the
    inherited CUDA_VISIBLE_DEVICES and each takes the one at its LOCAL_RANK.
    """
    return [
        python,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nnodes=1",
        f"--nproc-per-node={gpus}",
        "-m",
        "spark_trainer.recipes.text_lora",
        "--config",
        str(config),
    ]


def _relaunch(args: argparse.Namespace, gpus: int) -> None:
    """Replaces this process with ``torch.distributed.run``.

    exec, not a child: the job's process group (and its SIGTERM on cancel) reaches the
    launcher and the workers directly, and the exit status is theirs.
    """
    command = relaunch_command(args.config, gpus)
    print(f"text_lora: data parallel on {gpus} GPUs: {' '.join(command)}", flush=True)
    os.execv(command[0], command)  # noqa: S606 - our own interpreter, fixed arguments


def _precision(choice: str) -> tuple[bool, bool]:
    """(bf16, fp16) for the Trainer; auto is bf16 where the GPU has it, fp16 on other
    GPUs, fp32 on the CPU."""
    import torch

    cuda = torch.cuda.is_available()
    if choice == "auto":
        if not cuda:
            return False, False
        return (True, False) if torch.cuda.is_bf16_supported() else (False, True)
    if choice in ("bf16", "fp16") and not cuda:
        raise RecipeError(f"training.precision {choice} needs a GPU; this job has none")
    return choice == "bf16", choice == "fp16"


def _load_base(base: BaseModel, revision: str | None) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(base.location, revision=revision)
        model = AutoModelForCausalLM.from_pretrained(base.location, revision=revision)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RecipeError(f"base model '{base.reference}' could not be loaded: {first}") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, model


def _lora(config: RecipeConfig, model: Any) -> Any:
    from peft import LoraConfig, get_peft_model
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING
    from transformers.pytorch_utils import Conv1D

    settings = config.lora
    model_type = model.config.model_type
    targets: list[str] | None
    if settings.target_modules == "auto":
        targets = TARGET_MODULES.get(model_type) or list(
            TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.get(model_type, [])
        )
        if not targets:
            raise RecipeError(
                f"no default LoRA target modules for architecture '{model_type}': "
                "set lora.target_modules"
            )
    else:
        targets = list(settings.target_modules)
    matched = [
        module
        for name, module in model.named_modules()
        if any(name == t or name.endswith(f".{t}") for t in targets)
    ]
    if not matched:
        raise RecipeError(f"lora.target_modules {targets} match no module of the base model")
    lora_config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=targets,
        bias=settings.bias,
        task_type="CAUSAL_LM",
        # GPT-2 style models store these weights transposed (Conv1D).
        fan_in_fan_out=all(isinstance(m, Conv1D) for m in matched),
    )
    return get_peft_model(model, lora_config)


def _train(config: RecipeConfig, examples: list[data.Example], fmt: str, base: BaseModel) -> int:
    import torch
    from transformers import Trainer, TrainingArguments, set_seed
    from transformers.trainer_utils import get_last_checkpoint

    from spark_trainer.recipes.text_lora.callbacks import MetricsCallback, StopOnSignal

    training = config.training
    bf16, fp16 = _precision(training.precision)
    set_seed(training.seed)
    tokenizer, model = _load_base(base, config.revision)
    sequences = data.tokenize(
        data.render(examples, tokenizer),
        tokenizer,
        max_length=training.max_seq_length,
        packing=training.packing,
    )
    if not sequences:
        raise RecipeError("the dataset yields no examples of at least two tokens")
    train_examples, eval_examples = data.split(sequences, training.eval_split, training.seed)
    train_set = data.TokenDataset(train_examples)
    eval_set = data.TokenDataset(eval_examples) if eval_examples else None
    model = _lora(config, model)
    if training.gradient_checkpointing:
        model.enable_input_require_grads()

    checkpoint_dir = Path(config.output.checkpoint_dir).expanduser()
    output_dir = Path(os.environ.get("SPARKTRAINER_OUTPUT_DIR", "output"))
    warmup: float = training.warmup_ratio or training.warmup_steps
    arguments = TrainingArguments(
        output_dir=str(checkpoint_dir),
        num_train_epochs=training.epochs,
        max_steps=training.max_steps or -1,
        per_device_train_batch_size=training.batch_size,
        per_device_eval_batch_size=training.batch_size,
        gradient_accumulation_steps=training.gradient_accumulation_steps,
        learning_rate=training.learning_rate,
        lr_scheduler_type=training.lr_scheduler,
        warmup_steps=warmup,
        weight_decay=training.weight_decay,
        max_grad_norm=training.max_grad_norm,
        seed=training.seed,
        data_seed=training.seed,
        bf16=bf16,
        fp16=fp16,
        eval_strategy="steps" if eval_set is not None else "no",
        eval_steps=training.eval_steps or training.checkpoint_steps,
        save_strategy="steps",
        save_steps=training.checkpoint_steps,
        save_total_limit=training.checkpoint_limit,
        logging_steps=training.logging_steps,
        gradient_checkpointing=training.gradient_checkpointing,
        include_num_input_tokens_seen="non_padding",
        report_to=[],
        disable_tqdm=True,
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
        remove_unused_columns=False,
        ddp_find_unused_parameters=False if _world_size() > 1 else None,
    )
    stopper = StopOnSignal()
    trainer = Trainer(
        model=model,
        args=arguments,
        train_dataset=train_set,
        eval_dataset=eval_set,
        data_collator=data.PadCollator(tokenizer.pad_token_id),
        callbacks=[MetricsCallback(), stopper],
    )
    resume: str | None = (
        get_last_checkpoint(str(checkpoint_dir))  # type: ignore[no-untyped-call]
        if checkpoint_dir.is_dir()
        else None
    )
    if resume and _is_main_process():
        print(f"text_lora: resuming from {resume}", flush=True)
    stopper.install()
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume)
    elapsed = time.perf_counter() - started
    if stopper.stopped:
        if _is_main_process():
            print(
                f"text_lora: stopped by signal after step {trainer.state.global_step}; "
                f"checkpoint saved in {checkpoint_dir}",
                flush=True,
            )
        return EXIT_TERMINATED
    if _is_main_process():
        _save(trainer, tokenizer, config, base, fmt, output_dir)
        summary = {
            "train_runtime": round(elapsed, 3),
            "train_loss": result.training_loss,
            "global_step": trainer.state.global_step,
            "tokens_seen": int(trainer.state.num_input_tokens_seen),
            "train_tokens": train_set.token_count(),
            "device": "cuda" if torch.cuda.is_available() else "cpu",
        }
        print("text_lora: done " + json.dumps(summary), flush=True)
    return 0


def _save(
    trainer: Any, tokenizer: Any, config: RecipeConfig, base: BaseModel, fmt: str, output: Path
) -> None:
    """Adapter and tokenizer at the top of the output directory (loadable with
    ``PeftModel.from_pretrained``), the merged model in ``merged/`` when asked, and
    ``sparktrainer.json`` saying what was trained from what."""
    model = trainer.model
    output.mkdir(parents=True, exist_ok=True)
    # The adapter names its base as the config did (a model id, hub id or path), not the
    # job's private cache path.
    for adapter in model.peft_config.values():
        adapter.base_model_name_or_path = base.reference
    model.save_pretrained(str(output))
    tokenizer.save_pretrained(str(output))
    if config.output.merge:
        merged = model.merge_and_unload()
        merged.save_pretrained(str(output / MERGED_DIR))
        tokenizer.save_pretrained(str(output / MERGED_DIR))
    metadata = {
        "recipe": "text_lora",
        "base_model": base.reference,
        "base_model_id": base.registered_id,
        "dataset_format": fmt,
        "adapter": ".",
        "merged": MERGED_DIR if config.output.merge else None,
        "config": config.as_dict(),
    }
    (output / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
