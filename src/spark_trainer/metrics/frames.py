"""Stream messages, encoded once and shared by every subscriber."""

from __future__ import annotations

import json
from dataclasses import dataclass
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
