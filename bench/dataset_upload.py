"""Dataset upload: throughput and server memory of ``POST /api/datasets``.

Starts the real server (``sparktrainer serve``, SQLite), then for each size streams a
multipart upload (``name`` + ``file``) from a generator, so neither side holds the file.
The figure of merit is upload MiB/s against the ceiling of what the upload must do
anyway, measured in the same run on the same disk: md5 of the same bytes plus writing
them to a file and fsyncing it, in one thread. The target ratio is >= 0.70. The file is
named ``.jsonl``, so the server also counts its lines as it would for a real dataset.
An untimed small upload warms the server up, and an untimed ceiling pass warms the page
cache, so neither measurement pays for first use.

Server memory is the peak RSS of the server process during each upload (the kernel's
high-water mark, reset before each upload where the kernel allows, else sampled every
10 ms). It must stay flat with the file size and under 150 MB; run two sizes to see it.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from bench._common import Result, wait_for_quiet
from bench._server import ADMIN_PASSWORD, running_server

NAME = "dataset_upload"
DESCRIPTION = "multipart upload MiB/s vs md5+write+fsync ceiling; server peak RSS per size"
TARGET_RATIO = 0.70
TARGET_RSS_MB = 150.0
MiB = 1024 * 1024
CHUNK = MiB
BOUNDARY = "sparktrainer-bench-boundary"
WARMUP_MIB = 8


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(NAME)
    group.add_argument(
        "--upload-mib",
        default=os.environ.get("SPARKTRAINER_BENCH_UPLOAD_MIB", "256,2048"),
        help="comma-separated upload sizes in MiB (default 256,2048) "
        "[env: SPARKTRAINER_BENCH_UPLOAD_MIB]",
    )


def _block() -> bytes:
    # Incompressible and newline-bearing like real data; the same block repeats, so the
    # client spends no CPU producing bytes.
    return os.urandom(CHUNK)


def _chunks(block: bytes, size_mib: int) -> Iterator[bytes]:
    for _ in range(size_mib):
        yield block


def _ceiling_mibps(block: bytes, size_mib: int, directory: Path) -> float:
    """md5 + write + fsync of the same bytes in one thread: the work an upload cannot skip."""
    path = directory / "ceiling.bin"
    started = time.perf_counter()
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("wb") as handle:
        for chunk in _chunks(block, size_mib):
            digest.update(chunk)
            handle.write(chunk)
        handle.flush()
        os.fsync(handle.fileno())
    elapsed = time.perf_counter() - started
    path.unlink()
    return size_mib / elapsed


def _multipart(block: bytes, size_mib: int, name: str) -> Iterator[bytes]:
    yield (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="name"\r\n\r\n{name}\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
        # A .jsonl name: the server counts lines as it would for a real dataset (it skips
        # that for binary files), so the figure is the dearer case.
        'filename="bench.jsonl"\r\nContent-Type: application/octet-stream\r\n\r\n'
    ).encode()
    yield from _chunks(block, size_mib)
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


class PeakRss:
    """The server's peak RSS over a window: the kernel's high-water mark (VmHWM, reset
    through /proc/PID/clear_refs) where available, else the largest 10 ms sample."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.pid = pid
        self._sampled = 0
        self.start_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._hwm = self._reset_hwm()

    def _reset_hwm(self) -> bool:
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        except OSError:
            return False
        return True

    def _read_hwm(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        return 0

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self._sampled = max(self._sampled, self.proc.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self._sampled = self.proc.memory_info().rss
        self.start_mb = self._sampled / 1e6
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def mb(self) -> float:
        peak = max(self._sampled, self._read_hwm() if self._hwm else 0)
        return peak / 1e6


@dataclass(frozen=True, slots=True)
class Upload:
    mibps: float
    peak_rss_mb: float
    growth_mb: float
    """Peak RSS minus RSS when the upload began: what the upload itself held."""
    server_cores: float
    body: dict[str, object]


def _upload(client: httpx.Client, token: str, block: bytes, size_mib: int, pid: int) -> Upload:
    proc = psutil.Process(pid)
    cpu_before = sum(proc.cpu_times()[:2])
    with PeakRss(pid) as rss:
        started = time.perf_counter()
        response = client.post(
            "/api/datasets",
            content=_multipart(block, size_mib, f"bench-{size_mib}"),
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
            },
        )
        elapsed = time.perf_counter() - started
    response.raise_for_status()
    server_cores = (sum(proc.cpu_times()[:2]) - cpu_before) / elapsed
    body: dict[str, object] = response.json()
    return Upload(size_mib / elapsed, rss.mb, rss.mb - rss.start_mb, server_cores, body)


def run(args: argparse.Namespace) -> list[Result]:
    sizes = [int(s) for s in args.upload_mib.split(",") if s.strip()]
    block = _block()
    results: list[Result] = []
    by_size: dict[int, Upload] = {}
    with tempfile.TemporaryDirectory(prefix="bench-upload-") as tmp:
        data_dir = Path(tmp) / "data"
        env = {"SPARKTRAINER_MAX_UPLOAD_BYTES": str(max(sizes) * MiB * 2)}
        with (
            running_server(data_dir, env=env) as server,
            httpx.Client(base_url=server.base_url, timeout=600) as client,
        ):
            login = client.post(
                "/api/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
            )
            login.raise_for_status()
            token = login.json()["access_token"]
            # Untimed: the first upload of a process pays for lazy imports and first
            # connections, which would weigh on whichever size came first.
            _upload(client, token, block, WARMUP_MIB, server.pid)
            idle_rss = psutil.Process(server.pid).memory_info().rss / 1e6
            for size in sizes:
                if args.quiet_wait > 0:
                    wait_for_quiet(args.quiet_wait)
                # Untimed first pass: on a VM, memory the guest has never touched costs a
                # fault into the host on first use, which would slow whichever of the two
                # measurements came first. Both run on warm pages this way.
                _ceiling_mibps(block, size, data_dir)
                ceiling = _ceiling_mibps(block, size, data_dir)
                up = _upload(client, token, block, size, server.pid)
                latest = up.body["latest_version"]
                assert isinstance(latest, dict) and latest["size"] == size * MiB, up.body
                ratio = up.mibps / ceiling
                by_size[size] = up
                print(
                    f"{NAME} {size} MiB: upload {up.mibps:.0f} MiB/s, md5+write+fsync ceiling "
                    f"{ceiling:.0f} MiB/s, ratio {ratio:.2f} (target >= {TARGET_RATIO:.2f}); "
                    f"server peak RSS {up.peak_rss_mb:.0f} MB (+{up.growth_mb:.0f} MB during "
                    f"the upload; idle {idle_rss:.0f} MB; target < {TARGET_RSS_MB:.0f}), "
                    f"server CPU {up.server_cores:.2f} cores",
                    flush=True,
                )
                results.append(
                    Result(
                        benchmark=NAME,
                        case=f"{size} MiB",
                        metrics={
                            "upload_MiB/s": up.mibps,
                            "ceiling_MiB/s": ceiling,
                            "ratio": ratio,
                            "peak_rss_MB": up.peak_rss_mb,
                            "rss_growth_MB": up.growth_mb,
                            "idle_rss_MB": idle_rss,
                            "srv_cores": up.server_cores,
                        },
                        info={
                            "ratio_met": str(ratio >= TARGET_RATIO).lower(),
                            "rss_met": str(up.peak_rss_mb < TARGET_RSS_MB).lower(),
                        },
                    )
                )
    if len(by_size) > 1:
        low, high = by_size[min(by_size)], by_size[max(by_size)]
        print(
            f"{NAME}: peak RSS {low.peak_rss_mb:.0f} MB (+{low.growth_mb:.0f}) at "
            f"{min(by_size)} MiB, {high.peak_rss_mb:.0f} MB (+{high.growth_mb:.0f}) at "
            f"{max(by_size)} MiB",
            flush=True,
        )
    return results
