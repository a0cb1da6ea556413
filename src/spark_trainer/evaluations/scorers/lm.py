"""A registered causal LM (or LoRA adapter) loaded with transformers, and the two things
evaluations ask of it: log-likelihoods of continuations and greedy completions."""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

ADAPTER_CONFIG = "adapter_config.json"


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _keeps_logits(model: Any) -> bool:
    # transformers' causal LMs take ``logits_to_keep``; a model's own code may not.
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(base.forward).parameters


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass
class LoadedLM:
    model: Any
    tokenizer: PreTrainedTokenizerBase
    device: torch.device
    max_length: int
    keeps_logits: bool = False

    @classmethod
    def load(cls, model_dir: Path, base_dir: Path | str | None = None) -> LoadedLM:
        """A full model directory, or an adapter directory (``adapter_config.json``) over
        ``base_dir`` (default: the base the adapter names)."""
        device = _device()
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        local = {"local_files_only": True} if os.environ.get("HF_HUB_OFFLINE") else {}
        adapter = (model_dir / ADAPTER_CONFIG).is_file()
        if adapter:
            from peft import PeftModel

            if base_dir is None:
                base_dir = json.loads((model_dir / ADAPTER_CONFIG).read_text())[
                    "base_model_name_or_path"
                ]
            base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=dtype, **local)
            model: Any = PeftModel.from_pretrained(base, str(model_dir))
            has_tokenizer = (model_dir / "tokenizer_config.json").is_file()
            tokenizer = AutoTokenizer.from_pretrained(
                model_dir if has_tokenizer else base_dir, **local
            )
        else:
            model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, **local)
            tokenizer = AutoTokenizer.from_pretrained(model_dir, **local)
        model.to(device)
        model.eval()
        config = model.config
        max_length = (
            getattr(config, "max_position_embeddings", None)
            or getattr(config, "n_positions", None)
            or 2048
        )
        return cls(model, tokenizer, device, int(max_length), _keeps_logits(model))

    def encode(self, text: str) -> list[int]:
        ids: list[int] = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return ids

    def _pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        if pad is None:
            pad = self.tokenizer.eos_token_id
        return int(pad or 0)

    @torch.inference_mode()
    def prefixed_next_token_logprobs(
        self, contexts: Sequence[list[int]], prefix: list[int], batch_size: int
    ) -> Iterator[tuple[float, torch.Tensor]]:
        """For each context: log p(prefix | context), and the log-probabilities of the
        token after context + prefix.

        One forward pass scores every continuation ``prefix + [t]`` at once (the answer
        letters of MMLU: ``" A"`` is one token in most vocabularies, or a space and the
        letter). Inputs longer than the model's window lose their oldest tokens (left
        truncation, as lm-evaluation-harness does). Batches are right-padded, so padding
        never precedes a real token and leaves its logits unchanged under causal attention.
        """
        pad = self._pad_id()
        n = len(prefix)
        for batch in _chunks(contexts, batch_size):
            rows = [(ids + prefix)[-self.max_length :] for ids in batch]
            width = max(len(r) for r in rows)
            input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for i, row in enumerate(rows):
                input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
                mask[i, : len(row)] = 1
            # Only the last n + 1 positions of each row are scored: projecting the rest
            # onto the vocabulary (and normalising it) was most of the head's work, and
            # no key/value cache is kept for a single pass.
            keep = torch.tensor(
                [list(range(len(row) - 1 - n, len(row))) for row in rows], dtype=torch.long
            )
            logits = self.model(
                input_ids=input_ids.to(self.device),
                attention_mask=mask.to(self.device),
                use_cache=False,
                **({"logits_to_keep": keep.to(self.device)} if self.keeps_logits else {}),
            ).logits
            if not self.keeps_logits:
                logits = logits.gather(
                    1, keep.to(self.device).unsqueeze(-1).expand(-1, -1, logits.shape[-1])
                )
            logprobs = torch.log_softmax(logits.float(), dim=-1).cpu()
            for i in range(len(rows)):
                prefix_logprob = sum(float(logprobs[i, k, prefix[k]]) for k in range(n))
                yield prefix_logprob, logprobs[i, n]

    @torch.inference_mode()
    def continuation_logprob(self, context: list[int], continuation: list[int]) -> float:
        """Sum of log p(continuation | context), for continuations of several tokens."""
        sequence = (context + continuation)[-(self.max_length + 1) :]
        ids = torch.tensor([sequence[:-1]], dtype=torch.long, device=self.device)
        logprobs = torch.log_softmax(self.model(input_ids=ids).logits[0].float(), dim=-1)
        n = len(continuation)
        targets = torch.tensor(sequence[-n:], device=self.device)
        return float(logprobs[-n:].gather(1, targets.unsqueeze(1)).sum())

    @torch.inference_mode()
    def generate(self, prompt: str, max_new_tokens: int) -> str:
        """The greedy completion of ``prompt`` (deterministic, so a rerun judges the same)."""
        budget = max(1, self.max_length - max_new_tokens)
        ids = self.encode(prompt)[-budget:]
        if not ids:
            ids = [self._pad_id()]
        input_ids = torch.tensor([ids], dtype=torch.long, device=self.device)
        output = self.model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            max_new_tokens=min(max_new_tokens, self.max_length - len(ids)),
            do_sample=False,
            pad_token_id=self._pad_id(),
        )
        text = self.tokenizer.decode(output[0, len(ids) :], skip_special_tokens=True)
        return str(text)
