"""A tiny causal language model built offline, for tests that train, serve or evaluate.

These machines cannot reach a model hub, so the tests make their own model: a byte-level
BPE tokenizer trained on generated text and a 2-layer GPT-2 with random weights, saved as
an ordinary Hugging Face directory (``config.json``, ``model.safetensors``, tokenizer
files) that ``from_pretrained(path, local_files_only=True)`` loads like any other.
Building it takes a few seconds, so the ``tiny_lm`` fixture builds it once per session.
"""

from __future__ import annotations

import random
from pathlib import Path

WORDS = [
    "the",
    "model",
    "learns",
    "to",
    "answer",
    "questions",
    "about",
    "science",
    "history",
    "and",
    "mathematics",
    "a",
    "b",
    "c",
    "d",
    "yes",
    "no",
    "true",
    "false",
    "question",
    "answer",
    "choice",
    "because",
    "therefore",
]


def sample_text(rng: random.Random, lines: int) -> list[str]:
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 16))) for _ in range(lines)]


def build_tiny_lm(directory: Path, *, seed: int = 0) -> Path:
    """Writes a tiny GPT-2 and its tokenizer into ``directory`` and returns it."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    rng = random.Random(seed)
    torch.manual_seed(seed)
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=350,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(sample_text(rng, 2000), trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    )
    config = GPT2Config(
        vocab_size=fast.vocab_size,
        n_layer=2,
        n_head=2,
        n_embd=64,
        n_positions=128,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
    )
    model = GPT2LMHeadModel(config)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    fast.save_pretrained(directory)
    return directory
