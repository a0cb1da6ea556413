from __future__ import annotations

from collections.abc import Mapping

from pydantic import Field

from spark_trainer.gpus.inventory import GpuInventory
from spark_trainer.kit.schemas import Schema, UTCDatetime


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
    inventory: GpuInventory, node: str, holders: Mapping[int, str | None]
) -> list[GpuRead]:
    """One row per GPU of ``inventory``: its description, live readings and holding job."""
    readings = inventory.readings()
    rows = []
    for device in inventory.devices():
        reading = readings.get(device.index)
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
                node=node,
                virtual=inventory.virtual,
                in_use=device.index in holders,
                job_id=holders.get(device.index),
            )
        )
    return rows
