"""Stream messages, encoded once and shared by every subscriber."""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cached_property
from typing import Any


class Frame:
    """One point's stream message. Its encodings are built on first use and kept: a point
    that no subscriber reads (ingestion with nobody watching, the usual case) costs its
    number and its values' text only, and one that many read is still encoded once."""

    __slots__ = ("_body", "_data", "_sse", "_step", "_with_id", "seq")

    def __init__(self, seq: int, step: int, body: str) -> None:
        self.seq = seq
        self._step = step
        # The values as JSON members, '"loss": 0.45, "lr": 0.0001'.
        self._body = body
        self._data: str | None = None
        self._sse: bytes | None = None
        self._with_id: str | None = None

    @classmethod
    def of(cls, seq: int, data: str) -> Frame:
        """A frame of a message already encoded."""
        frame = cls(seq, 0, "")
        frame._data = data
        return frame

    # Two threads may both build an encoding at once: both build the same text, and
    # either is kept.
    @property
    def data(self) -> str:
        """The message as the spec shows it: {"step": 100, "loss": 0.45, "lr": 0.0001}."""
        data = self._data
        if data is None:
            data = self._data = f'{{"step": {self._step}, {self._body}}}'
        return data

    @property
    def sse(self) -> bytes:
        sse = self._sse
        if sse is None:
            sse = self._sse = f"id: {self.seq}\ndata: {self.data}\n\n".encode()
        return sse

    @property
    def with_id(self) -> str:
        """The WebSocket message with its id (`?ids=true`)."""
        with_id = self._with_id
        if with_id is None:
            with_id = self._with_id = f'{{"id": {self.seq}, "data": {self.data}}}'
        return with_id


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
