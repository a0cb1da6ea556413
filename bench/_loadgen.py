"""Closed-loop HTTP load: ``wrk`` when installed, else a raw-asyncio keep-alive client.

Each of ``connections`` keeps one HTTP/1.1 keep-alive connection with one request in
flight (no pipelining) for ``duration_s``; the figures are completed requests per
second and the latency percentiles of those requests.

The fallback client runs in its own process (``python -m bench._loadgen``) so it never
shares a GIL with the benchmark driver; it reads responses with a hand-written parser
over ``asyncio.Protocol`` (uvloop when available), which keeps it far cheaper per request
than an httpx client. It needs ``Content-Length`` responses (no chunked encoding).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit

GENERATORS = ("auto", "wrk", "python")
_MARKER = "BENCH_JSON "

# wrk calls done() once at the end; this prints the figures the benchmark needs as JSON.
_WRK_LUA = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%s{"requests":%d,"duration_us":%d,"status_errors":%d,"socket_errors":%d,'
    .. '"p50_us":%.1f,"p99_us":%.1f}\\n',
    "BENCH_JSON ", summary.requests, summary.duration, e.status,
    e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


@dataclass(frozen=True, slots=True)
class LoadResult:
    generator: str
    requests: int
    errors: int
    duration_s: float
    rps: float
    p50_ms: float
    p99_ms: float
    generator_cpu_s: float


def pick_generator(preference: str) -> str:
    """``auto`` picks wrk when it is on PATH, else the Python client."""
    if preference not in GENERATORS:
        raise ValueError(f"unknown generator {preference!r}; choose from {GENERATORS}")
    has_wrk = shutil.which("wrk") is not None
    if preference == "wrk" and not has_wrk:
        raise RuntimeError("--generator wrk asked for, but wrk is not on PATH")
    if preference == "auto":
        return "wrk" if has_wrk else "python"
    return preference


def run_load(
    url: str,
    *,
    generator: str,
    connections: int,
    duration_s: float,
    headers: dict[str, str] | None = None,
    wrk_threads: int = 1,
) -> LoadResult:
    """One measured run (warm up first by calling this with a short duration)."""
    headers = headers or {}
    if generator == "wrk":
        result = _run_wrk(url, connections, duration_s, headers, wrk_threads)
    elif generator == "python":
        result = _run_python(url, connections, duration_s, headers)
    else:
        raise ValueError(f"unknown generator {generator!r}")
    if result.requests == 0:
        raise RuntimeError(f"{generator}: no request to {url} completed in {duration_s:g}s")
    return result


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _parse_marked_json(output: str, what: str) -> dict[str, float]:
    for line in output.splitlines():
        if line.startswith(_MARKER):
            data: dict[str, float] = json.loads(line.removeprefix(_MARKER))
            return data
    raise RuntimeError(f"{what} printed no figures:\n{output[-2000:]}")


def _run_wrk(
    url: str, connections: int, duration_s: float, headers: dict[str, str], threads: int
) -> LoadResult:
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        script = Path(tmp) / "report.lua"
        script.write_text(_WRK_LUA)
        cmd = [
            "wrk",
            f"-t{max(1, min(threads, connections))}",
            f"-c{connections}",
            # wrk takes whole seconds only.
            f"-d{max(1, round(duration_s))}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
        ]
        for name, value in headers.items():
            cmd += ["-H", f"{name}: {value}"]
        cmd.append(url)
        cpu_before = _children_cpu_s()
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=duration_s + 60, check=False
        )
        cpu = _children_cpu_s() - cpu_before
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr or proc.stdout}")
    data = _parse_marked_json(proc.stdout, "wrk")
    duration = data["duration_us"] / 1e6
    requests = int(data["requests"])
    return LoadResult(
        generator="wrk",
        requests=requests,
        errors=int(data["status_errors"] + data["socket_errors"]),
        duration_s=duration,
        rps=requests / duration if duration else 0.0,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        generator_cpu_s=cpu,
    )


def _run_python(
    url: str, connections: int, duration_s: float, headers: dict[str, str]
) -> LoadResult:
    return run_client_process(
        "bench._loadgen",
        ["--url", url, "--connections", str(connections), "--duration", str(duration_s)],
        headers,
        duration_s,
        "python load generator",
    )


def run_client_process(
    module: str, args: list[str], headers: dict[str, str], duration_s: float, label: str
) -> LoadResult:
    """Runs a Python load client module in its own process and reads its JSON summary."""
    cmd = [sys.executable, "-m", module, *args]
    for name, value in headers.items():
        cmd += ["--header", f"{name}: {value}"]
    root = Path(__file__).resolve().parent.parent
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
    }
    cpu_before = _children_cpu_s()
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=duration_s + 60, check=False, env=env
    )
    cpu = _children_cpu_s() - cpu_before
    if proc.returncode != 0:
        raise RuntimeError(f"{label} failed ({proc.returncode}): {proc.stderr}")
    data = _parse_marked_json(proc.stdout, label)
    return LoadResult(
        generator="python",
        requests=int(data["requests"]),
        errors=int(data["errors"]),
        duration_s=data["duration_s"],
        rps=data["rps"],
        p50_ms=data["p50_ms"],
        p99_ms=data["p99_ms"],
        generator_cpu_s=cpu,
    )


# --- the Python client (runs in its own process) ----------------------------------------


class _Stats:
    def __init__(self, end: float) -> None:
        self.end = end
        self.latencies: list[float] = []
        self.errors = 0


class _Connection(asyncio.Protocol):
    def __init__(self, request: bytes, stats: _Stats, closed: asyncio.Future[None]) -> None:
        self.request = request
        self.stats = stats
        self.closed = closed
        self.buffer = bytearray()
        self.need: int | None = None
        self.status = 0
        self.sent_at = 0.0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self.transport = cast(asyncio.Transport, transport)
        self._send()

    def _send(self) -> None:
        assert self.transport is not None
        self.sent_at = time.perf_counter()
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        try:
            self._received(data)
        except Exception as exc:
            print(f"load generator: bad response ({exc!r}); connection dropped", file=sys.stderr)
            self.stats.errors += 1
            if self.transport is not None:
                self.transport.close()

    def _received(self, data: bytes) -> None:
        self.buffer += data
        if self.need is None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).lower()
            self.status = int(head[9:12])
            at = head.find(b"\r\ncontent-length:")
            if at < 0:
                raise RuntimeError("response without Content-Length; not supported")
            stop = head.find(b"\r\n", at + 2)
            length = int(head[at + 17 : stop if stop >= 0 else len(head)])
            self.need = end + 4 + length
        if len(self.buffer) < self.need:
            return
        now = time.perf_counter()
        del self.buffer[: self.need]
        self.need = None
        if now <= self.stats.end:
            self.stats.latencies.append(now - self.sent_at)
            if not 200 <= self.status < 400:
                self.stats.errors += 1
            self._send()
        elif self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if time.perf_counter() < self.stats.end:
            self.stats.errors += 1  # the server closed a keep-alive connection early
        if not self.closed.done():
            self.closed.set_result(None)


def _percentile(sorted_values: list[float], pct: float) -> float:
    if not sorted_values:
        return math.nan
    index = min(len(sorted_values) - 1, max(0, math.ceil(pct / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


async def _client(url: str, connections: int, duration_s: float, headers: dict[str, str]) -> None:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or 80
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    lines = [f"GET {target} HTTP/1.1", f"Host: {parts.netloc}", "Connection: keep-alive"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()

    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    stats = _Stats(end=started + duration_s)
    closers: list[asyncio.Future[None]] = []
    for _ in range(connections):
        closed: asyncio.Future[None] = loop.create_future()
        closers.append(closed)
        await loop.create_connection(
            functools.partial(_Connection, request, stats, closed), host, port
        )
    try:
        await asyncio.wait_for(asyncio.gather(*closers), timeout=duration_s + 30)
    except TimeoutError:
        stats.errors += sum(not c.done() for c in closers)
    elapsed = min(time.perf_counter(), stats.end) - started
    latencies = sorted(stats.latencies)
    figures = {
        "requests": len(latencies),
        "errors": stats.errors,
        "duration_s": elapsed,
        "rps": len(latencies) / elapsed if elapsed > 0 else 0.0,
        "p50_ms": _percentile(latencies, 50) * 1000,
        "p99_ms": _percentile(latencies, 99) * 1000,
    }
    print(_MARKER + json.dumps(figures), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--header", action="append", default=[], help="'Name: value'")
    args = parser.parse_args()
    headers = dict(h.split(": ", 1) for h in args.header)
    loop_factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:
        pass
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(_client(args.url, args.connections, args.duration, headers))


if __name__ == "__main__":
    main()
