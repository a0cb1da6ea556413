"""Closed-loop POST load with one fixed JSON body: wrk (Lua) when installed, else raw asyncio.

The same contract as ``bench/_loadgen.py`` (which only sends GETs): ``connections``
keep-alive connections, one request in flight each, for ``duration_s``; completed
requests per second and latency percentiles. The Python client reuses that module's
protocol class with a POST request and runs in its own process.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from bench._loadgen import (
    _MARKER,
    _WRK_LUA,
    LoadResult,
    _children_cpu_s,
    _Connection,
    _parse_marked_json,
    _percentile,
    _Stats,
    run_client_process,
)


def _lua_string(value: str) -> str:
    return json.dumps(value)  # a JSON string literal is a valid Lua string literal here


def run_post_load(
    url: str,
    body: bytes,
    *,
    generator: str,
    connections: int,
    duration_s: float,
    headers: dict[str, str],
) -> LoadResult:
    headers = {"Content-Type": "application/json", **headers}
    if generator == "wrk":
        return _run_wrk(url, body, connections, duration_s, headers)
    return _run_python(url, body, connections, duration_s, headers)


def _run_wrk(
    url: str, body: bytes, connections: int, duration_s: float, headers: dict[str, str]
) -> LoadResult:
    with tempfile.TemporaryDirectory(prefix="bench-wrk-post-") as tmp:
        script = Path(tmp) / "post.lua"
        lines = ['wrk.method = "POST"', f"wrk.body = {_lua_string(body.decode())}"]
        lines += [f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in headers.items()]
        script.write_text("\n".join(lines) + "\n" + _WRK_LUA)
        cmd = [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(duration_s))}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            url,
        ]
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
    url: str, body: bytes, connections: int, duration_s: float, headers: dict[str, str]
) -> LoadResult:
    with tempfile.TemporaryDirectory(prefix="bench-post-") as tmp:
        body_file = Path(tmp) / "body.json"
        body_file.write_bytes(body)
        args = ["--url", url, "--body-file", str(body_file)]
        args += ["--connections", str(connections), "--duration", str(duration_s)]
        return run_client_process("bench._post_load", args, headers, duration_s, "python POST load")


async def _client(
    url: str, body: bytes, connections: int, duration_s: float, headers: dict[str, str]
) -> None:
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    lines = [
        f"POST {target} HTTP/1.1",
        f"Host: {parts.netloc}",
        "Connection: keep-alive",
        f"Content-Length: {len(body)}",
    ]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    stats = _Stats(end=started + duration_s)
    closers: list[asyncio.Future[None]] = []
    for _ in range(connections):
        closed: asyncio.Future[None] = loop.create_future()
        closers.append(closed)
        await loop.create_connection(
            functools.partial(_Connection, request, stats, closed),
            parts.hostname or "127.0.0.1",
            parts.port or 80,
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
    parser.add_argument("--body-file", required=True)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--header", action="append", default=[], help="'Name: value'")
    args = parser.parse_args()
    headers = dict(h.split(": ", 1) for h in args.header)
    body = Path(args.body_file).read_bytes()
    loop_factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:
        pass
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(_client(args.url, body, args.connections, args.duration, headers))


if __name__ == "__main__":
    main()
