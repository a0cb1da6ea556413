"""A snapshot of this machine's CPU, memory, disk and network use (``GET /api/metrics``)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil

from spark_trainer.kit.time import utcnow

# The CPU use since the previous snapshot, from the kernel's counters. Not
# psutil.cpu_percent(interval=None): it keeps its previous sample per thread, so the first
# call on each of the thread pool's threads answers a meaningless 0.0. One sample for the
# process, taken at import; a snapshot within MIN_CPU_SAMPLE_SECONDS of the previous one
# waits out the rest of that interval (on a worker thread), when the counters have moved.
MIN_CPU_SAMPLE_SECONDS = 0.1
_cpu_lock = threading.Lock()
_last_cpu_times = psutil.cpu_times()
_last_cpu_sample = time.monotonic()


def _busy_and_total(times: Any) -> tuple[float, float]:
    # As psutil counts them: guest time is already in user time, iowait is idle.
    total = sum(times) - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)
    return total - times.idle - getattr(times, "iowait", 0.0), total


def _cpu_percent() -> float:
    global _last_cpu_times, _last_cpu_sample
    with _cpu_lock:
        waited = time.monotonic() - _last_cpu_sample
        if waited < MIN_CPU_SAMPLE_SECONDS:
            time.sleep(MIN_CPU_SAMPLE_SECONDS - waited)
        now = psutil.cpu_times()
        busy_before, total_before = _busy_and_total(_last_cpu_times)
        busy_now, total_now = _busy_and_total(now)
        _last_cpu_times, _last_cpu_sample = now, time.monotonic()
    elapsed = total_now - total_before
    if elapsed <= 0:
        return 0.0
    return round(min(100.0, max(0.0, (busy_now - busy_before) / elapsed * 100)), 1)


@dataclass(frozen=True, slots=True)
class NetworkCounters:
    bytes_sent: int
    bytes_recv: int


@dataclass(frozen=True, slots=True)
class SystemMetrics:
    timestamp: datetime  # UTC
    cpu_percent: float
    memory_percent: float
    disk_usage: float  # percent used of the filesystem holding the data directory
    network_io: NetworkCounters


def _existing(path: Path) -> Path:
    # The data directory may not exist yet; the filesystem it will live on is the one
    # holding its nearest existing ancestor.
    return next(candidate for candidate in (path, *path.parents) if candidate.exists())


def system_snapshot(data_dir: Path) -> SystemMetrics:
    net = psutil.net_io_counters()
    return SystemMetrics(
        timestamp=utcnow(),
        cpu_percent=_cpu_percent(),
        memory_percent=psutil.virtual_memory().percent,
        disk_usage=psutil.disk_usage(str(_existing(data_dir.absolute()))).percent,
        # psutil answers None on a machine with no network interface: nothing was sent.
        network_io=NetworkCounters(
            bytes_sent=net.bytes_sent if net is not None else 0,
            bytes_recv=net.bytes_recv if net is not None else 0,
        ),
    )
