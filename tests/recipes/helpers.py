"""Uploading a Hugging Face directory as a model, and reading SSE metrics, for recipe tests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx


def model_files(directory: Path) -> list[tuple[str, tuple[str, bytes, str]]]:
    """One ``file`` part per file, named by its path in the directory (``curl -F
    "file=@config.json;filename=config.json"``)."""
    return [
        ("file", (p.relative_to(directory).as_posix(), p.read_bytes(), "application/octet-stream"))
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    ]


def sse_metrics(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """The metric messages of an SSE stream, until its ``end`` event."""
    event = None
    for line in response.iter_lines():
        if line.startswith("event:"):
            event = line.partition(":")[2].strip()
        elif line.startswith("data:"):
            if event == "end":
                return
            yield json.loads(line.partition(":")[2])
        elif not line:
            event = None
