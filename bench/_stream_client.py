"""Stream subscribers for metrics_stream: many SSE or WebSocket clients in one process.

``python -m bench._stream_client --port P --path /api/jobs/ID/stream --token T --subs N
--expected COUNT --protocol sse|ws --ready FILE --out PREFIX``

Raw asyncio protocols (uvloop when available), no HTTP library: each connection
de-chunks the SSE response (or de-frames WebSocket messages), pulls ``step`` and
``t_sent`` out of each message with one regular expression, and records
``time.time()`` at arrival - ``t_sent`` (the job wrote ``t_sent`` with ``time.time()``
on the same machine). It notes which steps arrived (a bitmap per connection), so missing
and repeated points are counted. A connection finishes at the stream's ``end`` message.

Writes ``PREFIX.json`` (per-connection counts) and ``PREFIX.lat`` (every latency in
seconds, float64), and touches FILE once every connection has its response headers
(a refused subscription, say a 500, counts as failed and receives nothing).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import re
import time
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

_SSE_MESSAGE = re.compile(rb'data: \{"step": (\d+), "t_sent": ([0-9.eE+-]+)\}')
# A message is one point, or with ?batch=true (protocol "ws") an array of them.
_WS_POINT = re.compile(rb'\{"step": (\d+), "t_sent": ([0-9.eE+-]+)\}')
_SSE_END = b"event: end"


class _Subscriber(asyncio.Protocol):
    def __init__(self, request: bytes, protocol: str, expected: int, latencies: array[float]):
        self.request = request
        self.ws = protocol in ("ws", "ws1")
        self.expected = expected
        self.latencies = latencies
        self.seen = bytearray(expected)
        self.received = 0
        self.duplicates = 0
        self.unexpected = 0
        self.ended = False
        self.failed = ""  # the status line of a refused subscription
        self.headers_done = False
        self.buffer = bytearray()
        self.body = bytearray()  # SSE: de-chunked bytes not yet parsed
        self.chunk_left = 0  # SSE: bytes left in the current chunk (then its CRLF)
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.headers_seen: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()

    # --- asyncio callbacks ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, hence no isinstance check.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.headers_seen.done():
            self.headers_seen.set_exception(ConnectionError("closed before the response"))
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        now = time.time()
        self.buffer += data
        if not self.headers_done:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(self.buffer[9:12])
            self.headers_done = True
            self.headers_seen.set_result(None)
            if status not in (b"200", b"101"):
                self.failed = bytes(self.buffer[: self.buffer.find(b"\r\n")]).decode(
                    errors="replace"
                )
                self._finish()
                return
            del self.buffer[: end + 4]
        if self.ws:
            self._ws_frames(now)
        else:
            self._sse_chunks()
            self._sse_messages(now)

    # --- SSE ----------------------------------------------------------------------------------

    def _sse_chunks(self) -> None:
        buf = self.buffer
        while buf:
            if self.chunk_left > 0:
                take = min(self.chunk_left, len(buf))
                self.body += buf[:take]
                del buf[:take]
                self.chunk_left -= take
                if self.chunk_left == 0:
                    self.chunk_left = -2  # the CRLF after the chunk's data
                continue
            if self.chunk_left < 0:
                if len(buf) < 2:
                    return
                del buf[:2]
                self.chunk_left = 0
                continue
            line_end = buf.find(b"\r\n")
            if line_end < 0:
                return
            size = int(bytes(buf[:line_end]).split(b";")[0], 16)
            del buf[: line_end + 2]
            if size == 0:
                self._finish()
                return
            self.chunk_left = size

    def _sse_messages(self, now: float) -> None:
        end = self.body.rfind(b"\n\n")
        if end < 0:
            return
        block = bytes(self.body[: end + 2])
        del self.body[: end + 2]
        for match in _SSE_MESSAGE.finditer(block):
            self._record(int(match.group(1)), float(match.group(2)), now)
        if _SSE_END in block:
            self._finish()

    # --- WebSocket ------------------------------------------------------------------------------

    def _ws_frames(self, now: float) -> None:
        buf = self.buffer
        while len(buf) >= 2:
            opcode = buf[0] & 0x0F
            length = buf[1] & 0x7F
            offset = 2
            if length == 126:
                if len(buf) < 4:
                    return
                length = int.from_bytes(buf[2:4], "big")
                offset = 4
            elif length == 127:
                if len(buf) < 10:
                    return
                length = int.from_bytes(buf[2:10], "big")
                offset = 10
            if len(buf) < offset + length:
                return
            payload = bytes(buf[offset : offset + length])
            del buf[: offset + length]
            if opcode == 0x1:
                matched = False
                for match in _WS_POINT.finditer(payload):
                    matched = True
                    self._record(int(match.group(1)), float(match.group(2)), now)
                if not matched and b'"event": "end"' in payload:
                    self.ended = True
                elif not matched:
                    self.unexpected += 1
            elif opcode == 0x9:  # ping: answer with a masked pong
                self._ws_send(0xA, payload)
            elif opcode == 0x8:  # close: answer, then hang up
                self._ws_send(0x8, payload[:2])
                self._finish()
                return

    def _ws_send(self, opcode: int, payload: bytes) -> None:
        assert self.transport is not None and len(payload) < 126
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.transport.write(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked)

    # --- bookkeeping ------------------------------------------------------------------------------

    def _record(self, step: int, sent: float, now: float) -> None:
        if step >= self.expected:
            self.unexpected += 1
            return
        if self.seen[step]:
            self.duplicates += 1
            return
        self.seen[step] = 1
        self.received += 1
        self.latencies.append(now - sent)

    def _finish(self) -> None:
        self.ended = True
        if self.transport is not None:
            self.transport.close()


def _request(args: argparse.Namespace) -> bytes:
    target = f"{args.path}?access_token={args.token}"
    if args.protocol == "ws":
        target += "&batch=true"  # as the TypeScript SDK (and so the dashboard) asks
    lines = [f"GET {target} HTTP/1.1", f"Host: 127.0.0.1:{args.port}"]
    if args.protocol in ("ws", "ws1"):
        key = base64.b64encode(os.urandom(16)).decode()
        lines += [
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ]
    else:
        lines += ["Accept: text/event-stream", "Connection: keep-alive"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def _main(args: argparse.Namespace) -> tuple[dict[str, list[Any]], array[float]]:
    loop = asyncio.get_running_loop()
    latencies: array[float] = array("d")
    subscribers: list[_Subscriber] = []

    async def connect(sub: _Subscriber) -> None:
        try:
            await loop.create_connection(lambda: sub, "127.0.0.1", args.port)
            await sub.headers_seen
        except OSError as exc:
            sub.failed = f"{type(exc).__name__}: {exc}"
            if not sub.closed.done():
                sub.closed.set_result(None)

    deadline = loop.time() + args.connect_timeout
    for start in range(0, args.subs, 50):  # a few at a time: the server's accept queue
        batch = [
            _Subscriber(_request(args), args.protocol, args.expected, latencies)
            for _ in range(start, min(args.subs, start + 50))
        ]
        subscribers += batch
        tasks = [asyncio.ensure_future(connect(sub)) for sub in batch]
        _, late = await asyncio.wait(tasks, timeout=max(0.0, deadline - loop.time()))
        for task in late:  # no response headers in time: a stalled server, not a slow client
            task.cancel()
        for sub in batch:
            if not sub.headers_done and not sub.failed:
                sub.failed = f"no response within {args.connect_timeout:g}s"
                sub._finish()
                if not sub.closed.done():
                    sub.closed.set_result(None)
    await asyncio.to_thread(Path(args.ready).touch)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(
            asyncio.gather(*(s.closed for s in subscribers)), timeout=args.timeout
        )
    for sub in subscribers:
        if sub.transport is not None and not sub.transport.is_closing():
            sub.transport.close()
    summary = {
        "received": [s.received for s in subscribers],
        "duplicates": [s.duplicates for s in subscribers],
        "unexpected": [s.unexpected for s in subscribers],
        "ended": [int(s.ended) for s in subscribers],
        "failed": [s.failed for s in subscribers if s.failed],
    }
    return summary, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--subs", type=int, required=True)
    parser.add_argument("--expected", type=int, required=True)
    # ws: one message per server wake-up (?batch=true); ws1: one message per point.
    parser.add_argument("--protocol", choices=("sse", "ws", "ws1"), default="sse")
    parser.add_argument("--ready", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--connect-timeout", type=float, default=90.0)
    args = parser.parse_args()
    loop_factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:
        pass
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        summary, latencies = runner.run(_main(args))
    Path(args.out + ".json").write_text(json.dumps(summary))
    with Path(args.out + ".lat").open("wb") as handle:
        latencies.tofile(handle)


if __name__ == "__main__":
    main()
