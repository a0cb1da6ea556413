"""The baseline for bench/recipe.py: the same LoRA training written as a bare
``transformers.Trainer`` script, with nothing of SparkTrainer in it.

``python bench/_bare_trainer.py MODEL_DIR DATA.jsonl STEPS BATCH SEQ_LEN [PRECISION]``
(fp32, the default, bf16 or fp16) prints one JSON line: ``{"train_runtime": s, "tokens_seen": n}``.
"""

from __future__ import annotations

import json
import sys
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    DataCollatorForLanguageModeling,
    Trainer,
    TrainingArguments,
)


def main() -> None:
    model_dir, data_path, steps, batch, seq_len = sys.argv[1:6]
    precision = sys.argv[6] if len(sys.argv) > 6 else "fp32"
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    with open(data_path, encoding="utf-8") as handle:  # noqa: PTH123
        texts = [json.loads(line)["text"] for line in handle if line.strip()]
    encoded = tokenizer(texts, truncation=True, max_length=int(seq_len) - 1)["input_ids"]
    # A list of examples is a map-style dataset as far as the Trainer is concerned.
    dataset = [{"input_ids": [*ids, tokenizer.eos_token_id]} for ids in encoded]
    lora = LoraConfig(
        r=8,
        lora_alpha=16,
        lora_dropout=0.05,
        target_modules=["c_attn"],
        fan_in_fan_out=True,
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, lora)
    args = TrainingArguments(
        output_dir="bare-checkpoints",
        max_steps=int(steps),
        per_device_train_batch_size=int(batch),
        learning_rate=2e-4,
        lr_scheduler_type="cosine",
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        seed=42,
        include_num_input_tokens_seen="non_padding",
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        # As the recipe does: pinned host memory where batches go to a GPU.
        dataloader_pin_memory=torch.cuda.is_available(),
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
    )
    started = time.perf_counter()
    trainer.train()
    elapsed = time.perf_counter() - started
    print(
        json.dumps({"train_runtime": elapsed, "tokens_seen": trainer.state.num_input_tokens_seen})
    )


if __name__ == "__main__":
    main()
