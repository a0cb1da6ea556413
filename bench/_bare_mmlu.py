"""The baseline for bench/evaluation.py: MMLU log-likelihood scoring written as a bare
``transformers`` loop, with nothing of SparkTrainer in it.

``python bench/_bare_mmlu.py MODEL_DIR QUESTIONS.jsonl NUM_SHOTS BATCH`` prints one JSON
line: ``{"questions": n, "scoring_seconds": s, "scoring_cpu_seconds": c, "accuracy": a}``
(wall and process CPU seconds of the scoring phase, as the job reports them). The same
method as the evaluation job: the original prompt format, one forward pass per question
over the prompt and the letters' shared prefix, right padding, the choice with the
highest log-likelihood of " A" … " D". Written the plain way: the model's default call
(logits at every position, a key/value cache built), which the job's scorer avoids.
"""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

LETTERS = "ABCD"


def block(row: dict[str, object], answer: bool) -> str:
    choices = row["choices"]
    assert isinstance(choices, list)
    lines = [str(row["question"])] + [f"{L}. {c}" for L, c in zip(LETTERS, choices, strict=True)]
    text = "\n".join(lines) + "\nAnswer:"
    return text + f" {LETTERS[int(str(row['answer']))]}\n\n" if answer else text


def main() -> None:
    model_dir, path, shots, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(max(1, min(torch.get_num_threads(), 8)))
    # On the device and in the dtype the job's scorer uses, so a GPU run compares like with like.
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(device).eval()
    window = model.config.n_positions
    with open(path, encoding="utf-8") as handle:  # noqa: PTH123
        rows = [json.loads(line) for line in handle if line.strip()]
    dev: dict[str, list[dict[str, object]]] = defaultdict(list)
    for row in rows:
        if row["split"] == "dev":
            dev[row["subject"]].append(row)
    tests = [row for row in rows if row["split"] == "test"]
    letters = [tokenizer(f" {x}", add_special_tokens=False)["input_ids"] for x in LETTERS]
    prefix, last = letters[0][:-1], [ids[-1] for ids in letters]
    pad = tokenizer.eos_token_id
    started, cpu_started = time.perf_counter(), time.process_time()
    correct = 0
    with torch.inference_mode():
        for start in range(0, len(tests), batch):
            chunk = tests[start : start + batch]
            texts = []
            for row in chunk:
                subject = str(row["subject"])
                head = (
                    "The following are multiple choice questions (with answers) about "
                    f"{subject.replace('_', ' ')}.\n\n"
                )
                examples = "".join(block(s, True) for s in dev[subject][:shots])
                texts.append(head + examples + block(row, False))
            ids = [
                (tokenizer(t, add_special_tokens=False)["input_ids"] + prefix)[-window:]
                for t in texts
            ]
            width = max(len(x) for x in ids)
            input_ids = torch.full((len(ids), width), pad, dtype=torch.long)
            mask = torch.zeros((len(ids), width), dtype=torch.long)
            for i, x in enumerate(ids):
                input_ids[i, : len(x)] = torch.tensor(x)
                mask[i, : len(x)] = 1
            logits = model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits
            logprobs = torch.log_softmax(logits.float(), dim=-1).cpu()
            for i, (row, x) in enumerate(zip(chunk, ids, strict=True)):
                scores = [float(logprobs[i, len(x) - 1, t]) for t in last]
                correct += int(max(range(4), key=scores.__getitem__) == int(row["answer"]))
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    print(
        json.dumps(
            {
                "questions": len(tests),
                "scoring_seconds": seconds,
                "scoring_cpu_seconds": cpu_seconds,
                "accuracy": correct / len(tests),
            }
        )
    )


if __name__ == "__main__":
    main()
