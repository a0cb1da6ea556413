"""MMLU scoring written out independently of the code under test: the prompt format of
the benchmark and the log-likelihood of each answer letter, one question at a time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

LETTERS = "ABCD"


def prompt(subject: str, shots: list[dict[str, Any]], question: dict[str, Any]) -> str:
    def block(q: dict[str, Any], answer: bool) -> str:
        lines = [q["question"]] + [f"{L}. {c}" for L, c in zip(LETTERS, q["choices"], strict=True)]
        text = "\n".join(lines) + "\nAnswer:"
        return text + f" {LETTERS[q['answer']]}\n\n" if answer else text

    title = subject.replace("_", " ")
    head = f"The following are multiple choice questions (with answers) about {title}.\n\n"
    return head + "".join(block(s, True) for s in shots) + block(question, False)


def letter_logprobs(
    model_dir: Path, prompts: list[str], adapter: Path | None = None
) -> list[list[float]]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    model: Any = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter))
    model.eval()
    window = model.config.n_positions
    out = []
    with torch.no_grad():
        for text in prompts:
            context = tokenizer(text, add_special_tokens=False)["input_ids"]
            row = []
            for letter in LETTERS:
                # log p(" X" | prompt), summed over however many tokens " X" takes; the
                # model sees at most its window, the oldest tokens dropped.
                answer = tokenizer(f" {letter}", add_special_tokens=False)["input_ids"]
                sequence = context + answer
                inputs = sequence[:-1][-window:]
                logprobs = torch.log_softmax(model(input_ids=torch.tensor([inputs])).logits[0], -1)
                n = len(answer)
                row.append(sum(float(logprobs[-n + k, answer[k]]) for k in range(n)))
            out.append(row)
    return out
