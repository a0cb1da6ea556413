"""Reading the dataset into token sequences, with every record checked before training.

Records come from a JSONL file (one object a line), a JSON file (a list of objects) or a
plain text file (one example a non-empty line). Each record becomes one text through its
format — a ``text`` field, ``instruction``/``input``/``output`` through the prompt
template, or chat ``messages`` through the tokenizer's chat template — and a record
without the fields its format needs is an error naming the field and the line.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spark_trainer.recipes.text_lora.config import DatasetConfig
from spark_trainer.recipes.text_lora.errors import RecipeError

TEXT_SUFFIXES = {".txt", ".text"}


@dataclass(frozen=True, slots=True)
class Record:
    line: int
    """1-based line of the file the record starts on (its index + 1 in a JSON list)."""
    value: dict[str, Any]


def read_records(path: Path) -> list[Record]:
    if not path.is_file():
        raise RecipeError(f"dataset file '{path}' not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise RecipeError(f"dataset '{path}': not UTF-8 text ({exc})") from None
    if path.suffix.lower() in TEXT_SUFFIXES:
        return [
            Record(n, {"text": line})
            for n, line in enumerate(text.splitlines(), start=1)
            if line.strip()
        ]
    stripped = text.lstrip()
    if path.suffix.lower() == ".json" or stripped.startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RecipeError(
                f"dataset '{path}' line {exc.lineno}: invalid JSON: {exc.msg}"
            ) from None
        if not isinstance(data, list):
            raise RecipeError(f"dataset '{path}': a JSON dataset must be a list of objects")
        records = []
        for index, value in enumerate(data, start=1):
            if not isinstance(value, dict):
                raise RecipeError(f"dataset '{path}' record {index}: not a JSON object")
            records.append(Record(index, value))
        return records
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise RecipeError(f"dataset '{path}' line {number}: invalid JSON: {exc.msg}") from None
        if not isinstance(value, dict):
            raise RecipeError(f"dataset '{path}' line {number}: not a JSON object")
        records.append(Record(number, value))
    return records


def detect_format(records: Sequence[Record], config: DatasetConfig) -> str:
    if config.format != "auto":
        return config.format
    first = records[0].value
    if config.messages_field in first:
        return "chat"
    if "instruction" in first:
        return "instruction"
    if config.text_field in first:
        return "text"
    raise RecipeError(
        f"dataset line {records[0].line}: cannot tell its format from the keys "
        f"{sorted(first)}; expected a '{config.text_field}' field, 'instruction'/'output' "
        f"fields or a '{config.messages_field}' list (or set dataset.format)"
    )


def _string_field(record: Record, field: str, *, required: bool = True) -> str:
    value = record.value.get(field)
    if value is None:
        if required:
            raise RecipeError(f"dataset line {record.line}: missing field '{field}'")
        return ""
    if not isinstance(value, str):
        raise RecipeError(
            f"dataset line {record.line}: field '{field}' must be a string, "
            f"not {type(value).__name__}"
        )
    return value


def _messages(record: Record, field: str) -> list[dict[str, str]]:
    value = record.value.get(field)
    if value is None:
        raise RecipeError(f"dataset line {record.line}: missing field '{field}'")
    if not isinstance(value, list) or not value:
        raise RecipeError(f"dataset line {record.line}: field '{field}' must be a non-empty list")
    for i, message in enumerate(value):
        if (
            not isinstance(message, dict)
            or not isinstance(message.get("role"), str)
            or not isinstance(message.get("content"), str)
        ):
            raise RecipeError(
                f"dataset line {record.line}: {field}[{i}] needs string 'role' and 'content'"
            )
    return value


Example = str | list[dict[str, str]]


def extract(records: Sequence[Record], fmt: str, config: DatasetConfig) -> list[Example]:
    """Each record's training text (chat: its messages), checked field by field before
    any model is loaded; raises naming the first record that does not fit."""
    examples: list[Example] = []
    for record in records:
        if fmt == "text":
            examples.append(_string_field(record, config.text_field))
        elif fmt == "instruction":
            instruction = _string_field(record, "instruction")
            output = _string_field(record, "output")
            extra = _string_field(record, "input", required=False)
            template = config.prompt_template if extra else config.prompt_template_no_input
            try:
                examples.append(
                    template.format(instruction=instruction, input=extra, output=output)
                )
            except (KeyError, IndexError, ValueError) as exc:
                raise RecipeError(
                    f"key 'dataset.prompt_template': cannot be filled ({exc!r}); it may use "
                    "{instruction}, {input} and {output}"
                ) from None
        else:
            examples.append(_messages(record, config.messages_field))
    return examples


def render(examples: Sequence[Example], tokenizer: Any) -> list[str]:
    """Texts ready to tokenize: chat messages go through the tokenizer's chat template."""
    if any(not isinstance(e, str) for e in examples) and not getattr(
        tokenizer, "chat_template", None
    ):
        raise RecipeError(
            "dataset format 'chat' needs a tokenizer with a chat template; the base model's "
            "tokenizer has none (use format 'text' or 'instruction')"
        )
    return [
        e if isinstance(e, str) else str(tokenizer.apply_chat_template(e, tokenize=False))
        for e in examples
    ]


def tokenize(
    texts: Sequence[str], tokenizer: Any, *, max_length: int, packing: bool
) -> list[list[int]]:
    """Token ids per example, each ending in EOS. With packing, all examples are joined
    and cut into blocks of exactly ``max_length`` (the last partial block is dropped unless
    it is the only one), so no step is spent on padding."""
    eos = tokenizer.eos_token_id
    encoded = tokenizer(
        list(texts),
        add_special_tokens=True,
        truncation=not packing,
        max_length=None if packing else max_length - 1,
    )["input_ids"]
    sequences = [[*ids, eos] if eos is not None else ids for ids in encoded]
    if not packing:
        return [ids for ids in sequences if len(ids) > 1]
    stream = [token for ids in sequences for token in ids]
    blocks = [stream[i : i + max_length] for i in range(0, len(stream), max_length)]
    if len(blocks) > 1 and len(blocks[-1]) < max_length:
        blocks.pop()
    return blocks


def split(
    examples: list[list[int]], eval_fraction: float, seed: int
) -> tuple[list[list[int]], list[list[int]]]:
    """A seeded train/eval split; the eval part has at least one example when asked for."""
    if eval_fraction <= 0:
        return examples, []
    import random

    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)  # noqa: S311 - a data split, not a secret
    n_eval = max(1, round(len(examples) * eval_fraction))
    if n_eval >= len(examples):
        raise RecipeError(
            f"training.eval_split {eval_fraction} leaves no training examples "
            f"out of {len(examples)}"
        )
    held = set(order[:n_eval])
    train = [e for i, e in enumerate(examples) if i not in held]
    return train, [examples[i] for i in order[:n_eval]]


class TokenDataset:
    """A map-style dataset of token id lists, as the Trainer's data loader expects."""

    def __init__(self, examples: list[list[int]]) -> None:
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        return {"input_ids": self.examples[index]}

    def __iter__(self) -> Iterator[dict[str, list[int]]]:
        return (self[i] for i in range(len(self)))

    def token_count(self) -> int:
        return sum(len(e) for e in self.examples)


class PadCollator:
    """Pads a batch to its longest example; padding is masked out of attention and loss.

    (``DataCollatorForLanguageModeling`` masks by pad token id, which for GPT-2-style
    tokenizers is also EOS, so it would stop the model learning where texts end.)
    """

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, batch: list[dict[str, list[int]]]) -> dict[str, Any]:
        import torch

        longest = max(len(item["input_ids"]) for item in batch)
        ids = torch.full((len(batch), longest), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(batch), longest), dtype=torch.long)
        for row, item in enumerate(batch):
            tokens = item["input_ids"]
            ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
            mask[row, : len(tokens)] = 1
        labels = ids.masked_fill(mask == 0, -100)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}
