"""How the recipe fails: one clear line, before any training where it can be known."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Exit status for a problem found before training (config, dataset, base model).
EXIT_INVALID = 2


class RecipeError(Exception):
    """A problem the user can fix; its message names the key, field, line or path."""


def report(message: str) -> None:
    """Writes ``message`` to stderr and, under SparkTrainer, to the job's reason file, whose
    first line the server appends to the job's ``status_reason``."""
    print(f"text_lora: error: {message}", file=sys.stderr, flush=True)
    reason_file = os.environ.get("SPARKTRAINER_REASON_FILE")
    if reason_file:
        try:
            Path(reason_file).write_text(message.replace("\n", " ") + "\n", encoding="utf-8")
        except OSError as exc:
            print(f"text_lora: could not write the reason file: {exc}", file=sys.stderr)
