"""A snapshot of this machine's CPU, memory, disk and network use (``GET /api/metrics``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psutil

from spark_trainer.kit.time import utcnow

# psutil.cpu_percent(interval=None) reports the CPU use since its previous call and answers
# a meaningless 0.0 the first time. Priming it here makes the first snapshot real without
# blocking a request for a sampling interval; each snapshot then covers the time since the
# one before it.
psutil.cpu_percent(interval=None)


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
        cpu_percent=psutil.cpu_percent(interval=None),
        memory_percent=psutil.virtual_memory().percent,
        disk_usage=psutil.disk_usage(str(_existing(data_dir.absolute()))).percent,
        # psutil answers None on a machine with no network interface: nothing was sent.
        network_io=NetworkCounters(
            bytes_sent=net.bytes_sent if net is not None else 0,
            bytes_recv=net.bytes_recv if net is not None else 0,
        ),
    )
