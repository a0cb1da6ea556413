"""The exact command lines (and Triton's model repository) each backend's replicas run."""

from __future__ import annotations

import json
from pathlib import Path

from spark_trainer.deployments.backends import (
    Backend,
    ReplicaFiles,
    argv,
    command,
    write_triton_repository,
)


def _files(tmp_path: Path, *, adapter: bool = False) -> ReplicaFiles:
    return ReplicaFiles(
        model_dir=tmp_path / "models" / "model-1",
        base_model_dir=tmp_path / "models" / "base" if adapter else None,
        served_name="llama-7b-prod",
        port=20123,
        gpu_count=2,
        work_dir=tmp_path / "deploy-1",
    )


def test_vllm_serves_the_model_tensor_parallel_over_its_gpus(tmp_path: Path) -> None:
    model = tmp_path / "models" / "model-1"
    assert command(Backend.VLLM, _files(tmp_path)) == (
        f"vllm serve {model} --served-model-name llama-7b-prod --host 127.0.0.1 --port 20123 "
        "--tensor-parallel-size 2"
    )
    base = tmp_path / "models" / "base"
    assert argv(Backend.VLLM, _files(tmp_path, adapter=True)) == [
        "vllm", "serve", str(base), "--enable-lora", "--lora-modules",
        f"llama-7b-prod={model}", "--host", "127.0.0.1", "--port", "20123",
        "--tensor-parallel-size", "2",
    ]  # fmt: skip


def test_tgi_shards_the_model_over_its_gpus(tmp_path: Path) -> None:
    model = tmp_path / "models" / "model-1"
    assert command(Backend.TGI, _files(tmp_path)) == (
        f"text-generation-launcher --model-id {model} --hostname 127.0.0.1 --port 20123 "
        "--num-shard 2"
    )
    base = tmp_path / "models" / "base"
    assert argv(Backend.TGI, _files(tmp_path, adapter=True))[:5] == [
        "text-generation-launcher", "--model-id", str(base), "--lora-adapters",
        f"llama-7b-prod={model}",
    ]  # fmt: skip


def test_triton_runs_a_vllm_model_repository(tmp_path: Path) -> None:
    files = _files(tmp_path)
    repository = write_triton_repository(files)
    assert repository == tmp_path / "deploy-1" / "triton"
    assert command(Backend.TRITON, files) == (
        f"tritonserver --model-repository {repository} --http-address 127.0.0.1 "
        "--http-port 20123 --allow-grpc=false --allow-metrics=false"
    )
    laid_out = sorted(p.relative_to(repository).as_posix() for p in repository.rglob("*"))
    assert laid_out == [
        "llama-7b-prod",
        "llama-7b-prod/1",
        "llama-7b-prod/1/model.json",
        "llama-7b-prod/config.pbtxt",
    ]
    config = (repository / "llama-7b-prod" / "config.pbtxt").read_text()
    assert config.startswith('backend: "vllm"\n')
    assert "count: 1" in config and "kind: KIND_MODEL" in config
    engine = json.loads((repository / "llama-7b-prod" / "1" / "model.json").read_text())
    assert engine == {
        "model": str(tmp_path / "models" / "model-1"),
        "tensor_parallel_size": 2,
        "gpu_memory_utilization": 0.9,
        "disable_log_requests": True,
    }


def test_triton_repository_for_an_adapter_names_its_lora(tmp_path: Path) -> None:
    files = _files(tmp_path, adapter=True)
    version = write_triton_repository(files) / "llama-7b-prod" / "1"
    engine = json.loads((version / "model.json").read_text())
    assert engine["model"] == str(tmp_path / "models" / "base")
    assert engine["enable_lora"] is True
    loras = json.loads((version / "multi_lora.json").read_text())
    assert loras == {"llama-7b-prod": str(tmp_path / "models" / "model-1")}


def test_the_builtin_backend_runs_this_interpreter(tmp_path: Path) -> None:
    model = tmp_path / "models" / "model-1"
    assert argv(Backend.TRANSFORMERS, _files(tmp_path), python="/venv/bin/python") == [
        "/venv/bin/python", "-m", "spark_trainer.deployments.server", "--model", str(model),
        "--served-model-name", "llama-7b-prod", "--host", "127.0.0.1", "--port", "20123",
    ]  # fmt: skip
