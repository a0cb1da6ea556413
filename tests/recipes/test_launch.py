"""The multi-GPU path: with more than one GPU the recipe re-executes itself under
``torch.distributed.run``. Running it needs GPUs (gpu_checks/run_device.sh exercises one);
here the command it builds is checked exactly."""

from __future__ import annotations

from pathlib import Path

import pytest

from spark_trainer.recipes.text_lora import main


def test_the_relaunch_command_runs_one_worker_per_gpu() -> None:
    assert main.relaunch_command(Path("config.yaml"), 4, python="/venv/bin/python") == [
        "/venv/bin/python",
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nnodes=1",
        "--nproc-per-node=4",
        "-m",
        "spark_trainer.recipes.text_lora",
        "--config",
        "config.yaml",
    ]


def test_a_worker_never_relaunches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert main._gpus_to_use() == 0


def test_without_cuda_it_trains_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert main._gpus_to_use() == 0
