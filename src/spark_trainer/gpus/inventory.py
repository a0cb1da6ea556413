"""The GPUs of this machine: what exists (for the scheduler) and how each is doing (for display).

Two sources: NVML, the NVIDIA driver's management library, on real GPU machines; and a
configured virtual inventory (``SPARKTRAINER_GPUS``) on machines without GPUs, whose devices
exist only so that jobs can be scheduled onto them.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import pynvml

from spark_trainer.settings import DEFAULT_VIRTUAL_GPU_GB, Settings

logger = logging.getLogger(__name__)

T = TypeVar("T")

VIRTUAL_GPU_NAME = "Virtual GPU"


@dataclass(frozen=True, slots=True)
class GpuDevice:
    """What the scheduler needs to know about a GPU; fixed for the life of the process."""

    index: int
    name: str
    uuid: str | None
    memory_total: int | None  # bytes


@dataclass(frozen=True, slots=True)
class GpuReading:
    """One GPU's live state. A field is None when the source cannot tell."""

    index: int
    memory_used: int | None  # bytes
    utilization: float | None  # percent
    temperature: float | None  # °C
    power_usage: float | None  # watts


class GpuInventory(ABC):
    """The GPUs of this machine.

    Contract:

    - ``devices()`` is cheap and returns the same list, ordered by index, for the whole
      lifetime of the process: the scheduler hands out GPUs by these indices.
    - ``readings()`` samples live values; it never raises for a GPU that fails to answer,
      it reports the fields it could not read as None.
    - Every method may be called from any thread, concurrently.
    """

    virtual: bool = False

    @abstractmethod
    def devices(self) -> list[GpuDevice]: ...

    @abstractmethod
    def readings(self, indices: Iterable[int] | None = None) -> dict[int, GpuReading]:
        """Live readings of the GPUs at ``indices`` (all when None), keyed by index.

        Indices that are not in ``devices()`` are left out of the result.
        """

    def close(self) -> None:  # noqa: B027 - optional hook, most inventories hold nothing
        """Releases what the inventory holds; ``devices()`` still answers afterwards."""


def _selected(devices: list[GpuDevice], indices: Iterable[int] | None) -> list[GpuDevice]:
    if indices is None:
        return devices
    wanted = set(indices)
    return [device for device in devices if device.index in wanted]


class VirtualGpuInventory(GpuInventory):
    """``count`` GPUs of ``memory_total`` bytes that exist only for scheduling.

    Their readings are zeros, so that typed clients get the numbers the API promises;
    ``virtual`` (``"virtual": true`` on the wire) says they come from no device, so
    nobody mistakes a machine without GPUs for one with idle GPUs.
    """

    virtual = True

    def __init__(
        self,
        count: int,
        *,
        memory_total: int = DEFAULT_VIRTUAL_GPU_GB * 1024**3,
        node: str = "local",
    ) -> None:
        if count < 0:
            raise ValueError("a GPU count cannot be negative")
        # The node is in the uuid because uuids must stay unique once several nodes report.
        self._devices = [
            GpuDevice(
                index=i,
                name=VIRTUAL_GPU_NAME,
                uuid=f"virtual-{node}-{i}",
                memory_total=memory_total,
            )
            for i in range(count)
        ]

    def devices(self) -> list[GpuDevice]:
        return list(self._devices)

    def readings(self, indices: Iterable[int] | None = None) -> dict[int, GpuReading]:
        return {
            device.index: GpuReading(
                index=device.index,
                memory_used=0,
                utilization=0.0,
                temperature=0.0,
                power_usage=0.0,
            )
            for device in _selected(self._devices, indices)
        }


class NvmlGpuInventory(GpuInventory):
    """The NVIDIA GPUs NVML reports. Without a usable driver the machine has no GPUs."""

    virtual = False

    def __init__(self) -> None:
        # NVML itself is thread-safe, but the pynvml wrapper keeps unguarded module state
        # and close() must not shut NVML down under a reading in progress.
        self._lock = threading.Lock()
        self._handles: dict[int, Any] = {}
        self._devices: list[GpuDevice] = []
        self._initialized = False
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            logger.info("NVML unavailable (%s): no GPUs", _why_unavailable(exc))
            return
        self._initialized = True
        try:
            count = int(pynvml.nvmlDeviceGetCount())
        except pynvml.NVMLError as exc:
            logger.warning("NVML cannot count the GPUs (%s): no GPUs", exc)
            self.close()
            return
        for index in range(count):
            try:
                handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            except pynvml.NVMLError as exc:
                # A GPU that fell off the bus must not take the healthy ones down with it.
                logger.warning("GPU %d is not usable (%s); leaving it out", index, exc)
                continue
            self._handles[index] = handle
            self._devices.append(self._describe(index, handle))
        logger.info("NVML reports %d GPU(s)", len(self._devices))

    @staticmethod
    def _describe(index: int, handle: Any) -> GpuDevice:
        name = _read(lambda: _text(pynvml.nvmlDeviceGetName(handle)))
        memory = _read(lambda: int(pynvml.nvmlDeviceGetMemoryInfo(handle).total))
        return GpuDevice(
            index=index,
            name=name or f"NVIDIA GPU {index}",
            uuid=_read(lambda: _text(pynvml.nvmlDeviceGetUUID(handle))),
            memory_total=memory,
        )

    def devices(self) -> list[GpuDevice]:
        return list(self._devices)

    def readings(self, indices: Iterable[int] | None = None) -> dict[int, GpuReading]:
        selected = _selected(self._devices, indices)
        with self._lock:
            # After close() the handles are dead; every field is then simply unknown.
            handles = self._handles if self._initialized else {}
            return {
                device.index: _sample(device.index, handles.get(device.index))
                for device in selected
            }

    def close(self) -> None:
        with self._lock:
            if not self._initialized:
                return
            self._initialized = False
            try:
                pynvml.nvmlShutdown()
            except pynvml.NVMLError as exc:
                logger.warning("NVML shutdown failed: %s", exc)


def _why_unavailable(exc: Exception) -> str:
    if isinstance(exc, pynvml.NVMLError_LibraryNotFound | pynvml.NVMLError_DriverNotLoaded):
        return "no NVIDIA driver"
    return str(exc)


def _read(call: Callable[[], T]) -> T | None:
    try:
        return call()
    except pynvml.NVMLError:
        return None


def _text(value: str | bytes) -> str:
    # Older pynvml releases return bytes, newer ones str.
    return value.decode() if isinstance(value, bytes) else value


def _temperature(handle: Any) -> float:
    try:
        return float(pynvml.nvmlDeviceGetTemperatureV(handle, pynvml.NVML_TEMPERATURE_GPU))
    except pynvml.NVMLError_FunctionNotFound:
        # Drivers before the versioned call only have the original (deprecated) one.
        return float(pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU))


def _sample(index: int, handle: Any) -> GpuReading:
    if handle is None:
        return GpuReading(
            index=index, memory_used=None, utilization=None, temperature=None, power_usage=None
        )
    return GpuReading(
        index=index,
        memory_used=_read(lambda: int(pynvml.nvmlDeviceGetMemoryInfo(handle).used)),
        utilization=_read(lambda: float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)),
        temperature=_read(lambda: _temperature(handle)),
        # NVML reports milliwatts.
        power_usage=_read(lambda: pynvml.nvmlDeviceGetPowerUsage(handle) / 1000.0),
    )


def build_inventory(settings: Settings) -> GpuInventory:
    """The configured virtual inventory when ``SPARKTRAINER_GPUS`` is set, else NVML's."""
    virtual = settings.virtual_gpus
    if virtual is not None:
        count, memory = virtual
        return VirtualGpuInventory(count, memory_total=memory, node=settings.node_name)
    return NvmlGpuInventory()


NO_GPUS_HINT = (
    "No GPUs were found (NVML reports none). Jobs that need no GPU (gpu_count 0) run here; "
    "jobs that need GPUs will be refused until there are some. On a machine without GPUs, "
    "configure a virtual inventory to try SparkTrainer out: SPARKTRAINER_GPUS=4 (four 80GB "
    "GPUs) or SPARKTRAINER_GPUS=4x24GB."
)
