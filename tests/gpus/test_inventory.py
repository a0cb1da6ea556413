from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import pynvml
import pytest
from pydantic import ValidationError

from spark_trainer.gpus.inventory import (
    GpuDevice,
    GpuReading,
    NvmlGpuInventory,
    VirtualGpuInventory,
    build_inventory,
)
from spark_trainer.gpus.schemas import gpu_rows
from spark_trainer.kit.time import utcnow
from spark_trainer.models import Node
from spark_trainer.settings import Settings
from spark_trainer.system.metrics import system_snapshot


def _nvidia_driver_present() -> bool:
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    pynvml.nvmlShutdown()
    return True


# CI machines have no NVIDIA driver; these tests check that real NVML then reports no GPUs.
# What NVML reports on a machine with GPUs is checked by gpu_checks/ (run it there).
NVIDIA_DRIVER = _nvidia_driver_present()
needs_no_driver = pytest.mark.skipif(NVIDIA_DRIVER, reason="an NVIDIA driver is present")


def _settings(tmp_path: Path, gpus: int | str | None) -> Settings:
    return Settings(data_dir=tmp_path, gpus=gpus, secret_key="x" * 40)  # type: ignore[arg-type]


@needs_no_driver
def test_nvml_without_a_driver_has_no_gpus(caplog: pytest.LogCaptureFixture) -> None:
    # This machine has no NVIDIA driver: the real pynvml fails to load NVML.
    with caplog.at_level(logging.INFO, logger="spark_trainer.gpus.inventory"):
        inventory = NvmlGpuInventory()
    try:
        assert inventory.virtual is False
        assert inventory.devices() == []
        assert inventory.readings() == {}
        assert inventory.readings([0, 1]) == {}
    finally:
        inventory.close()
    inventory.close()  # a second close is harmless
    assert [r.getMessage() for r in caplog.records] == [
        "NVML unavailable (no NVIDIA driver): no GPUs"
    ]


def test_virtual_inventory_has_the_configured_gpus_and_zero_readings() -> None:
    inventory = VirtualGpuInventory(4, memory_total=24 * 1024**3, node="node-a")
    assert inventory.virtual is True
    assert inventory.devices() == [
        GpuDevice(
            index=i, name="Virtual GPU", uuid=f"virtual-node-a-{i}", memory_total=24 * 1024**3
        )
        for i in range(4)
    ]
    assert inventory.readings() == {
        i: GpuReading(index=i, memory_used=0, utilization=0.0, temperature=0.0, power_usage=0.0)
        for i in range(4)
    }
    assert sorted(inventory.readings([3, 1, 9])) == [1, 3]


def test_virtual_inventory_devices_cannot_be_changed_by_callers() -> None:
    inventory = VirtualGpuInventory(2)
    inventory.devices().clear()
    assert len(inventory.devices()) == 2


def test_virtual_inventory_rejects_a_negative_count() -> None:
    with pytest.raises(ValueError, match="negative"):
        VirtualGpuInventory(-1)


def test_build_inventory_is_virtual_when_gpus_are_configured(tmp_path: Path) -> None:
    settings = _settings(tmp_path, 4)
    inventory = build_inventory(settings)
    assert isinstance(inventory, VirtualGpuInventory)
    assert [d.uuid for d in inventory.devices()] == [
        f"virtual-{settings.node_name}-{i}" for i in range(4)
    ]


def test_build_inventory_zero_configured_gpus_is_still_virtual(tmp_path: Path) -> None:
    inventory = build_inventory(_settings(tmp_path, 0))
    assert isinstance(inventory, VirtualGpuInventory)
    assert inventory.devices() == []


def test_build_inventory_reads_nvml_otherwise(tmp_path: Path) -> None:
    inventory = build_inventory(_settings(tmp_path, None))
    try:
        assert isinstance(inventory, NvmlGpuInventory)
        assert inventory.virtual is False
    finally:
        inventory.close()


def test_gpu_rows_put_each_holder_on_its_gpu() -> None:
    rows = gpu_rows(
        VirtualGpuInventory(3, node="n1"), "n1", [], {("n1", 1): "job-abc", ("n1", 2): None}
    )
    assert [(r.id, r.in_use, r.job_id) for r in rows] == [
        (0, False, None),
        (1, True, "job-abc"),
        (2, True, None),
    ]
    assert all(r.virtual and r.node == "n1" for r in rows)
    assert rows[0].model_dump() == {
        "id": 0,
        "name": "Virtual GPU",
        "memory_total": 80 * 1024**3,
        "memory_used": 0,
        "utilization": 0.0,
        "temperature": 0.0,
        "power_usage": 0.0,
        "uuid": "virtual-n1-0",
        "node": "n1",
        "virtual": True,
        "in_use": False,
        "job_id": None,
    }


def test_gpu_rows_list_every_registered_node_with_readings_only_for_this_one() -> None:
    other = Node(
        name="n2",
        gpus=[{"index": 0, "name": "Virtual GPU", "uuid": "virtual-n2-0", "memory_total": 1}],
        gpu_count=1,
        state="up",
        heartbeat_at=utcnow(),
    )
    rows = gpu_rows(VirtualGpuInventory(1, node="n1"), "n1", [other], {("n2", 0): "job-x"})
    assert [(r.node, r.id, r.in_use, r.job_id, r.utilization) for r in rows] == [
        ("n1", 0, False, None, 0.0),
        ("n2", 0, True, "job-x", None),
    ]
    assert all(r.virtual for r in rows)


@needs_no_driver
def test_gpu_rows_of_a_machine_without_gpus_is_empty() -> None:
    inventory = NvmlGpuInventory()
    try:
        assert gpu_rows(inventory, "n1", [], {}) == []
    finally:
        inventory.close()


def test_system_snapshot_reads_real_values(tmp_path: Path) -> None:
    data_dir = tmp_path / "not" / "created"
    snapshot = system_snapshot(data_dir)
    assert not data_dir.exists()
    for percent in (snapshot.cpu_percent, snapshot.memory_percent, snapshot.disk_usage):
        assert 0.0 <= percent <= 100.0
    # A real machine always has some memory and disk in use.
    assert snapshot.memory_percent > 0.0
    assert snapshot.disk_usage > 0.0
    assert snapshot.network_io.bytes_sent >= 0
    assert snapshot.network_io.bytes_recv >= 0
    assert snapshot.timestamp.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("spec", "count", "memory"),
    [
        ("4", 4, 80 * 1024**3),
        (4, 4, 80 * 1024**3),
        ("4x24GB", 4, 24 * 1024**3),
        ("2x80", 2, 80 * 1024**3),
    ],
)
def test_virtual_inventory_size_comes_from_sparktrainer_gpus(
    tmp_path: Path, spec: int | str, count: int, memory: int
) -> None:
    inventory = build_inventory(_settings(tmp_path, spec))
    assert [d.memory_total for d in inventory.devices()] == [memory] * count


@pytest.mark.parametrize("spec", ["four", "4x", "-1", "4x0GB", "2000", "4x80TB"])
def test_a_bad_sparktrainer_gpus_fails_at_start_up(tmp_path: Path, spec: str) -> None:
    with pytest.raises(ValidationError, match="gpus"):
        _settings(tmp_path, spec)
