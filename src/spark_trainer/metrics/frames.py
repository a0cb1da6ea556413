"""Stream messages, encoded once and shared by every subscriber."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any


@dataclass(frozen=True, slots=True)
class Frame:
    seq: int
    # The message as the spec shows it: {"step": 100, "loss": 0.45, "lr": 0.0001, ...}
    data: str
    sse: bytes
    # The WebSocket message with its id (`?ids=true`), built once for every subscriber.
    with_id: str

    @classmethod
    def of(cls, seq: int, data: str) -> Frame:
        return cls(
            seq, data, f"id: {seq}\ndata: {data}\n\n".encode(), f'{{"id": {seq}, "data": {data}}}'
        )


class Chunk:
    """Consecutive frames delivered together: one hub tick, or a slice of one.

    Each encoding is joined on first use and then shared, so a tick costs one join per
    encoding whatever the number of subscribers, and each subscriber one write.
    """

    def __init__(self, frames: Sequence[Frame]) -> None:
        self.frames = frames
        self.first = frames[0].seq
        self.last = frames[-1].seq

    def after(self, cursor: int) -> Chunk:
        """The part of this chunk past ``cursor`` (itself when that is all of it)."""
        if cursor < self.first:
            return self
        return Chunk([f for f in self.frames if f.seq > cursor])

    @cached_property
    def sse(self) -> bytes:
        return b"".join(f.sse for f in self.frames)

    @cached_property
    def array(self) -> str:
        """The WebSocket message of ``?batch=true``: a JSON array of the points."""
        return f"[{', '.join(f.data for f in self.frames)}]"

    @cached_property
    def array_with_ids(self) -> str:
        return f"[{', '.join(f.with_id for f in self.frames)}]"


def sse_of(chunks: Sequence[Chunk]) -> bytes:
    return chunks[0].sse if len(chunks) == 1 else b"".join(c.sse for c in chunks)


def array_of(chunks: Sequence[Chunk], *, with_ids: bool) -> str:
    if len(chunks) == 1:
        return chunks[0].array_with_ids if with_ids else chunks[0].array
    frames = [f for c in chunks for f in c.frames]
    return f"[{', '.join(f.with_id if with_ids else f.data for f in frames)}]"


def encode_message(step: int, values: dict[str, float]) -> str:
    return json.dumps({"step": step, **values}, separators=(", ", ": "))


def end_payload(status: str, exit_code: int | None, reason: str | None) -> str:
    return json.dumps(
        {"event": "end", "status": status, "exit_code": exit_code, "reason": reason},
        separators=(", ", ": "),
    )


def sse_end(payload: str) -> bytes:
    # A named event, so a browser's onmessage sees only metrics; listen for "end" to stop.
    return f"event: end\ndata: {payload}\n\n".encode()


SSE_PING = b": keep-alive\n\n"
SSE_CLOSING = b": server shutting down\n\n"
# First bytes of every SSE stream: how long a browser waits before reconnecting (with
# Last-Event-ID), and a sign to any client that the subscription is in place.
SSE_OPEN = b"retry: 2000\n\n"


def decode(data: str) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(data)
    return decoded
