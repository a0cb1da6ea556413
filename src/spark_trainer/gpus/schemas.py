from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import Field

from spark_trainer.gpus.inventory import VIRTUAL_GPU_NAME, GpuDevice, GpuInventory
from spark_trainer.kit.schemas import Schema, UTCDatetime
from spark_trainer.models import Node


class GpuRead(Schema):
    id: int = Field(description="Index of the GPU on its node.")
    name: str
    memory_total: int | None = Field(description="Bytes; null when unknown.")
    memory_used: int | None = Field(description="Bytes; null when unknown.")
    utilization: float | None = Field(description="Percent; null when unknown.")
    temperature: float | None = Field(description="Degrees Celsius; null when unknown.")
    power_usage: float | None = Field(description="Watts; null when unknown.")
    uuid: str | None
    node: str = Field(description="The machine the GPU is in.")
    virtual: bool = Field(
        description="Configured for scheduling on a machine without GPUs (SPARKTRAINER_GPUS):"
        " memory_total is the configured size, the other readings are zero and come from no "
        "device."
    )
    in_use: bool = Field(description="Whether a job holds this GPU now.")
    job_id: str | None = Field(
        description="The job holding this GPU, shown to that job's owner and to admins."
    )


class NetworkIo(Schema):
    bytes_sent: int
    bytes_recv: int


class SystemMetricsRead(Schema):
    timestamp: UTCDatetime
    cpu_percent: float
    memory_percent: float
    disk_usage: float = Field(description="Percent used of the filesystem holding the data.")
    network_io: NetworkIo


def gpu_rows(
    inventory: GpuInventory,
    node: str,
    nodes: Sequence[Node],
    holders: Mapping[tuple[str, int], str | None],
) -> list[GpuRead]:
    """One row per GPU of every registered node, and of this process's ``inventory`` if
    its node has not registered yet: description, readings, holding job.

    Live readings come from this process's own inventory; another node's GPUs have null
    readings (no number is invented for a device this process cannot read).
    """
    readings = inventory.readings()
    described: list[tuple[str, GpuDevice]] = [
        (row.name, _device(gpu)) for row in nodes for gpu in row.gpus
    ]
    if node not in {row.name for row in nodes}:
        described = [(node, device) for device in inventory.devices()] + described
    rows = []
    for name, device in described:
        reading = readings.get(device.index) if name == node else None
        held = (name, device.index)
        rows.append(
            GpuRead(
                id=device.index,
                name=device.name,
                memory_total=device.memory_total,
                memory_used=reading.memory_used if reading else None,
                utilization=reading.utilization if reading else None,
                temperature=reading.temperature if reading else None,
                power_usage=reading.power_usage if reading else None,
                uuid=device.uuid,
                node=name,
                virtual=device.name == VIRTUAL_GPU_NAME,
                in_use=held in holders,
                job_id=holders.get(held),
            )
        )
    return rows


def _device(gpu: Mapping[str, Any]) -> GpuDevice:
    """A GPU as its node registered it (``runtime.nodes``)."""
    return GpuDevice(
        index=int(gpu["index"]),
        name=str(gpu["name"]),
        uuid=gpu.get("uuid"),
        memory_total=gpu.get("memory_total"),
    )
