"""Checks that need a machine with NVIDIA GPUs; CI machines have none.

Run on such a machine: ``.venv/bin/pytest gpu_checks -p no:cacheprovider``.
"""

from __future__ import annotations

from spark_trainer.gpus.inventory import NvmlGpuInventory


def test_nvml_reads_the_real_gpus() -> None:
    inventory = NvmlGpuInventory()
    try:
        devices = inventory.devices()
        assert devices
        assert [d.index for d in devices] == sorted(d.index for d in devices)
        assert all(d.name and d.uuid and d.memory_total for d in devices)
        readings = inventory.readings()
        assert sorted(readings) == [d.index for d in devices]
        for device in devices:
            reading = readings[device.index]
            if reading.memory_used is not None:
                assert device.memory_total is not None
                assert 0 <= reading.memory_used <= device.memory_total
            if reading.utilization is not None:
                assert 0.0 <= reading.utilization <= 100.0
    finally:
        inventory.close()
    # Once closed, the devices are still described but nothing can be read.
    assert inventory.devices() == devices
    assert all(r.memory_used is None for r in inventory.readings().values())
