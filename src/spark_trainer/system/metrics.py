"""A snapshot of this machine's CPU, memory, disk and network use (``GET /api/metrics``)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psutil

from spark_trainer.kit.time import utcnow

# psutil.cpu_percent(interval=None) reports the CPU use since its previous call and answers
# a meaningless 0.0 the first time, or when the calls are too close together for the
# kernel's counters to have moved. Priming it at import covers most first snapshots; one
# that comes within MIN_CPU_SAMPLE_SECONDS of the previous sample waits out the rest of
# that interval (on a worker thread) rather than answer 0.0.
MIN_CPU_SAMPLE_SECONDS = 0.1
psutil.cpu_percent(interval=None)
_last_cpu_sample = time.monotonic()
_cpu_lock = threading.Lock()


def _cpu_percent() -> float:
    global _last_cpu_sample
    with _cpu_lock:
        waited = time.monotonic() - _last_cpu_sample
        if waited < MIN_CPU_SAMPLE_SECONDS:
            time.sleep(MIN_CPU_SAMPLE_SECONDS - waited)
        value = psutil.cpu_percent(interval=None)
        _last_cpu_sample = time.monotonic()
        return value


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
